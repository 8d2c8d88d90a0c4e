"""Serving benchmark: ``agent serve --parallel N`` driven by 1, 2, 4 and 8 concurrent streaming
clients (the ``openai`` client), then the same with one long prompt arriving while they stream.

    .venv/bin/python bench/serve.py                       # 1b q4_0 (made once in bench/.cache/)
    .venv/bin/python bench/serve.py --clients 1,4 --max-tokens 32 --json out.json
    .venv/bin/python bench/serve.py --phases ttft --long-tokens 2000

Prints, per number of clients: aggregate generated tokens/s (all completion tokens / wall time,
prompt reading included), all-streaming tokens/s (text chunks per second while all N requests
stream at once: the decode throughput of N sequences together), per-client decode tokens/s (tokens
after the first / time after the first), time to first token p50/p95; then time to first token
of a short request on the idle server and while a long prompt (``--long-tokens``, 2,000 by
default) is being read, and the clients' figures with the long prompt arriving among them.
Only ratios from one run mean much on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine import model_file  # bench/engine.py: the cached random-weight models

ROOT = Path(__file__).resolve().parent.parent
SHORT = "Request {n}: write a short story about a robot who learns to paint. Begin:"
_count = iter(range(10**9))  # every short prompt its own: none is a prefix-cache hit


def short() -> str:
    return SHORT.format(n=next(_count))


def long_prompt(model: Path, n_tokens: int, tag: str = "item") -> str:
    """A prompt of about ``n_tokens`` tokens in the model's own vocabulary; another ``tag``, another
    prompt (a phase must not find the previous phase's long prompt cached in a slot)."""
    from agent.llm import load_model

    m = load_model(model, vocab_only=True)
    words, text = [], ""
    while len(m.tokenize(text)) < n_tokens:
        words.extend(f"{tag} {len(words)} of the list is a {w}," for w in ("cat", "dog", "bird"))
        text = " ".join(words)
    ids = m.tokenize(text)[1:n_tokens]
    return m.detokenize(ids)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, model: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "agent.cli", "serve", "-m", str(model), "--port", str(port)]
    cmd += ["-c", str(args.n_ctx), "--parallel", str(args.parallel), "--queue-size", "32"]
    if args.prompt_chunk is not None:
        cmd += ["--prompt-chunk", str(args.prompt_chunk)]
    if args.max_step_ms is not None:
        cmd += ["--max-step-ms", str(args.max_step_ms)]
    if args.threads:
        cmd += ["-t", str(args.threads)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    import httpx

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"agent serve exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(url + "/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("agent serve did not start within 600 s")


def one_request(client, prompt: str, max_tokens: int, seed: int) -> dict[str, float]:
    """Stream one completion: time to first token, tokens, decode time after the first token."""
    t0 = time.perf_counter()
    first = 0.0
    tokens = 0
    arrivals: list[float] = []  # when each text chunk came
    stream = client.completions.create(
        model="bench",
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=0.8,
        seed=seed,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            arrivals.append(time.perf_counter())
            first = first or arrivals[-1]
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    end = time.perf_counter()
    return {
        "ttft": (first or end) - t0,
        "tokens": tokens,
        "decode_s": end - (first or end),
        "arrivals": arrivals,
    }


def all_streaming_rate(results: list[dict], n: int) -> float | None:
    """Chunks per second while ``n`` requests stream at once (each between its first and last
    chunk): the decode throughput of n sequences together, without the prompt reading around it."""
    edges = sorted(
        [(r["arrivals"][0], 1) for r in results if r["arrivals"]]
        + [(r["arrivals"][-1], -1) for r in results if r["arrivals"]]
    )
    windows, live, since = [], 0, 0.0
    for t, step in edges:
        if live == n:
            windows.append((since, t))
        live += step
        since = t
    span = sum(b - a for a, b in windows)
    if span <= 0:
        return None
    chunks = sum(1 for r in results for t in r["arrivals"] if any(a < t <= b for a, b in windows))
    return chunks / span


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run_clients(url: str, n: int, rounds: int, max_tokens: int, long: str | None) -> dict:
    import openai

    results: list[dict[str, float]] = []
    lock = threading.Lock()

    def client_loop(i: int) -> None:
        c = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=900)
        for r in range(rounds):
            res = one_request(c, short(), max_tokens, seed=100 * i + r)
            with lock:
                results.append(res)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(n)]
    long_thread = None
    t0 = time.perf_counter()
    if long is not None:  # the long prompt arrives just after the clients started
        c = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=900)
        long_thread = threading.Thread(target=one_request, args=(c, long, 1, 0))
    for t in threads:
        t.start()
    if long_thread is not None:
        time.sleep(0.3)
        long_thread.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if long_thread is not None:
        long_thread.join()
    tokens = sum(r["tokens"] for r in results)
    per_client = [
        (r["tokens"] - 1) / r["decode_s"] for r in results if r["decode_s"] > 0 and r["tokens"] > 1
    ]
    ttfts = [r["ttft"] for r in results]
    return {
        "clients": n,
        "requests": len(results),
        "tokens": tokens,
        "wall_s": round(wall, 2),
        "aggregate_tok_s": round(tokens / wall, 2),
        "all_streaming_tok_s": round(rate, 2) if (rate := all_streaming_rate(results, n)) else None,
        "per_client_tok_s": round(statistics.median(per_client), 2) if per_client else 0.0,
        "ttft_p50_s": round(pct(ttfts, 0.5), 3),
        "ttft_p95_s": round(pct(ttfts, 0.95), 3),
    }


def ttft_during_long_prompt(url: str, long: str, repeats: int) -> dict:
    """A short request's time to first token on the idle server, then while ``long`` is read."""
    import openai

    c = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=900)
    idle = [one_request(c, short(), 2, seed=i)["ttft"] for i in range(repeats)]
    busy: list[float] = []
    long_done = threading.Event()

    def read_long() -> None:
        one_request(
            openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=900), long, 1, 0
        )
        long_done.set()

    t = threading.Thread(target=read_long)
    t0 = time.perf_counter()
    t.start()
    time.sleep(0.5)  # the long prompt is being read
    while not long_done.is_set() and len(busy) < repeats:
        res = one_request(c, short(), 2, seed=len(busy))
        if not long_done.is_set():
            busy.append(res["ttft"])
    t.join()
    long_s = time.perf_counter() - t0
    return {
        "idle_ttft_p50_s": round(statistics.median(idle), 3),
        "busy_ttft_p50_s": round(statistics.median(busy), 3) if busy else None,
        "busy_ttft_max_s": round(max(busy), 3) if busy else None,
        "busy_samples": len(busy),
        "ratio_p50": round(statistics.median(busy) / statistics.median(idle), 2) if busy else None,
        "long_prompt_s": round(long_s, 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="default: bench/.cache/1b-q4_0.gguf")
    p.add_argument("--clients", default="1,2,4,8")
    p.add_argument("--rounds", type=int, default=2, help="requests per client per phase")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--long-tokens", type=int, default=2000)
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument(
        "--prompt-chunk", type=int, default=None, help="agent serve --prompt-chunk (default: its)"
    )
    p.add_argument(
        "--max-step-ms", type=float, default=None, help="agent serve --max-step-ms (default: its)"
    )
    p.add_argument("-c", "--n-ctx", type=int, default=2304)
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument(
        "--phases",
        default="clients,ttft,mixed",
        help="clients (1/2/4/8 streams), ttft (short request idle vs during the long prompt), "
        "mixed (the clients again with the long prompt among them); default all",
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the server child on the way out
    model = args.model or model_file("1b", "q4_0")
    long = long_prompt(model, args.long_tokens)
    proc, url = start_server(args, model)
    out: dict = {"model": model.name, "parallel": args.parallel, "cpus": os.cpu_count()}
    try:
        run_clients(url, 1, 1, 4, None)  # warm-up: kernels compiled, matrices repacked
        phases = args.phases.split(",")
        counts = [int(x) for x in args.clients.split(",")]
        if "clients" in phases:
            out["clients"] = []
            for n in counts:
                row = run_clients(url, n, args.rounds, args.max_tokens, None)
                print(json.dumps(row), flush=True)
                out["clients"].append(row)
            base = out["clients"][0]["aggregate_tok_s"]
            out["speedup"] = {
                r["clients"]: round(r["aggregate_tok_s"] / base, 2) for r in out["clients"]
            }
            print("aggregate speedup over the first row:", json.dumps(out["speedup"]), flush=True)
            base = out["clients"][0]["all_streaming_tok_s"]
            if base:
                out["streaming_speedup"] = {
                    r["clients"]: round(r["all_streaming_tok_s"] / base, 2)
                    for r in out["clients"]
                    if r["all_streaming_tok_s"]
                }
                print(
                    "all-streaming speedup over the first row:",
                    json.dumps(out["streaming_speedup"]),
                    flush=True,
                )
        if "ttft" in phases:
            out["long_prompt_ttft"] = ttft_during_long_prompt(url, long, 5)
            print(json.dumps(out["long_prompt_ttft"]), flush=True)
        if "mixed" in phases:
            out["clients_with_long_prompt"] = []
            for n in counts:
                row = run_clients(
                    url, n, 1, args.max_tokens, long_prompt(model, args.long_tokens, f"entry{n}")
                )
                print(json.dumps({"with_long_prompt": True, **row}), flush=True)
                out["clients_with_long_prompt"].append(row)
    finally:
        proc.terminate()
        proc.wait(30)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
