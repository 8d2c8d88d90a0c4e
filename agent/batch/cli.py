"""``agent batch QUESTIONS -o ANSWERS.jsonl``: many questions, many engines, nothing lost."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.errors import AgentError

DESCRIPTION = """\
Answer every question of QUESTIONS (JSON Lines {"id": ..., "question": ...}, other fields carried
through; or a text file of one question a line, ids = line numbers) with 'agent ask', on N engines
at once, appending one JSON line per question to the output as it finishes. Re-running the same
command skips the ids already in the output, so an interrupted batch resumes where it stopped.
"""


def register(sub: Any) -> None:
    from agent.llm.cli import add_model_args
    from agent.planner.cli import _add_generation_args, _add_run_args, _add_tool_args

    p = sub.add_parser(
        "batch",
        help="answer a file of questions on a worker pool or a Ray cluster (resumable)",
        description=DESCRIPTION,
    )
    p.add_argument("questions", help="questions file (.jsonl, or text: one question a line)")
    p.add_argument("-o", "--output", required=True, help="answers file (JSON Lines, appended)")
    p.add_argument(
        "--format", choices=("jsonl", "text"), default=None, help="input format (default: guess)"
    )
    add_model_args(p, required=False)
    p.add_argument(
        "--model-factory",
        metavar="MODULE:CALLABLE",
        help="build each engine by calling this (no arguments) instead of -m/--script",
    )
    _add_tool_args(p)
    p.add_argument(
        "--tools-factory",
        metavar="MODULE:CALLABLE",
        help="build each engine's tools by calling this with the model (replaces the defaults)",
    )
    p.add_argument(
        "--search-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="least time between two web searches across all workers and nodes (default 1)",
    )
    _add_generation_args(p)
    _add_run_args(p)
    g = p.add_argument_group("batch")
    g.add_argument("-w", "--workers", type=int, default=1, help="engines at once (default 1)")
    g.add_argument(
        "--retries",
        type=int,
        default=1,
        help="tries again a question that failed or whose worker died (default 1)",
    )
    g.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run the engines as Ray actors: on the cluster at ADDRESS (e.g. 10.0.0.5:6379 or "
        "auto), or on a new local one without an address",
    )
    g.add_argument(
        "--cpus-per-actor",
        type=float,
        default=1.0,
        help="CPUs Ray reserves for each engine actor (default 1; match -t)",
    )
    g.add_argument(
        "--record-dir",
        metavar="DIR",
        help="write each question's cassette to DIR and put its path in the record",
    )
    g.add_argument(
        "--no-record", action="store_true", help="leave the run's recording out of each record"
    )
    g.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set an environment variable in every worker and Ray actor (e.g. "
        "AGENT_KERNELS=c, HTTPS_PROXY=...); repeatable",
    )
    g.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=cmd_batch)


def spec_from_args(args: argparse.Namespace) -> Any:
    from agent.batch.runner import MODEL_OPTIONS, EngineSpec

    sources = [s for s in (args.model, args.script, args.model_factory) if s]
    if len(sources) != 1:
        raise AgentError("give exactly one of -m/--model, --script or --model-factory")
    return EngineSpec(
        **{k: getattr(args, k) for k in MODEL_OPTIONS},
        model_factory=args.model_factory,
        tools=tuple(args.tool),
        no_default_tools=args.no_default_tools,
        allow_private=args.allow_private,
        tools_factory=args.tools_factory,
        search_interval=args.search_interval,
        temperature=args.temperature,
        seed=args.seed,
        max_tokens=args.max_tokens,
        constrained=not args.no_constrain,
        max_workers=args.max_workers,
        step_timeout=args.step_timeout,
        max_evidence_chars=args.max_evidence_chars,
        record=not args.no_record,
        record_dir=args.record_dir,
        env=_parse_env(args.worker_env),
    )


def _parse_env(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or "\0" in item:
            raise AgentError(f"--worker-env {item!r} must look like KEY=VALUE")
        env[key.strip()] = value
    return env


def cmd_batch(args: argparse.Namespace) -> int:
    from agent.batch.driver import run_batch

    if args.workers < 1:
        raise AgentError(f"--workers must be at least 1, got {args.workers}")
    if args.retries < 0:
        raise AgentError(f"--retries must be 0 or more, got {args.retries}")
    if args.ray is not None:
        from agent.batch.ray_backend import import_ray

        import_ray()  # says how to install Ray before any work starts
    spec = spec_from_args(args)
    summary = run_batch(
        args.questions,
        args.output,
        spec,
        workers=args.workers,
        retries=args.retries,
        ray=args.ray is not None,
        ray_address=args.ray or None,
        cpus_per_actor=args.cpus_per_actor,
        input_format=args.format,
        progress=None if args.quiet else sys.stderr,
    )
    if not args.quiet:
        print(
            f"{summary.ok} ok, {summary.errors} error(s), {summary.skipped} already done, "
            f"{len(summary.problems)} bad input line(s); answers in {args.output}",
            file=sys.stderr,
        )
    return 0 if not summary.errors and not summary.problems else 1
