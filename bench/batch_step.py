"""Engine-level batching gain: one forward step over n decode rows (n sequences, each in its own
KV slot) against n one-row steps, in the same run, alternating.

    .venv/bin/python bench/batch_step.py                  # 1b q4_0 (bench/.cache), 1/2/4/8 rows
    .venv/bin/python bench/batch_step.py -t 1 --rows 1,4,8 --position 500
    .venv/bin/python bench/batch_step.py --vs-llama-cpp --llama-cpp-python /path/to/venv/bin/python

The ratio (n one-row steps over one n-row step) is the most batching can raise decode throughput
with the current kernels; ``bench/serve.py`` measures the same through the server. With
``--vs-llama-cpp`` llama.cpp's own gain on the same file follows, in the same run
(``bench/llama_cpp_batch.py``, one ``llama_decode`` over n sequences against n of one).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from engine import (  # bench/engine.py: the cached random-weight models, the yardstick
    add_llama_cpp_python_option,
    model_file,
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="default: bench/.cache/1b-q4_0.gguf")
    p.add_argument("--rows", default="1,2,4,8")
    p.add_argument("--position", type=int, default=64, help="cached positions per sequence")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("--vs-llama-cpp", action="store_true", help="also llama.cpp's gain, same file")
    add_llama_cpp_python_option(p)
    args = p.parse_args()

    from agent.llm import load_model
    from agent.llm.kernels.runtime import backend_name
    from agent.llm.transformer import Span

    path = args.model or model_file("1b", "q4_0")
    rows = [int(x) for x in args.rows.split(",")]
    m = load_model(path, n_ctx=args.position + 8, threads=args.threads)
    m.prepare()
    tr = m.transformer
    shape = tr.k_cache.shape
    caches = [(np.zeros(shape, np.float16), np.zeros(shape, np.float16)) for _ in range(max(rows))]
    pos = args.position

    def batched(n: int) -> None:
        spans = [Span(i, i + 1, pos, *caches[i]) for i in range(n)]
        tr.head(tr.layers_forward(np.arange(5, 5 + n), spans))

    def one_by_one(n: int) -> None:
        for i in range(n):
            tr.head(tr.layers_forward(np.arange(5, 6), [Span(0, 1, pos, *caches[i])]))

    threads = m.threads
    print(f"{path.name}, kernels {backend_name()}, threads {threads}, position {pos}")
    batched(max(rows))  # warm-up
    for n in rows:
        b, s = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            batched(n)
            b.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            one_by_one(n)
            s.append(time.perf_counter() - t0)
        report("agent", n, statistics.median(b), statistics.median(s))
    if args.vs_llama_cpp:
        del m, tr, caches  # llama.cpp gets the memory and the cores to itself
        cmd = [
            args.llama_cpp_python,
            str(Path(__file__).with_name("llama_cpp_batch.py")),
            str(path),
        ]
        cmd += ["--rows", args.rows, "--position", str(pos), "--repeats", str(args.repeats)]
        cmd += ["-t", str(threads)]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as exc:
            print(f"cannot run --llama-cpp-python {args.llama_cpp_python}: {exc}", file=sys.stderr)
            return 1
        if run.returncode != 0:
            print(
                f"llama.cpp run failed (is llama_cpp importable by {args.llama_cpp_python}?):\n"
                f"{run.stderr[-1500:]}",
                file=sys.stderr,
            )
            return 1
        for line in run.stdout.splitlines():
            r = json.loads(line)
            report("llama.cpp", r["rows"], r["step_s"], r["one_row_steps_s"])
    return 0


def report(engine: str, n: int, step: float, one_row_steps: float) -> None:
    print(
        f"{engine:9} rows {n}: one step {step * 1e3:7.1f} ms, {n} one-row steps "
        f"{one_row_steps * 1e3:7.1f} ms, gain {one_row_steps / step:.2f}x",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
