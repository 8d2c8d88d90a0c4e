"""``agent serve``: the OpenAI-compatible API over one model."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    from agent.llm.cli import add_model_args

    p = sub.add_parser(
        "serve",
        help="serve an OpenAI-compatible API (chat completions with tools, completions)",
        description="Serve /v1/models, /v1/chat/completions and /v1/completions over one model. "
        "Requests run one at a time in arrival order; tool calls and response_format are enforced "
        "by constrained decoding.",
    )
    add_model_args(p)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; use 0.0.0.0 to expose it, with --api-key)",
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--api-key",
        default=os.environ.get("AGENT_API_KEY"),
        help="require 'Authorization: Bearer KEY' (default: $AGENT_API_KEY, else no key)",
    )
    p.add_argument(
        "--queue-size",
        type=int,
        default=16,
        help="requests allowed to wait for the engine; more get 503 (default 16)",
    )
    p.add_argument(
        "--model-name", default=None, help="model id reported by /v1/models (default: file name)"
    )
    ray = p.add_argument_group("Ray Serve")
    ray.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="serve as a Ray Serve deployment, on the cluster at ADDRESS or a new local one",
    )
    ray.add_argument("--replicas", type=int, default=1, help="engines behind Ray Serve (default 1)")
    ray.add_argument(
        "--cpus-per-replica", type=float, default=1.0, help="CPUs per replica (default 1)"
    )
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from agent.errors import AgentError
    from agent.llm.cli import open_model
    from agent.server.app import create_app

    if not 0 <= args.port <= 65535:
        raise AgentError(f"--port must be 0-65535, got {args.port}")
    if args.queue_size < 1:
        raise AgentError("--queue-size must be at least 1")
    if getattr(args, "ray", None) is not None:
        from agent.server.ray_serve import serve_command

        return serve_command(args)
    model = open_model(args)
    name = args.model_name or Path(args.model or args.script).name
    app = create_app(model, model_name=name, api_key=args.api_key, queue_size=args.queue_size)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(
            f"warning: serving on {args.host} without --api-key: anyone who can reach it can use "
            "it",
            file=sys.stderr,
        )
    print(f"serving {name} on http://{args.host}:{args.port}/v1", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
