"""Model-file subcommands: ``agent info MODEL`` and ``agent convert OLD.bin NEW.gguf``.

Heavy imports stay inside the handlers so that ``agent --help`` is fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agent.errors import AgentError
from agent.llm import llama2


def register_file_commands(sub: Any) -> None:
    p = sub.add_parser(
        "info",
        help="show what a model file holds",
        description="Show a GGML/GGUF model file's format, hyperparameters, file type, tensor "
        "types, vocab size and size, without loading the weights.",
    )
    p.add_argument("model", metavar="MODEL", help="GGUF or GGML (ggml/ggmf/ggjt) file")
    p.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")
    p.set_defaults(handler=run_info)

    p = sub.add_parser(
        "convert",
        help="convert a GGML v3 .bin model to GGUF",
        description="Convert a GGML-era model (ggjt v3, or older containers with f32/f16 tensors) "
        "to GGUF v3. Tensors are copied byte for byte; what GGML files do not store is set from "
        "the options below (Llama-2 defaults).",
    )
    p.add_argument("src", metavar="OLD", help="input GGML file, e.g. model.ggmlv3.q4_K_M.bin")
    p.add_argument("dst", metavar="NEW", help="output GGUF file")
    p.add_argument("--name", help="general.name (default: the input file's name)")
    p.add_argument(
        "--context-length",
        type=int,
        default=llama2.CONTEXT_LENGTH,
        help=f"training context length (default {llama2.CONTEXT_LENGTH})",
    )
    p.add_argument(
        "--eps",
        type=float,
        default=llama2.RMS_NORM_EPS,
        help=f"RMSNorm epsilon (default {llama2.RMS_NORM_EPS:g}, Llama-2)",
    )
    p.add_argument(
        "--n-gqa",
        "-gqa",
        dest="n_gqa",
        type=int,
        default=None,
        help="grouped-query factor (default: inferred from attention.wk's shape; 8 for 70B)",
    )
    p.add_argument(
        "--rope-freq-base",
        type=float,
        default=llama2.ROPE_FREQ_BASE,
        help=f"RoPE base (default {llama2.ROPE_FREQ_BASE:g})",
    )
    p.add_argument(
        "--rope-freq-scale",
        type=float,
        default=llama2.ROPE_FREQ_SCALE,
        help=f"RoPE linear scale (default {llama2.ROPE_FREQ_SCALE})",
    )
    p.add_argument("--force", action="store_true", help="overwrite NEW if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=run_convert)


def _plain(value: Any) -> Any:
    """Metadata values as JSON-friendly Python values."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def file_summary(path: str | Path) -> dict[str, Any]:
    """What ``agent info`` shows, as a dict. Hyperparameters are absent if the file lacks them."""
    from collections import Counter

    from agent.llm.formats.files import open_model_file
    from agent.llm.formats.hparam_checks import hparam_warnings
    from agent.llm.hparams import model_info

    mf = open_model_file(path)
    summary: dict[str, Any] = {
        "path": str(mf.path),
        "format": mf.format,
        "container": mf.format.split("-v")[0],
        "version": int(mf.format.split("-v")[1]) if "-v" in mf.format else 0,
        "file_size": mf.file_size,
        "n_tensors": len(mf.tensors),
        "tensor_types": dict(sorted(Counter(t.type_name for t in mf.tensors.values()).items())),
        "tensor_bytes": sum(t.nbytes for t in mf.tensors.values()),
        "vocab_size": len(mf.vocab),
        "special_tokens": {"bos": mf.vocab.bos_id, "eos": mf.vocab.eos_id, "unk": mf.vocab.unk_id},
    }
    summary["warnings"] = hparam_warnings(mf.metadata, ggml=summary["container"] != "gguf")
    try:
        info = model_info(mf)
    except (
        AgentError,
        ValueError,
        TypeError,
    ) as exc:  # e.g. a vocab-only file without llama.* keys
        summary["hparams_error"] = str(exc)
        # what load_model says too: it runs the same reader and model_info
        summary["load_error"] = str(exc)
    else:
        d = info.as_dict()
        for k in ("format", "tensor_types", "path", "file_size"):
            d.pop(k)
        summary["hparams"] = d
    # Small metadata values only: the vocab arrays would drown everything else.
    summary["metadata"] = {
        k: _plain(v)
        for k, v in mf.metadata.items()
        if not (hasattr(v, "__len__") and not isinstance(v, str) and len(v) > 16)
    }
    return summary


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} B" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"file          {s['path']}",
        f"size          {_size(s['file_size'])} ({s['file_size']:,} bytes)",
        f"format        {s['container']} v{s['version']}"
        + (" (unversioned)" if not s["version"] else ""),
    ]
    hp = s.get("hparams")
    if hp:
        lines += [
            f"name          {hp['name']}",
            f"file type     {hp['file_type']}",
            f"n_vocab       {hp['n_vocab']}",
            f"n_ctx_train   {hp['n_ctx_train']}",
            f"n_embd        {hp['n_embd']}",
            f"n_layer       {hp['n_layer']}",
            f"n_head        {hp['n_head']} (kv {hp['n_head_kv']}, head dim "
            f"{hp['n_embd'] // hp['n_head']})",
            f"n_ff          {hp['n_ff']}",
            f"rms_norm_eps  {hp['rms_norm_eps']:g}",
            f"rope          base {hp['rope_freq_base']:g}, scale {hp['rope_freq_scale']:g}",
        ]
        if s["container"] != "gguf":
            lines.append(
                "              (GGML files store no n_head_kv, n_ff, eps, context or RoPE "
                "settings: n_head_kv and n_ff come from tensor shapes, the rest are Llama-2 "
                "defaults)"
            )
    else:
        lines.append(f"hparams       unavailable: {s.get('hparams_error', '?')}")
    sp = s["special_tokens"]
    lines.append(
        f"vocab         {s['vocab_size']} tokens (bos {sp['bos']}, eos {sp['eos']}, unk "
        f"{sp['unk']})"
    )
    types = ", ".join(f"{k} {v}" for k, v in s["tensor_types"].items()) or "none (vocab only)"
    lines.append(f"tensors       {s['n_tensors']}: {types}; {_size(s['tensor_bytes'])} of data")
    lines += [f"warning       {w}" for w in s.get("warnings", [])]
    if s.get("load_error"):
        lines.append(f"will not load: {s['load_error']}")
    return "\n".join(lines)


def run_info(args: argparse.Namespace) -> int:
    summary = file_summary(args.model)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(format_summary(summary))
    # A model file load_model refuses is an error; a vocabulary-only file is only described.
    return 1 if summary.get("load_error") and summary["n_tensors"] else 0


def run_convert(args: argparse.Namespace) -> int:
    from agent.llm.formats.convert import convert_ggml_to_gguf, stderr_progress

    dst = Path(args.dst)
    if dst.exists() and not args.force:
        raise AgentError(f"{dst} exists; pass --force to overwrite it")
    if (
        args.context_length <= 0
        or args.eps <= 0
        or args.rope_freq_base <= 0
        or args.rope_freq_scale <= 0
    ):
        raise AgentError(
            "--context-length, --eps, --rope-freq-base and --rope-freq-scale must be positive"
        )
    convert_ggml_to_gguf(
        args.src,
        dst,
        name=args.name,
        n_gqa=args.n_gqa,
        n_ctx=args.context_length,
        rms_norm_eps=args.eps,
        rope_freq_base=args.rope_freq_base,
        rope_freq_scale=args.rope_freq_scale,
        progress=None if args.quiet else stderr_progress(f"converting {args.src}"),
    )
    if not args.quiet:
        print(f"wrote {dst}", file=sys.stderr)
    return 0
