"""Engine subcommands (generate, chat, info, convert) and the shared model options.

``add_model_args`` / ``open_model`` are used by every subcommand that needs a model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from agent.errors import AgentError


def add_model_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The model options, with llama.cpp's familiar spellings."""
    g = p.add_argument_group("model")
    src = g.add_mutually_exclusive_group(required=required)
    src.add_argument("-m", "--model", metavar="PATH", help="GGML v3 .bin or GGUF model file")
    src.add_argument("--script", metavar="FILE",
                     help="use a scripted generator instead of a model: a JSON list of outputs, "
                     "returned in order (for demos and tests)")
    g.add_argument("-c", "--n-ctx", "--ctx-size", dest="n_ctx", type=int, default=4096,
                   help="context window in tokens (default 4096)")
    g.add_argument("-t", "--threads", type=int, default=None,
                   help="threads for the engine (default: number of cores)")
    g.add_argument("--rope-freq-base", type=float, default=None, help="RoPE base (default 10000)")
    g.add_argument("--rope-freq-scale", type=float, default=None,
                   help="RoPE scale, e.g. 0.5 for doubled context (default 1.0)")
    g.add_argument("-gqa", "--gqa", dest="n_gqa", type=int, default=None,
                   help="grouped-query factor override (GGML files; inferred from shapes)")
    g.add_argument("-eps", "--rms-norm-eps", dest="rms_norm_eps", type=float, default=None,
                   help="RMSNorm epsilon override (GGML files; default 1e-5 for Llama-2)")


def open_model(args: argparse.Namespace, *, quiet: bool = False) -> Any:
    """Load the model named by ``add_model_args`` options, with progress on stderr."""
    if getattr(args, "script", None):
        from agent.llm.scripted import ScriptedModel

        path = Path(args.script)
        try:
            outputs = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AgentError(f"cannot read script {path}: {exc}") from exc
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            raise AgentError(f"script {path} must be a JSON list of strings (one per model call)")
        return ScriptedModel(outputs, name=path.name)
    from agent.llm import load_model

    if not quiet:
        print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    model = load_model(args.model, n_ctx=args.n_ctx, threads=args.threads, n_gqa=args.n_gqa,
                       rms_norm_eps=args.rms_norm_eps, rope_freq_base=args.rope_freq_base,
                       rope_freq_scale=args.rope_freq_scale)
    if not quiet:
        print(f"loaded in {time.perf_counter() - t0:.2f} s", file=sys.stderr, flush=True)
    return model


def register(sub: Any) -> None:
    """Engine subcommands are added as the engine lands."""
