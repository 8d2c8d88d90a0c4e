"""One pace for web searches across every engine of a batch.

``RateLimiter`` (``agent.tools.throttle``) paces the threads of one process. A batch has many
processes, so the next free slot lives in shared memory (local pool) or in one Ray actor (cluster),
and every DuckDuckGo tool of every engine reserves its slot there.
"""

from __future__ import annotations

import time
from typing import Any

from agent.tools.throttle import sleep_until


class SharedRateLimiter:
    """At most one call per ``min_interval`` across processes of one machine.

    ``slot`` is a ``multiprocessing.Value("d")`` made by the driver and inherited by the workers;
    ``time.monotonic`` is one clock for every process of a machine.
    """

    def __init__(self, min_interval: float, slot: Any):
        self.min_interval = max(0.0, min_interval)
        self.slot = slot

    def wait(self) -> float:
        with self.slot.get_lock():
            now = time.monotonic()
            start = max(now, self.slot.value)
            self.slot.value = start + self.min_interval
        delay = start - now
        if delay > 0:
            sleep_until(start)
        return delay


class SlotBook:
    """The cluster's next free slot; lives in one Ray actor. Returns delays, not clock times,
    because the nodes' clocks differ."""

    def __init__(self, min_interval: float):
        self.min_interval = max(0.0, min_interval)
        self.next_free = 0.0

    def reserve(self) -> float:
        now = time.monotonic()
        start = max(now, self.next_free)
        self.next_free = start + self.min_interval
        return start - now


class RemoteRateLimiter:
    """The limiter a Ray actor's tools use: asks the ``SlotBook`` actor, then sleeps."""

    def __init__(self, book: Any):
        self.book = book

    def wait(self) -> float:
        import ray

        delay = float(ray.get(self.book.reserve.remote()))
        if delay > 0:
            sleep_until(time.monotonic() + delay)
        return delay
