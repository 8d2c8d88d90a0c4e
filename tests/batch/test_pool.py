"""The local pool for real: spawned engine processes, killed workers, a killed driver, resumes."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.batch.driver import run_batch
from agent.batch.errors import EngineStartError
from agent.batch.limits import SharedRateLimiter
from agent.batch.pool import ProcessPool
from agent.batch.runner import EngineSpec
from agent.planner.cassette import replay
from tests.batch import fixture
from tests.batch.conftest import (
    answers_by_id,
    expected_ids,
    finish,
    kill_driver_midway,
    lines,
    make_spec,
    run_and_kill,
    wait_for,
)
from tests.timing import assert_paced

ROOT = Path(__file__).resolve().parents[2]


def test_one_and_two_workers_give_the_same_answers(tmp_path, spec, questions_file):
    out1, out2 = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    s1 = run_batch(questions_file, out1, spec, workers=1, progress=None)
    s2 = run_batch(questions_file, out2, spec, workers=2, progress=None)
    assert (s1.ok, s1.errors, s2.ok, s2.errors) == (20, 0, 20, 0)
    one, two = answers_by_id(out1), answers_by_id(out2)
    assert set(one) == set(two) == expected_ids()
    for qid, rec in one.items():
        assert rec["answer"] == two[qid]["answer"]
        assert rec["answer"].startswith(rec["question"] + " -> http://127.0.0.1:")
        assert rec["sources"] and rec["sources"] == two[qid]["sources"]
    assert len({r["worker"] for r in two.values()}) == 2  # both engines answered
    rec = one["q03"]
    assert rec["fields"] == {"gold": 3} and rec["attempts"] == 1
    assert replay(rec["recording"]).answer == rec["answer"]  # the run's cassette, inline
    assert set(rec["timings"]) == {"started", "total", "steps"} and rec["timings"]["total"] > 0


def test_a_worker_killed_mid_batch_is_replaced_and_every_id_is_answered_once(
    tmp_path, fixture_web, questions_file
):
    spec = make_spec(fixture_web, BATCH_FIXTURE_DELAY="0.01")
    pool = ProcessPool(spec, 2)
    try:
        victim = pool.pids[0]
        out = tmp_path / "out.jsonl"
        records = run_and_kill(pool, spec, questions_file, out, os.kill, victim, signal.SIGKILL)
        assert victim not in pool.pids
    finally:
        pool.close()
    assert any(r["attempts"] == 2 for r in records.values())  # the killed worker's question


def _cli(questions: Path, out: Path, web: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agent.cli",
        "batch",
        str(questions),
        "-o",
        str(out),
        "--model-factory",
        "tests.batch.fixture:scripted_model",
        "--tools-factory",
        "tests.batch.fixture:fixture_tools",
        "--search-interval",
        "0",
        *extra,
    ]


def _env(web: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "BATCH_FIXTURE_WEB": web, **extra}


def test_killing_the_driver_and_running_again_answers_every_id_once(
    tmp_path, fixture_web, questions_file
):
    out = tmp_path / "out.jsonl"
    cmd = _cli(questions_file, out, fixture_web, "--workers", "2")
    env = _env(fixture_web, BATCH_FIXTURE_DELAY="0.01")
    first = kill_driver_midway(cmd, env, ROOT, out, 90)
    workers = {int(r["worker"].split()[0].rsplit(":", 1)[1]) for r in first.values()}
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in workers), 20, "orphans")
    again = finish(cmd, env, ROOT, out)
    assert f"{len(first)} done before" in again.stderr
    records = answers_by_id(out)
    assert {k: r["answer"] for k, r in first.items()} == {k: records[k]["answer"] for k in first}

    third = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert third.returncode == 0 and "all 20 questions are already in" in third.stderr
    assert lines(out) == 20


def test_ctrl_c_stops_the_batch_cleanly_and_running_again_finishes_it(
    tmp_path, fixture_web, questions_file
):
    out = tmp_path / "out.jsonl"
    cmd = _cli(questions_file, out, fixture_web, "--workers", "2")
    env = _env(fixture_web, BATCH_FIXTURE_DELAY="0.01")
    # a terminal's Ctrl-C: SIGINT to the whole process group, driver and workers alike
    driver = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        wait_for(lambda: lines(out) >= 2, 90, "two answers")
        os.killpg(driver.pid, signal.SIGINT)
        _, err = driver.communicate(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 130 and "agent batch: interrupted" in err
    first = answers_by_id(out)  # whole lines only, each id once
    assert out.read_bytes().endswith(b"\n") and len(first) < 20
    again = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr
    assert set(answers_by_id(out)) == expected_ids()


def test_malformed_input_lines_are_reported_with_their_numbers_and_skipped(tmp_path, fixture_web):
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        '{"id": "a", "question": "Who won the Nobel Prize in Literature in 2020?"}\n'
        '{"id": "b", "question": \n'
        '{"id": "c", "text": "no question field"}\n'
        '{"id": "a", "question": "a duplicate id"}\n'
        '{"id": "d", "question": "When was The Wild Iris published?"}\n',
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    done = subprocess.run(
        _cli(questions, out, fixture_web),
        env=_env(fixture_web),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1  # the batch ran, but the input had bad lines
    assert "line 2: not valid JSON" in done.stderr
    assert 'line 3: "question" is missing' in done.stderr
    assert "line 4: duplicate id 'a' (first on line 1)" in done.stderr
    assert "2 ok, 0 error(s), 0 already done, 3 bad input line(s)" in done.stderr
    assert set(answers_by_id(out)) == {"a", "d"}


def test_failed_questions_are_retried_then_written_as_errors_and_the_batch_goes_on(
    tmp_path, fixture_web
):
    questions = tmp_path / "q.txt"
    questions.write_text(
        "A FLAKY question about The Wild Iris?\nA BROKEN question?\nWho is Louise Glück?\n",
        encoding="utf-8",
    )
    marks = tmp_path / "marks"
    marks.mkdir()
    spec = make_spec(fixture_web, BATCH_FIXTURE_MARKS=str(marks))
    out = tmp_path / "out.jsonl"
    summary = run_batch(questions, out, spec, workers=2, retries=2, progress=None)
    assert (summary.ok, summary.errors) == (2, 1)
    records = answers_by_id(out)
    assert records[1]["status"] == "ok" and records[1]["attempts"] == 2
    assert records[2]["status"] == "error" and records[2]["attempts"] == 3
    assert "PlanError" in records[2]["error"] and len(records[2]["errors"]) == 3
    assert records[3]["status"] == "ok" and records[3]["attempts"] == 1


def test_record_dir_writes_one_replayable_cassette_per_question(tmp_path, fixture_web):
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        '{"id": "a/1", "question": "When was The Wild Iris published?"}\n', encoding="utf-8"
    )
    spec = EngineSpec(**{**make_spec(fixture_web).__dict__, "record_dir": str(tmp_path / "rec")})
    run_batch(questions, tmp_path / "out.jsonl", spec, progress=None)
    (record,) = answers_by_id(tmp_path / "out.jsonl").values()
    assert "recording" not in record
    path = Path(record["cassette"])
    assert path.parent == tmp_path / "rec" and path.name.startswith("a_1-")
    assert replay(path).answer == record["answer"]


def test_an_engine_that_cannot_open_the_model_stops_the_batch_early(tmp_path, questions_file):
    spec = EngineSpec(model=str(tmp_path / "nowhere" / "model.gguf"))
    t0 = time.monotonic()
    with pytest.raises(EngineStartError) as info:
        run_batch(questions_file, tmp_path / "out.jsonl", spec, workers=2, progress=None)
    message = str(info.value)
    assert "nowhere/model.gguf" in message and "readable" in message
    assert time.monotonic() - t0 < 60
    assert lines(tmp_path / "out.jsonl") == 0


def test_searches_keep_one_pace_across_worker_processes():
    ctx = mp.get_context("spawn")
    limiter = SharedRateLimiter(0.2, ctx.Value("d", 0.0))
    times = ctx.Queue()
    procs = [ctx.Process(target=fixture.limiter_times, args=(limiter, 3, times)) for _ in range(2)]
    for p in procs:
        p.start()
    calls = [times.get(timeout=30) for _ in range(6)]
    for p in procs:
        p.join(10)
    assert_paced(calls, 0.2)  # each call's slot, not when a (maybe late) process noted it


def test_the_cli_reports_bad_options_and_a_missing_ray(tmp_path, questions_file, monkeypatch):
    from agent.cli import main

    out = str(tmp_path / "o.jsonl")
    assert main(["batch", str(questions_file), "-o", out, "--workers", "0", "--script", "x"]) == 1
    assert main(["batch", str(questions_file), "-o", out]) == 1  # no model at all
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    import io
    from contextlib import redirect_stderr

    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["batch", str(questions_file), "-o", out, "--script", "x", "--ray"])
    assert code == 1 and "pip install -e '.[ray]'" in err.getvalue()
    assert not Path(out).exists()
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["serve", "--script", "x", "--ray", "--replicas", "2"])
    assert code == 1 and "Ray Serve is not installed: pip install -e '.[ray]'" in err.getvalue()


def test_every_search_of_an_engine_goes_through_the_batch_limiter(spec, monkeypatch):
    from agent.batch.questions import Question
    from agent.batch.runner import QuestionRunner

    monkeypatch.setenv("BATCH_FIXTURE_WEB", spec.env["BATCH_FIXTURE_WEB"])  # restored after

    class Counting:
        calls = 0

        def wait(self) -> float:
            self.calls += 1
            return 0.0

    limiter = Counting()
    runner = QuestionRunner(spec, limiter=limiter)
    for i in range(2):
        record = runner.answer(Question(i, f"Who is Louise Glück, poet number {i}?", i + 1))
        assert record["status"] == "ok", record["error"]
    assert limiter.calls == 2  # one DuckDuckGo step per plan, both paced by the batch's limiter


def test_a_script_is_replayed_from_its_start_for_every_question(tmp_path):
    from agent.batch.questions import Question
    from agent.batch.runner import QuestionRunner

    script = tmp_path / "script.json"
    plan = "Plan: look it up.\n:evidence0: = Search[the question]\nAnswer: :evidence0:"
    script.write_text(json.dumps([plan]), encoding="utf-8")
    spec = EngineSpec(
        script=str(script), tools=("tests.planner.cli_tools:Search",), no_default_tools=True
    )
    runner = QuestionRunner(spec)
    records = [runner.answer(Question(i, f"question {i}?", i)) for i in (1, 2)]
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert records[0]["answer"] == records[1]["answer"]
    assert records[0]["answer"].startswith("Result about the question")
