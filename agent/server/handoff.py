"""Engine threads hand events to the event loop in bursts: one wake-up of the loop per burst.

The batch scheduler hands every running sequence's piece over at once, at the start of the next
decode step. Waking the loop once per piece (``call_soon_threadsafe`` each) costs a pipe write, a
wake-up and a thread switch apiece, on the two cores the step's kernels need; a burst costs one.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from typing import Any


class LoopHandoff:
    """Puts items on asyncio queues of one loop from any thread, in the order they were put."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._items: deque[tuple[asyncio.Queue, Any]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def put(self, queue: asyncio.Queue, item: Any) -> None:
        with self._lock:
            self._items.append((queue, item))
            if self._scheduled:  # the loop has yet to drain: it takes this one too
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed (server shutting down): nobody reads any more
            with self._lock:
                self._items.clear()
                self._scheduled = False

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, deque()
            self._scheduled = False
        for queue, item in items:
            queue.put_nowait(item)


_handoffs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopHandoff] = (
    weakref.WeakKeyDictionary()
)
_handoffs_lock = threading.Lock()


def handoff_for(loop: asyncio.AbstractEventLoop) -> LoopHandoff:
    """The loop's one handoff (made on first use; called on the loop's own thread)."""
    with _handoffs_lock:
        handoff = _handoffs.get(loop)
        if handoff is None:
            handoff = _handoffs[loop] = LoopHandoff(loop)
        return handoff
