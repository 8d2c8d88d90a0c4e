"""The Ray backend on a real local cluster (2 CPUs, no dashboard, one cluster for the test run)."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from agent.batch.driver import run_batch
from agent.batch.errors import EngineStartError
from agent.batch.limits import RemoteRateLimiter, SlotBook
from agent.batch.ray_backend import RayPool
from agent.batch.runner import EngineSpec
from tests.batch.conftest import (
    answers_by_id,
    expected_ids,
    finish,
    kill_driver_midway,
    make_spec,
    run_and_kill,
)
from tests.batch.test_pool import _cli
from tests.ray_local import ROOT
from tests.timing import assert_paced

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")


def test_two_actors_give_the_same_answers_as_one_local_worker(
    ray_cluster, tmp_path, spec, questions_file
):
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    run_batch(questions_file, local, spec, workers=1, progress=None)
    summary = run_batch(questions_file, remote, spec, workers=2, ray=True, progress=None)
    assert (summary.ok, summary.errors) == (20, 0)
    one, two = answers_by_id(local), answers_by_id(remote)
    assert set(one) == set(two) == expected_ids()
    assert {k: r["answer"] for k, r in one.items()} == {k: r["answer"] for k, r in two.items()}
    assert len({r["worker"] for r in two.values()}) == 2
    assert ray.is_initialized()  # a cluster the caller started is left running


def test_an_actor_killed_mid_batch_is_replaced_and_its_question_retried(
    ray_cluster, tmp_path, fixture_web, questions_file
):
    spec = make_spec(fixture_web, BATCH_FIXTURE_DELAY="0.01")
    pool = RayPool(spec, 2)
    try:
        victim = pool.actors[0]
        records = run_and_kill(pool, spec, questions_file, tmp_path / "out.jsonl", ray.kill, victim)
    finally:
        pool.close()
    assert any(r["attempts"] == 2 for r in records.values())


def test_killing_a_ray_driver_and_running_again_answers_every_id_once(
    ray_cluster, tmp_path, fixture_web, questions_file
):
    out = tmp_path / "out.jsonl"
    env_args = ["--worker-env", f"BATCH_FIXTURE_WEB={fixture_web}"]
    cmd = _cli(questions_file, out, fixture_web, "--workers", "2", "--ray", ray_cluster, *env_args)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    slow = [*cmd, "--worker-env", "BATCH_FIXTURE_DELAY=0.01"]
    kill_driver_midway(slow, env, ROOT, out, 120)
    finish(cmd, env, ROOT, out)


def test_an_actor_that_cannot_open_the_model_fails_early_and_clearly(ray_cluster, tmp_path):
    spec = EngineSpec(model=str(tmp_path / "not-on-this-node.gguf"))
    t0 = time.monotonic()
    with pytest.raises(EngineStartError) as info:
        RayPool(spec, 1)
    message = str(info.value)
    assert message.startswith("Ray actor on node ")
    assert "not-on-this-node.gguf" in message and "every Ray node" in message
    assert time.monotonic() - t0 < 60


def test_searches_keep_one_pace_across_the_cluster(ray_cluster):
    book = ray.remote(num_cpus=0)(SlotBook).remote(0.2)
    limiter = RemoteRateLimiter(book)
    calls: list[tuple[float, float, float]] = []
    lock = threading.Lock()

    def three_calls() -> None:
        for _ in range(3):
            before = time.monotonic()
            delay = limiter.wait()
            after = time.monotonic()
            with lock:
                calls.append((before, delay, after))

    threads = [threading.Thread(target=three_calls) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # the book's slots in full: RPC and scheduling delays only make a call later, and its
    # 'before' is taken before the request to the book (same machine, one monotonic clock)
    assert len(calls) == 6
    assert_paced(calls, 0.2)
    ray.kill(book)


def test_the_batch_cli_without_ray_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    from agent.batch.errors import BatchError
    from agent.batch.ray_backend import import_ray

    with pytest.raises(BatchError, match=r"pip install -e '\.\[ray\]'"):
        import_ray()
