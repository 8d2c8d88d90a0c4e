"""The ``agent`` command: one dispatcher, subcommands registered by each package's ``cli`` module.

Each module exposes ``register(subparsers)`` and keeps heavy imports inside its handlers, so
``agent --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from agent.errors import AgentError

COMMAND_MODULES = (
    "agent.planner.cli",  # ask, plan, run, replay
    "agent.functions.cli",  # call
    "agent.llm.cli",  # generate, chat, info, convert
    "agent.server.cli",  # serve
    "agent.batch.cli",  # batch
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent",
        description="Run reWOO plans and function calls on a local quantized Llama-2 model "
        "(GGML v3 .bin or GGUF).",
        epilog="Run 'agent COMMAND --help' for the options of one command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # a real missing dependency: say so
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except AgentError as exc:
        print(f"agent {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"agent {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
