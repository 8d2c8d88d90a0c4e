"""Prefill matrix products, integer kernels against dequantized tiles + sgemm. Not a test.

    .venv/bin/python bench/prefill_kernels.py                    # Q4_0 Q4_K Q6_K Q8_0, 128 tokens
    .venv/bin/python bench/prefill_kernels.py --tokens 512 --types Q4_K,Q5_1

One 5632x2048 matrix of random blocks (the 1.1B model's feed-forward shape) per type, one
thread, best of several runs in CPU time (process_time): on a shared machine wall-clock time
mostly measures the other processes. Rates in multiply-adds x 2 per second, and as a fraction of
numpy's float32 sgemm rate on the same shape, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.llm.formats.ggml_types import LAYOUTS, GGMLType  # noqa: E402
from agent.llm.formats.modelfile import TensorInfo  # noqa: E402
from agent.llm.kernels import quant_linear, runtime  # noqa: E402

F16_AT = {"Q4_0": 0, "Q4_1": 0, "Q5_0": 0, "Q5_1": 0, "Q8_0": 0}  # scale offsets kept finite


def cpu_seconds(f: Callable[[], object], reps: int) -> float:
    f()
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        f()
        best = min(best, time.process_time() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--types", default="Q4_0,Q4_K,Q6_K,Q8_0")
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    runtime.set_threads(1)
    rng = np.random.default_rng(0)
    n_out, n_in, nt = 5632, 2048, args.tokens
    a = rng.standard_normal((nt, n_in), dtype=np.float32)
    b = rng.standard_normal((n_in, n_out), dtype=np.float32)
    with threadpool_limits(1, "blas"):
        sgemm = 2 * nt * n_in * n_out / cpu_seconds(lambda: a @ b, args.reps)
    print(f"numpy sgemm, one thread: {sgemm / 1e9:.0f} GFLOP/s ({nt} x {n_in} @ {n_in} x {n_out})")
    for name in args.types.split(","):
        t = GGMLType[name]
        lay = LAYOUTS[t]
        raw = rng.integers(0, 256, (n_out, n_in // lay.block_size, lay.type_size), dtype=np.uint8)
        if name in F16_AT:  # random bytes could be an inf/nan scale: a fixed small one instead
            raw[:, :, 0:2] = (
                np.full(raw.shape[:2], 0.01, np.float16).view(np.uint8).reshape(*raw.shape[:2], 2)
            )
        ti = TensorInfo("w", int(t), (n_out, n_in), 0, raw.reshape(-1))
        x = rng.standard_normal((nt, n_in)).astype(np.float32)
        rates = {}
        for mode in ("float", "int8"):
            os.environ["AGENT_PREFILL"] = mode
            lin = quant_linear.QuantLinear(ti)
            lin.prepare()
            rates[mode] = (
                2 * nt * n_in * n_out / cpu_seconds(lambda lin=lin, x=x: lin(x), args.reps)
            )
        print(
            f"{name}: dequantized tiles + sgemm {rates['float'] / 1e9:.0f} G/s "
            f"({rates['float'] / sgemm:.2f} x sgemm), "
            f"integer kernels {rates['int8'] / 1e9:.0f} G/s "
            f"({rates['int8'] / sgemm:.2f} x sgemm, {rates['int8'] / rates['float']:.1f} x tiles)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
