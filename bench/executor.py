"""Executor latency: scheduling overhead per step, and wall time of parallel plans against the
ideal.

Not a test: run by hand (`.venv/bin/python bench/executor.py`). Tools are local sleeps, so the
figures are the executor's own cost, not the network's or the model's.
"""

from __future__ import annotations

import argparse
import time

from agent.planner import execute, parse_plan


def chain_plan(n: int) -> str:
    lines = ["Plan: start\n#E1 = Echo[go]"]
    lines += [f"Plan: next\n#E{i} = Echo[#E{i - 1}]" for i in range(2, n + 1)]
    return "\n".join(lines) + f"\nAnswer: #E{n}"


def fan_plan(width: int) -> str:
    lines = [f"Plan: fetch {i}\n#E{i} = Sleep[{i}]" for i in range(1, width + 1)]
    refs = ", ".join(f"#E{i}" for i in range(1, width + 1))
    return "\n".join(lines) + f"\nPlan: join\n#E{width + 1} = Echo[{refs}]\nAnswer: #E{width + 1}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=200, help="length of the sequential chain")
    ap.add_argument("--width", type=int, default=6, help="independent steps before the join")
    ap.add_argument("--sleep", type=float, default=0.5, help="seconds each fan-out step takes")
    args = ap.parse_args()

    tools = {"Echo": lambda s: s[:100], "Sleep": lambda s: (time.sleep(args.sleep), s)[1]}

    plan = parse_plan(chain_plan(args.steps), tools=list(tools))
    t0 = time.perf_counter()
    result = execute(plan, tools)
    chain_s = time.perf_counter() - t0
    assert result.ok, result.error
    print(
        f"sequential chain of {args.steps} no-op steps: {chain_s * 1e3:.1f} ms "
        f"= {chain_s / args.steps * 1e6:.0f} us of executor overhead per step"
    )

    plan = parse_plan(fan_plan(args.width), tools=list(tools))
    t0 = time.perf_counter()
    result = execute(plan, tools, max_workers=args.width)
    fan_s = time.perf_counter() - t0
    assert result.ok, result.error
    print(
        f"{args.width} independent {args.sleep}s steps + join: {fan_s:.3f} s "
        f"(ideal {args.sleep:.3f} s, sequential {args.width * args.sleep:.1f} s)"
    )


if __name__ == "__main__":
    main()
