"""LoopHandoff: events from other threads reach their asyncio queues in order, a burst waking the
loop once."""

from __future__ import annotations

import asyncio
import threading

from agent.server.handoff import LoopHandoff, handoff_for


def test_a_burst_from_another_thread_arrives_in_order_with_one_wake_up():
    async def main() -> tuple[list, list, int]:
        loop = asyncio.get_running_loop()
        handoff = LoopHandoff(loop)
        wakes = 0
        original = loop.call_soon_threadsafe

        def counting(*args):  # type: ignore[no-untyped-def]
            nonlocal wakes
            wakes += 1
            return original(*args)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        a: asyncio.Queue = asyncio.Queue()
        b: asyncio.Queue = asyncio.Queue()

        def engine_step() -> None:  # the loop is parked in the join below: one burst
            for k in range(50):
                handoff.put(a if k % 2 else b, k)

        thread = threading.Thread(target=engine_step)
        thread.start()
        thread.join()
        got_a = [await a.get() for _ in range(25)]
        got_b = [await b.get() for _ in range(25)]
        handoff.put(a, "later")  # after a drain the next item wakes the loop again
        assert await a.get() == "later"
        return got_a, got_b, wakes

    got_a, got_b, wakes = asyncio.run(main())
    assert got_a == list(range(1, 50, 2)) and got_b == list(range(0, 50, 2))
    assert wakes == 2


def test_a_closed_loop_drops_items_without_raising():
    loop = asyncio.new_event_loop()
    handoff = LoopHandoff(loop)
    loop.close()
    handoff.put(asyncio.Queue(), "late")  # an engine thread finishing after shutdown
    handoff.put(asyncio.Queue(), "later")


def test_one_handoff_per_loop():
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        return handoff_for(loop) is handoff_for(loop)

    assert asyncio.run(main())
