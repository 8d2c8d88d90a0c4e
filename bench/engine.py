"""Engine speed against what this machine allows (issue 3). Not a test: run it by hand.

    .venv/bin/python bench/engine.py                      # 1b and 7b shapes, every type
    .venv/bin/python bench/engine.py --quick              # 1b q4_0 only, fewer repetitions
    .venv/bin/python bench/engine.py --shapes 1b --types q4_0,q4_k --json out.json
    .venv/bin/python bench/engine.py --vs-llama-cpp       # also llama-cpp-python, when installed
    .venv/bin/python bench/engine.py --quick --decode-at 2000  # + decode after a 2000-token prompt

Random-block models of real shapes are made once with the project's own writer
(``agent.llm.formats.fixtures``) and cached in bench/.cache/. Every model is measured in a fresh
process (load time, peak resident memory and warm start are per process): a first child warms the
kernel caches (the compiled C library, or numba's), a second one measures. The same run measures the
machine's limits -- memory read bandwidth (numpy sums over 1 GB, on ``threads`` threads) and numpy's
float32 sgemm rate -- and reports decode as a fraction of bandwidth / weight bytes, prefill as a
fraction of the sgemm rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / ".cache"
SHAPES = ("1b", "7b")
TYPES = ("q4_0", "q4_k", "q6_k", "q8_0", "q4_k_m")


# --- the machine's limits ------------------------------------------------------------------------


def memory_bandwidth(threads: int, nbytes: int = 1 << 30) -> float:
    """Read bandwidth in bytes/s: numpy sums (which release the GIL) over ``nbytes`` of float32."""
    a = np.ones(nbytes // 4, np.float32)
    parts = np.array_split(a, threads * 8)
    best = float("inf")
    with ThreadPoolExecutor(threads) as ex:
        for _ in range(10):
            t0 = time.perf_counter()
            list(ex.map(np.sum, parts))
            best = min(best, time.perf_counter() - t0)
    return a.nbytes / best


def sgemm_rate(threads: int, m: int = 512, k: int = 2048, n: int = 5632) -> float:
    """numpy float32 matmul FLOP/s on a prefill-like shape (tokens x n_embd @ n_embd x n_ff)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    best = float("inf")
    with threadpool_limits(limits=threads, user_api="blas"):
        a @ b
        for _ in range(10):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
    return 2.0 * m * k * n / best


# --- one model, in a child process ---------------------------------------------------------------


def peak_rss() -> int:
    """Peak resident set of this process in bytes (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def weight_bytes(m: Any) -> int:
    """Bytes read per decoded token: every matrix except the embedding table (looked up by row)."""
    return sum(
        t.nbytes
        for name, t in m.file.tensors.items()
        if len(t.shape) == 2 and name != "token_embd.weight"
    ) + (0 if "output.weight" in m.file.tensors else m.file.tensors["token_embd.weight"].nbytes)


def decode_rate(eval_token: Any, ids: list[int], start: int, n_decode: int) -> tuple[float, float]:
    """Median and best tokens/s of single-token evals of ids[start:start + n_decode]."""
    times = []
    for i in range(n_decode):
        t = time.perf_counter()
        eval_token([ids[start + i]])
        times.append(time.perf_counter() - t)
    return 1.0 / float(np.median(times)), 1.0 / min(times)


def child(
    path: str, threads: int, n_decode: int, prefills: list[int], decode_at: int = 0
) -> dict[str, Any]:
    t_start = time.perf_counter()
    from agent.llm import kernels, load_model

    kernels.backend()  # importing numba and LLVM alone is ~70 MB; the C kernels ~2 MB
    base_rss = current_rss()  # the interpreter with numpy, the engine and its kernels imported

    t0 = time.perf_counter()
    n_ctx = max(max(prefills) + n_decode + 8, 340, decode_at + n_decode + 8)
    m = load_model(path, n_ctx=n_ctx, threads=threads)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    ids = [int(i) for i in rng.integers(3, m.info.n_vocab, size=n_ctx)]
    m.eval(ids[:8])  # a short prompt, then the first generated token: the warm-start figure
    m.eval(ids[8:9])
    first_token_s = time.perf_counter() - t0
    res: dict[str, Any] = {
        "load_s": load_s,
        "first_token_s": first_token_s,
        "process_to_first_token_s": time.perf_counter() - t_start,
        "kernels": kernels.backend_name(),
    }
    for n in prefills:  # a prompt, as generation evaluates it: only its last logits are kept
        m.reset()
        t = time.perf_counter()
        m.eval_prompt(ids[:n])
        res[f"prefill{n}_tok_s"] = n / (time.perf_counter() - t)
        res[f"peak_rss_pp{n}"] = peak_rss()  # prompts are evaluated shortest first
    m.reset()
    m.eval(ids[:64])
    res["decode_tok_s"], res["decode_best_tok_s"] = decode_rate(m.eval, ids, 64, n_decode)
    if decode_at:  # decode deep into the context, where attention reads the whole KV cache
        m.reset()
        m.eval_prompt(ids[:decode_at])
        res[f"decode_at{decode_at}_tok_s"] = decode_rate(m.eval, ids, decode_at, n_decode)[0]
    # Two prompts sharing a 300-token prefix: the second evaluates only its 10-token tail.
    m.reset()
    t = time.perf_counter()
    m.eval_prompt(ids[:310])
    first = time.perf_counter() - t
    t = time.perf_counter()
    m.eval_prompt(ids[:300] + ids[320:330])
    res["prefix_reuse_ratio"] = (time.perf_counter() - t) / first
    info = m.info
    res["kv_bytes"] = 2 * info.n_layer * n_ctx * info.n_head_kv * info.head_dim * 2  # K and V, f16
    res["weight_bytes"] = weight_bytes(m)
    res["matmul_params"] = sum(
        int(np.prod(t.shape))
        for name, t in m.file.tensors.items()
        if len(t.shape) == 2 and name != "token_embd.weight"
    )
    res["file_bytes"] = os.path.getsize(path)
    res["peak_rss"] = peak_rss()
    res["base_rss"] = base_rss
    return res


def child_llama_cpp(
    path: str, threads: int, n_decode: int, prefills: list[int], decode_at: int = 0
) -> dict[str, Any]:
    from llama_cpp import Llama  # optional; not a dependency

    t0 = time.perf_counter()
    n_ctx = max(max(prefills), decode_at) + n_decode + 8
    llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_batch=512, verbose=False)
    res: dict[str, Any] = {"load_s": time.perf_counter() - t0}
    rng = np.random.default_rng(0)
    ids = [int(i) for i in rng.integers(3, llm.n_vocab(), size=n_ctx)]
    for n in prefills:
        llm.reset()
        t = time.perf_counter()
        llm.eval(ids[:n])
        res[f"prefill{n}_tok_s"] = n / (time.perf_counter() - t)
    llm.reset()
    llm.eval(ids[:64])
    res["decode_tok_s"] = decode_rate(llm.eval, ids, 64, n_decode)[0]
    if decode_at:
        llm.reset()
        llm.eval(ids[:decode_at])
        res[f"decode_at{decode_at}_tok_s"] = decode_rate(llm.eval, ids, decode_at, n_decode)[0]
    res["peak_rss"] = peak_rss()
    return res


def run_child(
    path: Path, args: argparse.Namespace, engine: str = "agent", env: dict[str, str] | None = None
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        str(path),
        "--engine",
        engine,
        "--threads",
        str(args.threads),
        "--n-decode",
        str(args.n_decode),
        "--prefills",
        ",".join(map(str, args.prefills)),
        "--decode-at",
        str(args.decode_at),
    ]
    if engine == "llama.cpp":  # may live in another environment (it is no dependency of ours)
        cmd[0] = args.llama_cpp_python
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"benchmark child failed on {path.name}:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# --- driver --------------------------------------------------------------------------------------


def add_llama_cpp_python_option(p: argparse.ArgumentParser) -> None:
    """--llama-cpp-python: llama.cpp may live in another environment (it is no dependency)."""
    p.add_argument(
        "--llama-cpp-python",
        default=os.environ.get("AGENT_LLAMA_CPP_PYTHON", sys.executable),
        help="a Python that can import llama_cpp (default: $AGENT_LLAMA_CPP_PYTHON, else this one)",
    )


def model_file(shape: str, qtype: str) -> Path:
    path = CACHE / f"{shape}-{qtype}.gguf"
    if not path.exists():
        from agent.llm.formats.fixtures import make_model

        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"making {path.name} (cached for later runs)...", file=sys.stderr, flush=True)
        tmp = path.with_suffix(".part")
        make_model(tmp, shape=shape, qtype=qtype)
        tmp.rename(path)
    return path


def cold_compile_seconds(path: Path, args: argparse.Namespace) -> float:
    """First-token time of a process with empty kernel caches (what a fresh install pays once)."""
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d, AGENT_CACHE_DIR=d)
        return run_child(path, args, env=env)["first_token_s"]


def summarize(r: dict[str, Any], bw: float, flops: float) -> dict[str, Any]:
    out = dict(r)
    out["decode_limit_tok_s"] = bw / r["weight_bytes"]
    out["decode_frac_bw"] = r["decode_tok_s"] / out["decode_limit_tok_s"]
    for key in [k for k in r if k.startswith("prefill")]:
        out[key.replace("_tok_s", "_frac_sgemm")] = r[key] * 2.0 * r["matmul_params"] / flops
    out["rss_over_file"] = r["peak_rss"] / r["file_bytes"]
    out["rss_bound_ok"] = r["peak_rss"] <= 1.25 * r["file_bytes"] + r["kv_bytes"]
    first = [k for k in r if k.startswith("peak_rss_pp")][:1]
    if first:  # the peak while only the shortest prompt had been evaluated
        out["rss_first_pp_over_file"] = r[first[0]] / r["file_bytes"]
        out["rss_first_pp_bound_ok"] = r[first[0]] <= 1.25 * r["file_bytes"] + r["kv_bytes"]
    if "base_rss" in r:  # the same, not counting what the process held before load_model
        out["model_rss_over_file"] = (r["peak_rss"] - r["base_rss"]) / r["file_bytes"]
    return out


def print_table(rows: list[dict[str, Any]], prefills: list[int], decode_at: int = 0) -> None:
    head = (
        ["model", "engine", "load s", "1st tok s"]
        + [f"pp{n} tok/s" for n in prefills]
        + [f"pp{n}/sgemm" for n in prefills]
        + [
            "tg tok/s",
            "tg/limit",
            "limit",
            f"RSS@pp{prefills[0]}/file",
            "ok",
            "peakRSS/file",
            "(-imports)",
            "ok",
            "prefix reuse",
        ]
        + ([f"tg@{decode_at} tok/s"] if decode_at else [])
    )
    print(" | ".join(head))
    print("|".join("---" for _ in head))
    for r in rows:
        engine = r["engine"] + (f" ({r['kernels']})" if r.get("kernels") else "")
        cells = [
            r["model"],
            engine,
            f"{r['load_s']:.2f}",
            f"{r.get('first_token_s', float('nan')):.2f}",
        ]
        cells += [f"{r[f'prefill{n}_tok_s']:.1f}" for n in prefills]
        cells += [f"{r.get(f'prefill{n}_frac_sgemm', float('nan')):.2f}" for n in prefills]
        cells += [
            f"{r['decode_tok_s']:.1f}",
            f"{r.get('decode_frac_bw', float('nan')):.2f}",
            f"{r.get('decode_limit_tok_s', float('nan')):.1f}",
            f"{r.get('rss_first_pp_over_file', float('nan')):.2f}",
            str(r.get("rss_first_pp_bound_ok", "")),
            f"{r.get('rss_over_file', float('nan')):.2f}",
            f"{r.get('model_rss_over_file', float('nan')):.2f}",
            str(r.get("rss_bound_ok", "")),
            f"{r.get('prefix_reuse_ratio', float('nan')):.3f}",
        ]
        if decode_at:
            cells.append(f"{r.get(f'decode_at{decode_at}_tok_s', float('nan')):.1f}")
        print(" | ".join(cells))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--shapes", default=",".join(SHAPES), help=f"comma-separated ({','.join(SHAPES)})"
    )
    p.add_argument("--types", default=",".join(TYPES), help=f"comma-separated ({','.join(TYPES)})")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--n-decode", type=int, default=32, help="decoded tokens timed (median reported)"
    )
    p.add_argument("--prefills", default="128,512", help="prompt lengths timed")
    p.add_argument(
        "--decode-at",
        type=int,
        default=0,
        metavar="N",
        help="also time decoding after an N-token prompt (long-context attention)",
    )
    p.add_argument(
        "--quick", action="store_true", help="1b q4_0 only, prefill 128, 16 decode steps"
    )
    p.add_argument(
        "--cold", action="store_true", help="also time a first run with an empty numba cache"
    )
    p.add_argument(
        "--vs-llama-cpp", action="store_true", help="also run llama-cpp-python on the same files"
    )
    p.add_argument(
        "--kernels",
        choices=["c", "numba", "reference"],
        help="kernel module for the agent engine (AGENT_KERNELS; default: C, else numba)",
    )
    add_llama_cpp_python_option(p)
    p.add_argument("--json", metavar="FILE", help="write the results here")
    p.add_argument("--child", metavar="MODEL", help=argparse.SUPPRESS)
    p.add_argument("--engine", default="agent", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.prefills = sorted(int(n) for n in str(args.prefills).split(",") if n)
    if args.child:
        fn = child if args.engine == "agent" else child_llama_cpp
        print(
            json.dumps(fn(args.child, args.threads, args.n_decode, args.prefills, args.decode_at))
        )
        return 0
    if args.kernels:
        os.environ["AGENT_KERNELS"] = args.kernels  # the children inherit it
    if args.quick:
        args.shapes, args.types, args.prefills, args.n_decode = "1b", "q4_0", [128], 16
    shapes = [s for s in args.shapes.split(",") if s]
    types = [t for t in args.types.split(",") if t]

    bw = memory_bandwidth(args.threads)
    flops = sgemm_rate(args.threads)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} threads; read bandwidth {bw / 1e9:.1f} GB/s; numpy sgemm "
        f"{flops / 1e9:.0f} GFLOP/s"
    )
    rows: list[dict[str, Any]] = []
    for shape in shapes:
        for qtype in types:
            path = model_file(shape, qtype)
            run_child(path, args)  # warms the numba cache and the page cache
            r = summarize(run_child(path, args), bw, flops)
            r.update(model=f"{shape} {qtype}", engine="agent", file=str(path))
            if args.cold:
                r["cold_first_token_s"] = cold_compile_seconds(path, args)
            rows.append(r)
            print(
                f"{r['model']}: decode {r['decode_tok_s']:.1f} tok/s ({r['decode_frac_bw']:.2f} of "
                "the limit), "
                + ", ".join(
                    f"prefill{n} {r[f'prefill{n}_tok_s']:.1f} tok/s" for n in args.prefills
                ),
                file=sys.stderr,
                flush=True,
            )
            if args.vs_llama_cpp:
                probe = [args.llama_cpp_python, "-c", "import llama_cpp"]
                if subprocess.run(probe, capture_output=True).returncode != 0:
                    print(
                        "llama-cpp-python is not installed; skipping --vs-llama-cpp",
                        file=sys.stderr,
                    )
                    args.vs_llama_cpp = False
                else:
                    lr = run_child(path, args, engine="llama.cpp")
                    lr.update(
                        model=f"{shape} {qtype}",
                        engine="llama.cpp",
                        weight_bytes=r["weight_bytes"],
                        matmul_params=r["matmul_params"],
                        file_bytes=r["file_bytes"],
                        kv_bytes=r["kv_bytes"],
                    )
                    rows.append(summarize(lr, bw, flops))
    print()
    print_table(rows, args.prefills, args.decode_at)
    if any("cold_first_token_s" in r for r in rows):
        for r in rows:
            if "cold_first_token_s" in r:
                print(
                    f"{r['model']}: first token with an empty numba cache "
                    f"{r['cold_first_token_s']:.1f} s"
                )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "bandwidth_bytes_s": bw,
                    "sgemm_flops": flops,
                    "threads": args.threads,
                    "rows": rows,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
