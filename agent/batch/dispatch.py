"""The scheduling every backend shares: questions to free engines, retries, lost engines.

A backend (local processes, Ray actors) only knows how to start an engine in a slot, send it a
question and report what came back; this loop decides what runs next. A question whose run fails,
or whose engine dies under it, goes back to the queue until it has had ``retries + 1`` attempts;
then its error record is written and the batch goes on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.batch.questions import Question


@dataclass
class Task:
    question: Question
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """What a slot reported: a record, or ``lost`` (why its engine died; already replaced)."""

    slot: int
    record: dict[str, Any] | None = None
    lost: str | None = None


class Backend(Protocol):
    slots: int

    def send(self, slot: int, question: Question) -> None: ...

    def wait(self, timeout: float) -> list[Outcome]: ...


def lost_record(task: Task) -> dict[str, Any]:
    """The error record of a question whose last attempt ended with its engine gone."""
    q = task.question
    record: dict[str, Any] = {
        "id": q.id,
        "question": q.text,
        "status": "error",
        "answer": None,
        "sources": [],
        "error": task.errors[-1],
    }
    if q.fields:
        record["fields"] = q.fields
    return record


def dispatch(
    questions: Iterable[Question],
    backend: Backend,
    *,
    retries: int,
    on_record: Callable[[dict[str, Any]], None],
    poll: float = 0.5,
) -> None:
    """Run every question on ``backend``; ``on_record`` gets each final record, as it finishes."""
    queue = deque(Task(q) for q in questions)
    running: dict[int, Task] = {}
    while queue or running:
        for slot in range(backend.slots):
            if queue and slot not in running:
                task = queue.popleft()
                task.attempts += 1
                backend.send(slot, task.question)
                running[slot] = task
        for outcome in backend.wait(poll):
            if outcome.slot not in running:  # an idle engine died and was replaced: no loss
                continue
            task = running.pop(outcome.slot)
            record = outcome.record
            if record is not None and record.get("status") == "ok":
                on_record({**record, "attempts": task.attempts})
                continue
            if record is not None:
                task.errors.append(str(record.get("error")))
            else:
                task.errors.append(f"worker lost: {outcome.lost}")
            if task.attempts <= retries:
                queue.appendleft(task)  # retried next, so the output keeps roughly input order
                continue
            final = dict(record) if record is not None else lost_record(task)
            final["attempts"] = task.attempts
            if len(task.errors) > 1:
                final["errors"] = task.errors
            on_record(final)
