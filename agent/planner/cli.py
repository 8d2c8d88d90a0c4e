"""Planner subcommands: ``agent ask``, ``agent plan``, ``agent run`` and ``agent replay``.

Progress (plan steps as they are written, each tool call's start and finish with timings) goes to
stderr; the answer and its sources go to stdout, or the whole run as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from agent.errors import AgentError, PlanError
from agent.llm.cli import add_model_args, open_model

_CONSTRAIN_HELP = (
    "generate the plan freely. By default decoding is constrained by a grammar, so "
    "the plan always parses: tool names from the registry, references to earlier "
    "evidence only, a closing Answer"
)


# -- shared options --------------------------------------------------------------------------------


def _add_tool_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tools")
    g.add_argument(
        "--tool",
        action="append",
        default=[],
        metavar="MODULE:CALLABLE",
        help="add a tool (a callable of one string, named by its name/__name__); repeatable",
    )
    g.add_argument(
        "--no-default-tools",
        action="store_true",
        help="do not add DuckDuckGo, TextScraper, HyperlinkExtractor, KnowledgeModel",
    )
    g.add_argument(
        "--allow-private",
        action="store_true",
        help="let TextScraper read private/loopback addresses (trusted local use only)",
    )


def _add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("execution")
    g.add_argument("--max-workers", type=int, default=8, help="steps run at once (default 8)")
    g.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="model calls of parallel steps (KnowledgeModel) decoded together in N KV slots "
        "(default 1: they take turns; each slot can hold up to -c tokens of KV cache)",
    )
    g.add_argument(
        "--step-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up on a step after this long (default: no limit); for tools "
        "that use the model, waiting for the plan to be written counts too",
    )
    g.add_argument(
        "--max-evidence-chars",
        type=int,
        default=24_000,
        metavar="N",
        help="cap each evidence value pasted into an input (default 24000)",
    )


def _add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def _add_generation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("plan generation")
    g.add_argument(
        "--temperature", type=float, default=0.0, help="sampling temperature (default 0)"
    )
    g.add_argument("--seed", type=int, default=None, help="sampling seed")
    g.add_argument("--max-tokens", type=int, default=768, help="plan length limit in tokens")
    g.add_argument("--no-constrain", action="store_true", help=_CONSTRAIN_HELP)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "ask",
        help="answer a question: plan with the model, run the tools",
        description="Plan a research question with the model (reWOO), run the "
        "plan's tool calls in parallel as soon as each is written, and print the "
        "answer with its sources.",
    )
    p.add_argument("question")
    add_model_args(p)
    _add_tool_args(p)
    _add_generation_args(p)
    _add_run_args(p)
    _add_output_args(p)
    p.add_argument(
        "--record",
        metavar="FILE",
        help="record the run (model and tool calls) to a JSON cassette for replay",
    )
    p.set_defaults(handler=cmd_ask)

    p = sub.add_parser(
        "plan",
        help="write a plan for a question and show its graph",
        description="Ask the model for a reWOO plan and print it with its "
        "dependency graph (steps in the same layer can run together).",
    )
    p.add_argument("question")
    add_model_args(p)
    _add_tool_args(p)
    _add_generation_args(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(handler=cmd_plan)

    p = sub.add_parser(
        "run",
        help="execute a hand-written plan file",
        description="Parse a reWOO plan file (or - for stdin) and execute it. A "
        "model is only needed for KnowledgeModel steps.",
    )
    p.add_argument("planfile")
    add_model_args(p, required=False)
    _add_tool_args(p)
    _add_run_args(p)
    _add_output_args(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser(
        "replay",
        help="replay a recorded run (no model, no network)",
        description="Replay a cassette recorded with 'agent ask --record': the "
        "recorded plan and tool outputs are fed back through the parser and "
        "executor; any divergence is an error naming the step.",
    )
    p.add_argument("cassette")
    _add_output_args(p)
    p.set_defaults(handler=cmd_replay)


# -- progress and output --------------------------------------------------------------------------


class Progress:
    """Live step progress on a stream (stderr)."""

    def __init__(self, out: TextIO):
        self.out = out

    def __call__(self, event: Any) -> None:
        s, r = event.step, event.result
        t = f"[{event.time:6.2f}s]"
        if event.kind == "planned":
            line = f"{t} planned  {s.id} = {s.tool}[{_one_line(s.input, 70)}]"
        elif event.kind == "start":
            line = f"{t} start    {s.id} {s.tool}[{_one_line(r.input, 60)}]"
        elif r.status == "ok":
            line = (
                f"{t} done     {s.id} {s.tool} in {r.elapsed or 0:.2f} s "
                f"({len(r.output or '')} chars)"
            )
        else:
            line = f"{t} {r.status:<8} {s.id} {s.tool}: {_one_line(r.error or '', 100)}"
        print(line, file=self.out, flush=True)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _print_result(result: Any, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return 0 if result.ok else 1
    if not result.ok:
        print(f"no answer: {result.error}", file=sys.stderr)
        return 1
    print(result.answer)
    missing = [u for u in result.sources if u not in (result.answer or "")]
    if missing:
        print("\nSources:")
        for url in missing:
            print(f"- {url}")
    return 0


# -- tools -----------------------------------------------------------------------------------------


def build_tools(args: argparse.Namespace, model: Any) -> Any:
    from agent.tools.registry import ToolRegistry, load_tool_spec

    registry = ToolRegistry()
    if not args.no_default_tools:
        try:
            from agent.tools.defaults import default_tools
        except ImportError as exc:
            raise AgentError(
                f"the built-in tools are not available ({exc}); use --tool and --no-default-tools"
            ) from exc
        registry = default_tools(model, allow_private=args.allow_private)
    for spec in args.tool:
        registry.add(load_tool_spec(spec))
    if not len(registry):
        raise AgentError("no tools: drop --no-default-tools or add --tool module:callable")
    return registry


def _constrained(args: argparse.Namespace) -> bool:
    return not args.no_constrain


def _print_plan_error(exc: PlanError, text: str) -> None:
    print("the model's plan could not be used:", file=sys.stderr)
    for p in exc.problems:
        print(f"  {p}", file=sys.stderr)
    if text:
        print("plan text:", file=sys.stderr)
        for i, line in enumerate(text.splitlines(), 1):
            print(f"  {i:3}| {line}", file=sys.stderr)


def _batch(model: Any, args: argparse.Namespace) -> None:
    """--parallel: the engine's batch scheduler for the plan's concurrent model calls."""
    if args.parallel < 1:
        raise AgentError(f"--parallel must be at least 1, got {args.parallel}")
    if args.parallel > 1 and hasattr(model, "enable_batching"):
        model.enable_batching(args.parallel)


# -- commands --------------------------------------------------------------------------------------


def cmd_ask(args: argparse.Namespace) -> int:
    from agent.planner.ask import ask
    from agent.planner.cassette import RecordingModel, make_cassette, save_cassette

    quiet = args.quiet or args.json
    model = open_model(args, quiet=quiet)
    _batch(model, args)
    if args.record:
        model = RecordingModel(model)
    tools = build_tools(args, model)
    written: list[str] = []
    try:
        result = ask(
            model,
            args.question,
            tools,
            constrained=_constrained(args),
            temperature=args.temperature,
            seed=args.seed,
            max_tokens=args.max_tokens,
            max_workers=args.max_workers,
            step_timeout=args.step_timeout,
            max_evidence_chars=args.max_evidence_chars,
            on_event=None if quiet else Progress(sys.stderr),
            on_text=written.append,
        )
    except PlanError as exc:
        _print_plan_error(exc, "".join(written))
        return 1
    if args.record:
        cassette = make_cassette(
            result,
            model=model,
            tools=tools,
            settings={
                "max_evidence_chars": args.max_evidence_chars,
                "temperature": args.temperature,
                "seed": args.seed,
            },
            note="recorded with 'agent ask --record'",
        )
        save_cassette(cassette, args.record)
        if not quiet:
            print(f"recorded to {args.record}", file=sys.stderr)
    return _print_result(result, args)


def cmd_plan(args: argparse.Namespace) -> int:
    from agent.planner.parser import parse_plan
    from agent.planner.prompt import generate_plan_text

    model = open_model(args, quiet=args.json)
    tools = build_tools(args, model)
    text = str(
        generate_plan_text(
            model,
            args.question,
            tools,
            temperature=args.temperature,
            seed=args.seed,
            constrained=_constrained(args),
            max_tokens=args.max_tokens,
        )
    )
    try:
        plan = parse_plan(text, tools)
    except PlanError as exc:
        if args.json:
            print(
                json.dumps(
                    {"text": text, "problems": [vars(p) for p in exc.problems]},
                    indent=2,
                    ensure_ascii=False,
                )
            )
        else:
            _print_plan_error(exc, text)
        return 1
    if args.json:
        print(json.dumps({"text": text, **plan.to_dict()}, indent=2, ensure_ascii=False))
        return 0
    print(text.strip())
    print("\nGraph (steps in one layer run together):")
    for i, layer in enumerate(plan.layers(), 1):
        for step in layer:
            deps = ", ".join(step.refs) or "-"
            print(f"  layer {i}: {step.id} {step.tool}  needs: {deps}")
    print(f"  answer: {plan.answer}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from agent.planner.executor import execute
    from agent.planner.parser import parse_plan

    text = read_plan_file(args.planfile)
    model = open_model(args, quiet=args.quiet or args.json) if (args.model or args.script) else None
    _batch(model, args)
    tools = build_tools(args, model)
    try:
        plan = parse_plan(text, tools)
    except PlanError as exc:  # a hand-written plan: say whose it is, and what PlanError says
        print(f"{_plan_source(args.planfile)} could not be used: {exc}", file=sys.stderr)
        return 1
    quiet = args.quiet or args.json
    result = execute(
        plan,
        tools,
        max_workers=args.max_workers,
        step_timeout=args.step_timeout,
        max_evidence_chars=args.max_evidence_chars,
        on_event=None if quiet else Progress(sys.stderr),
    )
    return _print_result(result, args)


def _plan_source(name: str) -> str:
    return "the plan on stdin" if name == "-" else f"the plan in {name}"


def read_plan_file(name: str) -> str:
    """A plan file's text ('-': stdin). Unreadable, binary or non-UTF-8 input is a one-line
    AgentError naming the file and the offset, not a traceback."""
    try:
        if name == "-":
            stream = getattr(sys.stdin, "buffer", None)  # a text-only stdin has no bytes to check
            data = stream.read() if stream is not None else sys.stdin.read().encode("utf-8")
        else:
            data = Path(name).read_bytes()
    except OSError as exc:
        raise AgentError(f"cannot read plan file {name}: {exc.strerror or exc}") from exc
    except UnicodeError as exc:  # a text stdin that could not decode its own bytes
        raise AgentError(f"{_plan_source(name)} is not UTF-8 text: {exc}") from exc
    nul = data.find(b"\0")
    if nul >= 0:
        raise AgentError(
            f"{_plan_source(name)} is binary (a NUL byte at offset {nul}); a plan is a text file"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AgentError(
            f"{_plan_source(name)} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save it as UTF-8"
        ) from None


def cmd_replay(args: argparse.Namespace) -> int:
    from agent.planner.cassette import load_cassette, replay

    data = load_cassette(args.cassette)
    quiet = args.quiet or args.json
    if not quiet:
        question = (data.get("run") or {}).get("question")
        print(f"replaying {args.cassette}: {question}", file=sys.stderr)
        if data.get("note"):
            print(f"note: {data['note']}", file=sys.stderr)
    result = replay(data, on_event=None if quiet else Progress(sys.stderr))
    return _print_result(result, args)
