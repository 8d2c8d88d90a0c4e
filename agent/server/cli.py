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
        "Up to --parallel requests decode together, the rest wait in a bounded queue; tool calls "
        "and response_format are enforced by constrained decoding.",
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
        "--parallel",
        type=int,
        default=4,
        help="requests decoded together, each in its own KV slot (default 4; 1 = one at a time). "
        "KV memory is parallel x slot context",
    )
    p.add_argument(
        "--slot-ctx",
        type=int,
        default=None,
        help="context of each slot (default: the model's -c); smaller slots use less memory",
    )
    p.add_argument(
        "--prompt-chunk",
        type=int,
        default=None,
        metavar="N",
        help="most prompt tokens read per step (default 16): larger gives new requests their "
        "first token sooner when many arrive together",
    )
    p.add_argument(
        "--max-step-ms",
        type=float,
        default=None,
        metavar="MS",
        help="beside running streams a step reads only as many prompt tokens as keep it near MS "
        "milliseconds, or twice a step without them if that is longer (measured as it runs; "
        "default 100, so a stream keeps >= ~10 tokens/s while a long prompt is read; 0: always "
        "--prompt-chunk tokens)",
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
    if args.parallel < 1:
        raise AgentError(f"--parallel must be at least 1, got {args.parallel}")
    if args.slot_ctx is not None and args.slot_ctx < 16:
        raise AgentError(f"--slot-ctx must be at least 16, got {args.slot_ctx}")
    if args.prompt_chunk is not None and args.prompt_chunk < 1:
        raise AgentError(f"--prompt-chunk must be at least 1, got {args.prompt_chunk}")
    if args.max_step_ms is not None and not 0 <= args.max_step_ms <= 3_600_000:
        raise AgentError(f"--max-step-ms must be 0-3600000, got {args.max_step_ms}")
    model = open_model(args)
    if args.parallel > 1 and hasattr(model, "enable_batching"):
        slot_ctx = min(args.slot_ctx or model.n_ctx, model.n_ctx)
        step = {} if args.max_step_ms is None else {"step_seconds": args.max_step_ms / 1000 or None}
        model.enable_batching(args.parallel, n_ctx=slot_ctx, chunk=args.prompt_chunk, **step)
        kv = model.batcher.kv_bytes / 2**20
        print(
            f"{args.parallel} parallel slots of {slot_ctx} tokens: {kv:.0f} MB of KV cache at most",
            file=sys.stderr,
        )
    name = args.model_name or Path(args.model or args.script).name
    app = create_app(
        model,
        model_name=name,
        api_key=args.api_key,
        queue_size=args.queue_size,
        parallel=args.parallel,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(
            f"warning: serving on {args.host} without --api-key: anyone who can reach it can use "
            "it",
            file=sys.stderr,
        )
    print(f"serving {name} on http://{args.host}:{args.port}/v1", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
