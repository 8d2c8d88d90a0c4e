"""The token work of whole questions, this engine against llama.cpp in the same run. Not a test.

    .venv/bin/python bench/workload.py --model bench/.cache/7b-q4_k_m.gguf
    .venv/bin/python bench/workload.py --model M --cold --questions 2  # a process per question
    .venv/bin/python bench/workload.py --model M --llama-cpp-python /path/to/venv/bin/python

A cassette (default ``examples/nobel-prize.cassette.json``) holds every generation of a question:
its prompt and the text the model wrote. Each is replayed as ``agent ask`` runs it: the prompt is
prefilled reusing the longest prefix already in the KV cache (``eval_prompt``), then the recorded
output tokens are fed one at a time (forced decoding: the same work as sampling them). The token
ids are computed once, with this project's tokenizer, and both engines evaluate exactly those.

Warm (default): one process per engine, the model loaded and ready, the question's token work
timed (after an untimed 64-token prompt: page cache and kernels warm). ``--cold``: a fresh process
per question, as CLI users run it; the persistent prompt cache (``agent.llm.prompt_cache``) then
carries KV state from one process to the next (``--no-prompt-cache`` to compare without it).

llama.cpp runs through llama-cpp-python when it can be imported by ``--llama-cpp-python`` (default:
this interpreter); it is never a dependency of the project.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_CASSETTE = REPO / "examples" / "nobel-prize.cassette.json"


def token_work(
    model_path: str, cassette: Path, max_output: int | None = None
) -> list[dict[str, list[int]]]:
    """Per generation: the prompt's ids (with BOS) and the ids of the recorded output."""
    from agent.llm import load_model
    from agent.planner.cassette import load_cassette

    data = load_cassette(cassette)  # any version, checked
    m = load_model(model_path, vocab_only=True)
    # A cassette keeps its interactions sorted by request, not in run order: the plan is written
    # first, then the steps' generations, as ``agent ask`` runs them.
    gens = [i for i in data["interactions"] if i["kind"] == "generate"]
    gens.sort(key=lambda i: i.get("purpose") != "plan")
    work = []
    for g in gens:
        text, output = g["request"]["prompt"], g["response"]["output"]
        prompt = m.tokenize(text, bos=True)
        full = m.tokenize(text + output, bos=True)
        # the output's ids as they follow the prompt (SentencePiece merges across the seam)
        out = full[len(prompt) :] if full[: len(prompt)] == prompt else m.tokenize(output, False)
        work.append({"prompt": prompt, "output": out[:max_output]})
    if not work:
        raise SystemExit(f"{cassette}: no generations to replay")
    return work


# --- children: one engine, one process -----------------------------------------------------------


def replay(prefill: Any, decode: Any, work: list[dict[str, list[int]]]) -> dict[str, float]:
    res = {"prefill_s": 0.0, "decode_s": 0.0, "prompt_tokens": 0, "output_tokens": 0}
    for g in work:
        t = time.perf_counter()
        prefill(g["prompt"])
        res["prefill_s"] += time.perf_counter() - t
        res["prompt_tokens"] += len(g["prompt"])
        t = time.perf_counter()
        for tok in g["output"]:
            decode(tok)
        res["decode_s"] += time.perf_counter() - t
        res["output_tokens"] += len(g["output"])
    return res


def child_agent(args: argparse.Namespace, work: list[dict[str, list[int]]]) -> dict[str, Any]:
    t0 = time.perf_counter()
    from agent.llm import load_model

    m = load_model(args.model, n_ctx=args.n_ctx, threads=args.threads)
    if args.prompt_cache_dir:
        from agent.llm.prompt_cache import PromptCache

        m.prompt_cache = PromptCache(args.prompt_cache_dir)
    m.prepare()
    load_s = time.perf_counter() - t0

    def prefill(ids: list[int]) -> None:
        m.eval_prompt(ids)

    def decode(tok: int) -> None:
        m.eval([tok])

    if not args.cold:  # warm-up: page cache and kernels, then an empty KV cache
        m.eval(work[0]["prompt"][:64])
        m.reset()
    res = replay(prefill, decode, work)
    res["load_s"] = load_s
    return res


def child_llama_cpp(args: argparse.Namespace, work: list[dict[str, list[int]]]) -> dict[str, Any]:
    t0 = time.perf_counter()
    from llama_cpp import Llama  # optional; not a dependency

    llm = Llama(
        model_path=args.model, n_ctx=args.n_ctx, n_threads=args.threads, n_batch=512, verbose=False
    )
    load_s = time.perf_counter() - t0

    def prefill(ids: list[int]) -> None:
        # keep the longest cached prefix, as llama-cpp-python's generate() does
        seen = list(llm.input_ids[: llm.n_tokens])
        common = 0
        for a, b in zip(seen, ids, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(ids) - 1)
        llm.n_tokens = common  # eval() drops the KV cache past n_tokens
        llm.eval(ids[common:])

    def decode(tok: int) -> None:
        llm.eval([tok])

    if not args.cold:
        llm.eval(work[0]["prompt"][:64])
        llm.reset()
    res = replay(prefill, decode, work)
    res["load_s"] = load_s
    return res


def run_child(engine: str, args: argparse.Namespace, work_file: str) -> dict[str, Any]:
    python = args.llama_cpp_python if engine == "llama.cpp" else sys.executable
    cmd = [python, str(Path(__file__).resolve()), "--child", engine, "--work", work_file]
    cmd += ["--model", args.model, "--threads", str(args.threads), "--n-ctx", str(args.n_ctx)]
    if args.cold:
        cmd.append("--cold")
    if args.prompt_cache_dir:
        cmd += ["--prompt-cache-dir", args.prompt_cache_dir]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{engine} child failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def llama_cpp_available(python: str) -> bool:
    try:
        r = subprocess.run([python, "-c", "import llama_cpp"], capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def line(name: str, r: dict[str, Any]) -> str:
    total = r["prefill_s"] + r["decode_s"]
    return (
        f"{name:<12} {total:8.2f} s = prefill {r['prefill_s']:7.2f} s"
        f" + decode {r['decode_s']:7.2f} s  ({r['prompt_tokens']} prompt, "
        f"{r['output_tokens']} output tokens; load {r['load_s']:.1f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model file (both engines load it)")
    p.add_argument("--cassette", type=Path, default=DEFAULT_CASSETTE)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--n-ctx", type=int, default=4096)
    p.add_argument("--cold", action="store_true", help="a fresh process per question")
    p.add_argument("--questions", type=int, default=2, help="with --cold: questions (processes)")
    p.add_argument(
        "--no-prompt-cache", action="store_true", help="with --cold: no persistent prompt cache"
    )
    p.add_argument("--prompt-cache-dir", help=argparse.SUPPRESS)
    p.add_argument("--no-llama-cpp", action="store_true", help="this engine only")
    p.add_argument(
        "--llama-cpp-python",
        default=os.environ.get("AGENT_LLAMA_CPP_PYTHON", sys.executable),
        help="a Python that can import llama_cpp (default: $AGENT_LLAMA_CPP_PYTHON, else this one)",
    )
    p.add_argument(
        "--max-output",
        type=int,
        default=None,
        metavar="N",
        help="feed at most N output tokens per generation (a shorter run; default: all)",
    )
    p.add_argument("--json", metavar="FILE", help="write the results here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        work = json.loads(Path(args.work).read_text())
        fn = child_agent if args.child == "agent" else child_llama_cpp
        print(json.dumps(fn(args, work)))
        return 0

    work = token_work(args.model, args.cassette, args.max_output)
    engines = ["agent"]
    if not args.no_llama_cpp:
        if llama_cpp_available(args.llama_cpp_python):
            engines.append("llama.cpp")
        else:
            print(f"llama_cpp not importable by {args.llama_cpp_python}; this engine only")
    print(
        f"{args.cassette.name}: {len(work)} generations, "
        f"{sum(len(g['prompt']) for g in work)} prompt + {sum(len(g['output']) for g in work)} "
        f"output tokens; {Path(args.model).name}, {args.threads} threads, "
        + ("a fresh process per question" if args.cold else "one warm process per engine")
    )
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work_file = str(Path(tmp) / "work.json")
        Path(work_file).write_text(json.dumps(work))
        if args.cold and not args.no_prompt_cache:
            args.prompt_cache_dir = str(Path(tmp) / "prompt-cache")  # empty at the start
        for q in range(args.questions if args.cold else 1):
            for engine in engines:  # interleaved: both engines see the same machine load
                r = run_child(engine, args, work_file)
                results.setdefault(engine, []).append(r)
                label = f"{engine}" + (f" q{q + 1}" if args.cold else "")
                print(line(label, r), flush=True)
    if "llama.cpp" in results:
        for q, (a, b) in enumerate(zip(results["agent"], results["llama.cpp"], strict=False)):
            ta, tb = a["prefill_s"] + a["decode_s"], b["prefill_s"] + b["decode_s"]
            what = f"question {q + 1}" if args.cold else "warm"
            print(
                f"{what}: this project / llama.cpp = {ta / tb:.2f} "
                f"(prefill {a['prefill_s'] / b['prefill_s']:.2f}, "
                f"decode {a['decode_s'] / b['decode_s']:.2f})"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"args": vars(args) | {"cassette": str(args.cassette)}, "results": results},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
