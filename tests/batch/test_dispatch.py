"""The shared scheduling loop, over a backend that scripts what each engine reports."""

from __future__ import annotations

from collections import deque

from agent.batch.dispatch import Outcome, dispatch
from agent.batch.questions import Question


class ScriptedBackend:
    """Engines whose outcomes are scripted per question: 'ok', 'error' or 'lost', in turn."""

    def __init__(self, slots: int, script: dict[str, list[str]]):
        self.slots = slots
        self.script = {k: deque(v) for k, v in script.items()}
        self.sent: list[tuple[int, str]] = []
        self._ready: deque[Outcome] = deque()

    def send(self, slot: int, question: Question) -> None:
        self.sent.append((slot, question.id))
        kind = self.script.get(question.id, deque(["ok"])).popleft()
        if kind == "lost":
            self._ready.append(Outcome(slot, lost="process 1 exited with code -9"))
        else:
            status = "ok" if kind == "ok" else "error"
            error = None if kind == "ok" else f"PlanError: bad plan for {question.id}"
            record = {"id": question.id, "question": question.text, "status": status}
            self._ready.append(Outcome(slot, record={**record, "error": error}))

    def wait(self, timeout: float) -> list[Outcome]:
        return [self._ready.popleft()] if self._ready else []


def _questions(n: int) -> list[Question]:
    return [Question(f"q{i}", f"question {i}?", i + 1) for i in range(n)]


def _run(backend, n, retries):
    records: list[dict] = []
    dispatch(_questions(n), backend, retries=retries, on_record=records.append, poll=0)
    return {r["id"]: r for r in records}, records


def test_every_question_once_over_all_slots():
    backend = ScriptedBackend(3, {})
    by_id, records = _run(backend, 10, retries=1)
    assert len(records) == 10 and set(by_id) == {f"q{i}" for i in range(10)}
    assert all(r["status"] == "ok" and r["attempts"] == 1 for r in records)


def test_a_failed_question_is_retried_then_written_as_an_error():
    backend = ScriptedBackend(2, {"q1": ["error", "ok"], "q2": ["error", "error", "error"]})
    by_id, records = _run(backend, 4, retries=2)
    assert len(records) == 4
    assert by_id["q1"]["status"] == "ok" and by_id["q1"]["attempts"] == 2
    assert by_id["q2"]["status"] == "error" and by_id["q2"]["attempts"] == 3
    assert by_id["q2"]["error"] == "PlanError: bad plan for q2"
    assert len(by_id["q2"]["errors"]) == 3


def test_a_question_whose_engine_dies_is_retried_and_at_last_reported():
    backend = ScriptedBackend(2, {"q0": ["lost", "ok"], "q3": ["lost", "lost"]})
    by_id, records = _run(backend, 5, retries=1)
    assert len(records) == 5
    assert by_id["q0"]["status"] == "ok" and by_id["q0"]["attempts"] == 2
    assert by_id["q3"]["status"] == "error" and by_id["q3"]["attempts"] == 2
    assert by_id["q3"]["error"] == "worker lost: process 1 exited with code -9"
    assert by_id["q3"]["question"] == "question 3?"


def test_no_retries_means_one_attempt():
    backend = ScriptedBackend(1, {"q0": ["error", "ok"]})
    by_id, _ = _run(backend, 1, retries=0)
    assert by_id["q0"]["status"] == "error" and by_id["q0"]["attempts"] == 1


def test_an_idle_engine_that_dies_loses_nothing():
    backend = ScriptedBackend(2, {})
    backend._ready.append(Outcome(1, lost="process 2 exited with code -9"))  # slot 1 never busy
    by_id, records = _run(backend, 1, retries=0)
    assert [(r["id"], r["status"], r["attempts"]) for r in records] == [("q0", "ok", 1)]
