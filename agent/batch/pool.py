"""Local pool: N engine processes on one machine, each loading the model once.

The model file is memory-mapped, so N engines share its pages in the page cache; each process
holds only its own KV cache and repacked weights. Processes are spawned (no fork of the driver's
threads), talk to the driver over one pipe each, and a process that dies (killed, out of memory,
a crash in native code) is replaced and its question handed back to the dispatcher.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from multiprocessing.connection import Connection, wait
from typing import Any

from agent.batch.dispatch import Outcome
from agent.batch.errors import EngineStartError
from agent.batch.limits import SharedRateLimiter
from agent.batch.questions import Question
from agent.batch.runner import EngineSpec

START_TIMEOUT = 600.0  # seconds for one engine to load its model


def _worker_main(spec: EngineSpec, conn: Connection, slot: Any, name: str) -> None:
    """A worker process: build the engine once, then answer questions until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    from agent.batch.runner import QuestionRunner

    try:
        runner = QuestionRunner(
            spec, limiter=SharedRateLimiter(spec.search_interval, slot), name=name
        )
    except Exception as exc:  # noqa: BLE001 - sent to the driver, which stops the batch
        conn.send(("init_error", str(exc)))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            question = conn.recv()
        except (EOFError, OSError):
            return  # the driver is gone
        if question is None:
            return
        conn.send(("record", runner.answer(question)))


class _Worker:
    def __init__(self, process: mp.process.BaseProcess, conn: Connection):
        self.process = process
        self.conn = conn


class ProcessPool:
    """The ``Backend`` of ``dispatch`` over local processes."""

    def __init__(self, spec: EngineSpec, workers: int):
        if workers < 1:
            raise EngineStartError(f"--workers must be at least 1, got {workers}")
        self.spec = spec
        self.slots = workers
        self._ctx = mp.get_context("spawn")
        self._search_slot = self._ctx.Value("d", 0.0)
        self._started = 0
        self._workers: list[_Worker] = []
        pending: list[_Worker] = []
        try:
            for _ in range(workers):  # all start loading at once
                pending.append(self._spawn())
            for worker in pending:
                self._await_ready(worker)
                self._workers.append(worker)
        except BaseException:
            for worker in pending:
                self._stop(worker)
            raise

    @property
    def pids(self) -> list[int]:
        return [w.process.pid or 0 for w in self._workers]

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        self._started += 1
        name = f"worker{self._started}"
        process = self._ctx.Process(
            target=_worker_main,
            args=(self.spec, child, self._search_slot, name),
            name=f"agent-batch-{self._started}",
            daemon=True,
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def _await_ready(self, worker: _Worker) -> None:
        ready = wait([worker.conn, worker.process.sentinel], START_TIMEOUT)
        message: Any = None
        if worker.conn in ready:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                message = None
        if isinstance(message, tuple) and message[0] == "ready":
            return
        if isinstance(message, tuple) and message[0] == "init_error":
            raise EngineStartError(message[1])
        code = worker.process.exitcode
        raise EngineStartError(
            f"a worker process exited while loading {self.spec.describe()} (exit code {code})"
            if ready
            else f"a worker did not load {self.spec.describe()} within {START_TIMEOUT:.0f} s"
        )

    def send(self, slot: int, question: Question) -> None:
        try:
            self._workers[slot].conn.send(question)
        except (BrokenPipeError, OSError):
            pass  # the worker is dead: wait() sees its sentinel and reports it lost

    def wait(self, timeout: float) -> list[Outcome]:
        by_handle: dict[Any, int] = {}
        for slot, w in enumerate(self._workers):
            by_handle[w.conn] = slot
            by_handle[w.process.sentinel] = slot
        ready = wait(list(by_handle), timeout)
        outcomes: dict[int, Outcome] = {}
        for handle in ready:
            slot = by_handle[handle]
            if slot not in outcomes:
                outcomes[slot] = self._collect(slot)
        return list(outcomes.values())

    def _collect(self, slot: int) -> Outcome:
        worker = self._workers[slot]
        try:
            if worker.conn.poll():
                kind, payload = worker.conn.recv()
                if kind == "record":
                    return Outcome(slot, record=payload)
        except (EOFError, OSError):
            pass
        worker.process.join(5)
        code = worker.process.exitcode
        why = f"process {worker.process.pid} exited with code {code}"
        self._stop(worker)
        replacement = self._spawn()
        self._await_ready(replacement)
        self._workers[slot] = replacement
        return Outcome(slot, lost=why)

    def _stop(self, worker: _Worker) -> None:
        if worker.process.is_alive():
            try:
                worker.conn.send(None)
            except OSError:
                pass
            worker.process.join(2)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(5)
        worker.conn.close()

    def close(self) -> None:
        for worker in self._workers:
            self._stop(worker)
        self._workers = []
