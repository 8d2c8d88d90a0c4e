"""``agent call``: let the model choose one of the functions in a definitions file for a request."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agent.llm.cli import add_model_args, open_model


def register(sub: Any) -> None:
    p = sub.add_parser(
        "call",
        help="turn a request into a validated call of one of your functions",
        description="Prompt the model with the Airoboros function-calling format, parse its "
        "answer (JSON or YAML), validate the params against the functions' JSON Schemas, and "
        "print the call. Invalid answers are retried with the error shown to the model.",
        epilog="example: agent call -m model.gguf --functions examples/functions.yaml "
        "\"How many times is 'Python' in my notes?\"",
    )
    add_model_args(p, required=False)
    p.add_argument("input", help="the user's request")
    p.add_argument(
        "-f",
        "--functions",
        required=True,
        metavar="FILE",
        help="function definitions (YAML or JSON: OpenAI tools, name/description/"
        "parameters entries, or the model card's params shorthand)",
    )
    p.add_argument(
        "--format",
        choices=("json", "yaml"),
        default="json",
        help="the format the model is asked to answer in (default json)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (the call, or the error) for scripts",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="re-ask the model this many times when its answer is invalid (default 2)",
    )
    p.add_argument(
        "--temperature",
        "--temp",
        type=float,
        default=0.2,
        help="sampling temperature (default 0.2)",
    )
    p.add_argument("--seed", type=int, default=None, help="sampling seed")
    p.add_argument(
        "-n", "--max-tokens", type=int, default=512, help="most tokens per answer (default 512)"
    )
    p.add_argument(
        "--no-constrain",
        action="store_true",
        help="let the model write freely instead of masking, token by token, whatever "
        "would not parse or validate against the functions' schemas (the default)",
    )
    p.add_argument(
        "--print-prompt",
        action="store_true",
        help="print the prompt the model would get, and exit (no model needed)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=run_call)


def run_call(args: argparse.Namespace) -> int:
    from agent.errors import AgentError, FunctionCallError
    from agent.functions.registry import FunctionRegistry
    from agent.functions.selection import select_function

    registry = FunctionRegistry.from_file(args.functions)
    if args.print_prompt:
        print(registry.prompt(args.input, args.format))
        return 0
    if not (getattr(args, "model", None) or getattr(args, "script", None)):
        raise AgentError("a model is needed: pass -m MODEL (or --script FILE)")
    if args.retries < 0:
        raise AgentError("--retries must be 0 or more")
    model = open_model(args, quiet=args.quiet or args.json)

    def progress(n: int, answer: str, error: FunctionCallError | None) -> None:
        if error is not None and not args.quiet and n <= args.retries:
            print(f"attempt {n}: {error}; asking again", file=sys.stderr, flush=True)

    try:
        call = select_function(
            model,
            args.input,
            registry,
            format=args.format,
            retries=args.retries,
            temperature=args.temperature,
            seed=args.seed,
            constrained=not args.no_constrain,
            max_tokens=args.max_tokens,
            on_attempt=progress,
        )
    except FunctionCallError as exc:
        if not args.json:
            raise
        details = (
            exc.to_dict() if hasattr(exc, "to_dict") else {"kind": exc.kind, "message": exc.message}
        )
        print(json.dumps({"error": details}, ensure_ascii=False, indent=2))
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    **call.to_dict(),
                    "format": call.format,
                    "attempts": call.attempts,
                    "repairs": list(call.repairs),
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return 0
    print(_render(call.to_dict(), call.format))
    if not args.quiet and call.repairs:
        print(f"(repaired: {', '.join(call.repairs)})", file=sys.stderr)
    return 0


def _render(data: dict[str, Any], fmt: str) -> str:
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")
    return json.dumps(data, ensure_ascii=False, indent=2)
