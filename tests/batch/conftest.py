"""Shared fixtures: the fixture web on loopback, a questions file, the spec of the test engine."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import Counter

import pytest

from agent.batch.driver import run_batch
from agent.batch.runner import EngineSpec
from agent.batch.writer import read_records
from tests.batch import fixture


@pytest.fixture(scope="session")
def fixture_web():
    server = fixture.serve_fixture_web()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def make_spec(web: str, **env: str) -> EngineSpec:
    return EngineSpec(
        model_factory="tests.batch.fixture:scripted_model",
        tools_factory="tests.batch.fixture:fixture_tools",
        search_interval=0.0,
        env={"BATCH_FIXTURE_WEB": web, **env},
    )


@pytest.fixture
def spec(fixture_web):
    return make_spec(fixture_web)


@pytest.fixture
def questions_file(tmp_path):
    path = tmp_path / "questions.jsonl"
    path.write_text(
        "".join(json.dumps({**q, "gold": i}) + "\n" for i, q in enumerate(fixture.questions())),
        encoding="utf-8",
    )
    return path


def answers_by_id(path) -> dict:
    records = read_records(path)
    counts = Counter(r["id"] for r in records)
    assert all(n == 1 for n in counts.values()), f"ids written twice: {counts.most_common(3)}"
    return {r["id"]: r for r in records}


def expected_ids(n: int = 20) -> set[str]:
    return {q["id"] for q in fixture.questions(n)}


def lines(path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def run_and_kill(backend, spec, questions, out, kill, *kill_args) -> dict:
    """Run the batch on ``backend`` in a thread, ``kill(*kill_args)`` once two answers are in;
    returns the records, after checking every id was answered once and well."""
    runner = threading.Thread(
        target=run_batch,
        args=(questions, out, spec),
        kwargs={"backend": backend, "progress": None},
    )
    runner.start()
    wait_for(lambda: lines(out) >= 2, 60, "two answers")
    kill(*kill_args)
    runner.join(120)
    assert not runner.is_alive()
    records = answers_by_id(out)
    assert set(records) == expected_ids()
    assert all(r["status"] == "ok" for r in records.values())
    return records


def kill_driver_midway(cmd, env, cwd, out, timeout: float) -> dict:
    """Start the batch command, SIGKILL it once three answers are in; returns those answers."""
    driver = subprocess.Popen(cmd, env=env, cwd=cwd, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: lines(out) >= 3, timeout, "three answers")
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
    first = answers_by_id(out)
    assert 3 <= len(first) < 20
    return first


def finish(cmd, env, cwd, out) -> subprocess.CompletedProcess:
    """Run the batch command again to its end; every id must then be answered once, well."""
    again = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr[-2000:]
    records = answers_by_id(out)
    assert set(records) == expected_ids()
    assert all(r["status"] == "ok" for r in records.values())
    return again
