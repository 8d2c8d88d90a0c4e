"""Requests run in arrival order from a bounded queue, ``parallel`` at a time.

With ``parallel`` = 1 one worker thread runs every job (a model with one KV cache). With more, as
many worker threads each run one job: their ``generate`` calls meet in the engine's batch scheduler
(``LlamaModel.enable_batching``), which advances them together, each in its own KV slot. A full
queue is refused at once (503) rather than left to time out; a job whose client went away is
skipped, and a running one stops at its next token.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Emit = Callable[[str, Any], None]  # ("piece", text) / ("done", result) / ("error", exception)


class QueueFullError(Exception):
    pass


@dataclass
class Job:
    run: Callable[[Emit, threading.Event], Any]  # runs on the worker thread
    emit: Emit
    cancelled: threading.Event = field(default_factory=threading.Event)


class EngineWorker:
    def __init__(self, queue_size: int = 16, parallel: int = 1):
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._threads: list[threading.Thread] = []
        self.parallel = parallel
        self._running = 0
        self._count_lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._running > 0

    def start(self) -> None:
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._loop, name=f"agent-engine-{i}", daemon=True)
                for i in range(self.parallel)
            ]
            for t in self._threads:
                t.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._threads:
            for job in self._drain():
                job.emit("error", RuntimeError("the server is shutting down"))
            for _ in self._threads:
                self._queue.put(None)
            for t in self._threads:
                t.join(timeout)
            self._threads = []

    def _drain(self) -> list[Job]:
        jobs: list[Job] = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return jobs
            if job is not None:
                jobs.append(job)

    def submit(self, job: Job) -> None:
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFullError(
                f"the server is busy: {self._queue.maxsize} requests are already "
                "waiting; retry shortly"
            ) from None

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.cancelled.is_set():
                continue
            with self._count_lock:
                self._running += 1
            try:
                result = job.run(job.emit, job.cancelled)
                job.emit("done", result)
            # reported to the waiting request (KeyboardInterrupt too), never kills the worker
            except BaseException as exc:  # noqa: BLE001
                job.emit("error", exc)
            finally:
                with self._count_lock:
                    self._running -= 1
