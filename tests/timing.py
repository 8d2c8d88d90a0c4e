"""Timing checks that hold on a shared, noisy machine (CI runs the suite on 2 busy cores).

Two kinds of checks measure time here:

* cost: "N times the input takes about N times the time". ``least_cost`` runs each workload a
  few times, interleaved, and keeps the least CPU time and the least wall time of each. CPU time
  of this process does not grow when another process takes the core mid-run, and the least of a
  few runs drops the run that a GC pass or a cold cache slowed, so a same-run ratio of CPU times
  keeps its bound without the noise that made a single short run fail it. Ratios compare CPU
  time (the work done); absolute bounds compare wall time (what a caller waits).
* pace: "a rate limiter lets calls through at least ``interval`` apart". ``assert_paced`` checks
  what a limiter controls, the earliest moment each call may go, rather than the gaps between
  the moments the callers noticed, which shrink whenever a caller is scheduled late.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    cpu: float  # the least CPU seconds of the runs (every thread of this process)
    wall: float  # the least wall-clock seconds of the runs


def least_cost(*workloads: Callable[[], object], repeat: int = 3) -> list[Cost]:
    """For each workload, the least CPU and the least wall time of ``repeat`` runs.

    The runs are interleaved (a, b, a, b, ...), so a slow spell of the machine falls on both
    sizes of a ratio rather than on all the runs of one.
    """
    cpu = [float("inf")] * len(workloads)
    wall = [float("inf")] * len(workloads)
    for _ in range(repeat):
        for i, work in enumerate(workloads):
            w0, c0 = time.perf_counter(), time.process_time()
            work()
            c1, w1 = time.process_time(), time.perf_counter()
            cpu[i], wall[i] = min(cpu[i], c1 - c0), min(wall[i], w1 - w0)
    return [Cost(c, w) for c, w in zip(cpu, wall, strict=True)]


def assert_paced(calls: Sequence[tuple[float, float, float]], interval: float) -> None:
    """Each call is ``(before, delay, after)``: ``time.monotonic()`` just before ``wait()``, the
    delay ``wait()`` returned, and ``time.monotonic()`` just after it.

    A limiter reserves each call a slot at some moment ``now`` (no earlier than ``before``) and
    returns ``delay = slot - now``, so the slot is at or after ``before + delay``; successive
    slots are ``interval`` apart, and no call goes before its slot. So of any two calls, the
    one reserved second returns at least ``interval`` after the other's ``before + delay``.
    A caller scheduled late only makes its ``after`` later, so this holds on a loaded machine
    with no allowance but float rounding (the full interval, not 90% of it); the only slack
    is the time from ``before`` to the limiter's reading of its clock.
    """
    eps = 1e-6  # float rounding of clock readings near 1e5 s, not timer noise
    for i, (before_i, delay_i, after_i) in enumerate(calls):
        for before_j, delay_j, after_j in calls[i + 1 :]:
            j_second = after_j >= before_i + delay_i + interval - eps
            i_second = after_i >= before_j + delay_j + interval - eps
            assert j_second or i_second, (
                f"two calls less than {interval} s apart: "
                f"{(before_i, delay_i, after_i)} and {(before_j, delay_j, after_j)}"
            )
