"""Thread-safe pacing and caching shared by the web tools."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def sleep_until(
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Sleep until ``clock()`` reaches ``deadline``.

    In a loop on ``clock``: a ``sleep`` that returns early (a coarser timer, a sleep on another
    clock, an interruptible wait) sleeps again for what is left, so the deadline is only ever
    passed on the clock it was set on. ``sleep`` must let ``clock`` advance (a fake sleep goes
    with the fake clock it advances).
    """
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            return
        sleep(remaining)


class RateLimiter:
    """At most one call per ``min_interval`` seconds, across threads, in arrival order.

    Each caller reserves the next free slot under the lock and sleeps outside it, so waiting
    callers do not block one another's reservations. Slots are times on ``clock`` and a caller
    returns only once ``clock`` has reached its slot, whatever ``sleep`` does.
    """

    def __init__(
        self,
        min_interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.min_interval = max(0.0, min_interval)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_free: float | None = None

    def wait(self) -> float:
        """Block until this caller's slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = now if self._next_free is None else max(now, self._next_free)
            self._next_free = slot + self.min_interval
        delay = slot - now
        if delay > 0:
            sleep_until(slot, self._clock, self._sleep)
        return delay


class ResultCache:
    """A time-limited cache of JSON-able values: in memory, and on disk when ``directory`` is set.

    Disk entries are one JSON file per key (named by the key's SHA-256), written atomically so
    concurrent processes never read half a file.
    """

    def __init__(
        self,
        *,
        ttl: float = 24 * 3600,
        directory: str | os.PathLike | None = None,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.time,
    ):
        self.ttl = ttl
        self.directory = Path(directory) if directory is not None else None
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._memory: dict[str, tuple[float, Any]] = {}

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / (hashlib.sha256(key.encode("utf-8")).hexdigest() + ".json")

    def get(self, key: str) -> Any | None:
        now = self._clock()
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                if now - hit[0] <= self.ttl:
                    return hit[1]
                del self._memory[key]
        if self.directory is None:
            return None
        try:
            record = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("key") != key:
            return None
        stored = record.get("time")
        if not isinstance(stored, (int, float)) or now - stored > self.ttl:
            return None
        with self._lock:
            self._memory[key] = (float(stored), record.get("value"))
        return record.get("value")

    def put(self, key: str, value: Any) -> None:
        now = self._clock()
        with self._lock:
            if len(self._memory) >= self.max_entries and key not in self._memory:
                oldest = min(self._memory, key=lambda k: self._memory[k][0])
                del self._memory[oldest]
            self._memory[key] = (now, value)
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"key": key, "time": now, "value": value}, ensure_ascii=False)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
            os.replace(tmp, self._path(key))
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass


class KeyedLocks:
    """One lock per key, so concurrent identical requests run once and the rest hit the cache."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    def acquire(self, key: str) -> threading.Lock:
        with self._lock:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        lock.acquire()
        return lock

    def release(self, key: str) -> None:
        with self._lock:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
        lock.release()
