"""Questions per minute of ``agent batch``: 1 worker, 2 workers and 2 Ray actors, in one run.

Two engines:
- ``--engine tiny`` (default): a real engine on a random-weight model of the ``tiny`` shape
  (``agent.llm.formats.fixtures``, written to bench/.cache/), plans generated under the plan
  grammar, with the two small deterministic tools of ``tests/planner/cli_tools.py``;
  ``--model PATH`` runs the same on a model of yours.
- ``--engine scripted``: the test suite's scripted model over the fixture web of ``examples/``
  on 127.0.0.1 (no engine compute: what is measured is the batch machinery itself).

Each configuration starts its engines first (timed apart: model loading and Ray's start), then
answers the same questions into a fresh output file. Ray's overhead per question is the
difference of the 2-actor and 2-process run times over the number of questions.

    .venv/bin/python bench/batch.py                       # tiny engine, 20 questions
    .venv/bin/python bench/batch.py --engine scripted --questions 40
    .venv/bin/python bench/batch.py --model m.gguf --max-tokens 512 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.batch.driver import make_backend, run_batch  # noqa: E402
from agent.batch.runner import EngineSpec  # noqa: E402
from tests.batch import fixture  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
TOOLS = ("tests.planner.cli_tools:Search", "tests.planner.cli_tools:Reader")


def tiny_model() -> Path:
    path = CACHE / "batch-tiny-q4_0.gguf"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        module = "agent.llm.formats.fixtures"
        cmd = [sys.executable, "-m", module, "--shape", "tiny", "--quiet", str(path)]
        subprocess.run(cmd, check=True)
    return path


def make_spec(args: argparse.Namespace, threads: int, web: str | None) -> EngineSpec:
    if args.engine == "scripted":
        return EngineSpec(
            model_factory="tests.batch.fixture:scripted_model",
            tools_factory="tests.batch.fixture:fixture_tools",
            search_interval=0.0,
            env={"BATCH_FIXTURE_WEB": web or ""},
            record=not args.no_record,
        )
    return EngineSpec(
        model=str(args.model or tiny_model()),
        threads=threads,
        tools=TOOLS,
        no_default_tools=True,
        max_tokens=args.max_tokens,
        search_interval=0.0,
        record=not args.no_record,
    )


def run_config(args, label, questions, workdir, *, workers, ray, web) -> dict:
    threads = args.threads or max(1, (os.cpu_count() or 1) // workers)
    spec = make_spec(args, threads, web)
    init = {"num_cpus": os.cpu_count() or 1} if ray else None
    t0 = time.perf_counter()
    backend = make_backend(spec, workers=workers, ray=ray, cpus_per_actor=threads, ray_init=init)
    started = time.perf_counter() - t0
    out = workdir / f"{label}.jsonl"
    try:
        t1 = time.perf_counter()
        summary = run_batch(questions, out, spec, backend=backend, progress=None)
        run = time.perf_counter() - t1
    finally:
        backend.close()
    answers = {}
    for line in out.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        answers[rec["id"]] = rec["answer"]
    return {
        "config": label,
        "workers": workers,
        "ray": ray,
        "threads_per_engine": threads,
        "start_s": round(started, 2),
        "run_s": round(run, 2),
        "q_per_min": round(summary.done / run * 60, 1),
        "ok": summary.ok,
        "errors": summary.errors,
        "answers": answers,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--engine", choices=("tiny", "scripted"), default="tiny")
    p.add_argument("--model", help="a model file for the real engine (default: tiny fixture)")
    p.add_argument("--questions", type=int, default=20)
    p.add_argument("--max-tokens", type=int, default=256, help="plan length limit (real engine)")
    p.add_argument("--no-record", action="store_true", help="no cassette in each record")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="engine threads (default: cores / engines; 1 avoids the fork-join collapse of a "
        "2-thread engine on a busy machine)",
    )
    p.add_argument("--repeat", type=int, default=1, help="rounds over the configurations")
    p.add_argument("--skip-ray", action="store_true")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)

    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    server = fixture.serve_fixture_web() if args.engine == "scripted" else None
    web = f"http://127.0.0.1:{server.server_address[1]}" if server else None
    configs = [("pool1", 1, False), ("pool2", 2, False)]
    ray_init_s = None
    if not args.skip_ray:
        configs.append(("ray2", 2, True))
        import ray

        t0 = time.perf_counter()  # once: the actors' start is timed per round
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
        ray_init_s = time.perf_counter() - t0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        questions = workdir / "questions.jsonl"
        questions.write_text(
            "".join(json.dumps(q) + "\n" for q in fixture.questions(args.questions)),
            encoding="utf-8",
        )
        for round_ in range(args.repeat):  # interleaved, so a noisy minute hits every config
            for label, workers, ray_ in configs:
                print(f"round {round_ + 1}: {label} ...", file=sys.stderr, flush=True)
                tag = f"{label}-{round_}"
                row = run_config(args, tag, questions, workdir, workers=workers, ray=ray_, web=web)
                rows.append({**row, "config": label, "round": round_ + 1})
    if server:
        server.shutdown()
    report(args, rows, ray_init_s)
    return 0


def report(args: argparse.Namespace, rows: list[dict], ray_init_s: float | None) -> None:
    same = all(r["answers"] == rows[0]["answers"] for r in rows)
    print(
        f"\nengine: {args.model or args.engine}, {args.questions} questions x {args.repeat} "
        f"round(s), {os.cpu_count()} cores; same answers in every run: {same}"
    )
    print(
        f"{'config':8} {'round':>5} {'thr':>4} {'start s':>8} {'run s':>7} {'q/min':>7} {'err':>4}"
    )
    for r in rows:
        print(
            f"{r['config']:8} {r['round']:5} {r['threads_per_engine']:4} {r['start_s']:8.2f} "
            f"{r['run_s']:7.2f} {r['q_per_min']:7.1f} {r['errors']:4}"
        )
    med = {
        c: statistics.median(r["run_s"] for r in rows if r["config"] == c)
        for c in dict.fromkeys(r["config"] for r in rows)
    }
    summary = {c: round(args.questions / t * 60, 1) for c, t in med.items()}
    print("median q/min: " + ", ".join(f"{c} {q}" for c, q in summary.items()))
    if "ray2" in med:
        per_q = (med["ray2"] - med["pool2"]) / args.questions
        print(
            f"Ray overhead per question vs 2 local processes (medians): {per_q * 1000:+.0f} ms; "
            f"ray.init {ray_init_s:.1f} s once"
        )
    if args.json:
        for r in rows:
            r.pop("answers")
        data = {
            "engine": args.model or args.engine,
            "questions": args.questions,
            "rows": rows,
            "same_answers": same,
            "median_q_per_min": summary,
            "ray_init_s": ray_init_s,
        }
        Path(args.json).write_text(json.dumps(data, indent=2), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
