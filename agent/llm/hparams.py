"""Model hyperparameters (``m.info``): stored values, what shapes imply, defaults and overrides."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.errors import ModelFormatError
from agent.llm.formats import gguf_keys as K
from agent.llm.formats.ggml_types import FILE_TYPES
from agent.llm.formats.hparam_checks import EPS_WHY, ROPE_BASE_WHY
from agent.llm.formats.modelfile import ModelFile
from agent.llm.llama2 import CONTEXT_LENGTH, RMS_NORM_EPS, ROPE_FREQ_BASE, ROPE_FREQ_SCALE


@dataclass
class ModelInfo:
    format: str
    n_vocab: int
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    rms_norm_eps: float
    rope_freq_base: float
    rope_freq_scale: float
    file_type: str
    tensor_types: dict[str, int] = field(default_factory=dict)
    name: str = ""
    path: str = ""
    file_size: int = 0

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_info(
    mf: ModelFile,
    *,
    n_gqa: int | None = None,
    rms_norm_eps: float | None = None,
    rope_freq_base: float | None = None,
    rope_freq_scale: float | None = None,
    weights: bool = True,
) -> ModelInfo:
    """``weights=False`` (a vocab-only load) skips what only matters to the tensors."""
    md = mf.metadata
    arch = md.get(K.GENERAL_ARCHITECTURE, "llama")
    if arch != "llama":
        raise ModelFormatError(
            f"{mf.path}: architecture {arch!r} is not supported; this engine runs Llama models"
        )

    def key(name: str, default: Any = None) -> Any:
        value = md.get(name, default)
        if (
            value is None
            and name == K.LLAMA_FEED_FORWARD_LENGTH
            and not mf.format.startswith("gguf")
        ):
            raise ModelFormatError(  # GGML files give n_ff through a tensor's shape only
                f"{mf.path}: no layers.0.feed_forward.w1.weight tensor to take n_ff from: the "
                f"file ends at offset {mf.file_size} after {len(mf.tensors)} tensors; it is "
                "truncated, or holds a vocabulary only"
            )
        if value is None:
            raise ModelFormatError(
                f"{mf.path}: metadata key '{name}' is missing; is this a Llama model file?"
            )
        return value

    n_embd = int(key(K.LLAMA_EMBEDDING_LENGTH))
    n_head = int(key(K.LLAMA_ATTENTION_HEAD_COUNT))
    n_head_kv = int(key(K.LLAMA_ATTENTION_HEAD_COUNT_KV, n_head))
    if n_gqa:
        if n_gqa < 0 or n_head % n_gqa:
            raise ModelFormatError(
                f"{mf.path}: the override n_gqa={n_gqa} does not divide the {n_head} heads"
            )
        n_head_kv = n_head // n_gqa
        wk = mf.tensors.get("blk.0.attn_k.weight") if weights else None
        if wk is not None and n_head > 0 and wk.shape[0] != n_embd // n_head * n_head_kv:
            raise ModelFormatError(  # the shape, not the override, says how many KV heads
                f"{mf.path}: the override n_gqa={n_gqa} means {n_head_kv} KV heads, but "
                f"attn_k's shape {tuple(wk.shape)} holds {wk.shape[0] // (n_embd // n_head)} of "
                f"size {n_embd // n_head}; leave n_gqa out"
            )
    if n_head <= 0 or n_embd % n_head or n_head_kv <= 0 or n_head % n_head_kv:
        raise ModelFormatError(
            f"{mf.path}: inconsistent heads (n_embd {n_embd}, n_head {n_head}, n_head_kv "
            f"{n_head_kv})"
        )
    scale = rope_freq_scale
    if scale is None:
        factor = md.get(K.LLAMA_ROPE_SCALING_FACTOR) or md.get(K.LLAMA_ROPE_SCALE_LINEAR)
        scale = 1.0 / float(factor) if factor else ROPE_FREQ_SCALE
    ftype = md.get(K.GENERAL_FILE_TYPE)
    info = ModelInfo(
        format=mf.format,
        n_vocab=int(md.get(K.LLAMA_VOCAB_SIZE, len(mf.vocab))),
        n_ctx_train=int(md.get(K.LLAMA_CONTEXT_LENGTH, CONTEXT_LENGTH)),
        n_embd=n_embd,
        n_layer=int(key(K.LLAMA_BLOCK_COUNT)),
        n_head=n_head,
        n_head_kv=n_head_kv,
        n_ff=int(key(K.LLAMA_FEED_FORWARD_LENGTH)),
        rms_norm_eps=float(
            rms_norm_eps
            if rms_norm_eps is not None
            else md.get(K.LLAMA_ATTENTION_LAYER_NORM_RMS_EPSILON, RMS_NORM_EPS)
        ),
        rope_freq_base=float(
            rope_freq_base
            if rope_freq_base is not None
            else md.get(K.LLAMA_ROPE_FREQ_BASE, ROPE_FREQ_BASE)
        ),
        rope_freq_scale=float(scale),
        file_type=FILE_TYPES.get(int(ftype), f"type {ftype}") if ftype is not None else "unknown",
        tensor_types=dict(sorted(Counter(t.type_name for t in mf.tensors.values()).items())),
        name=str(md.get(K.GENERAL_NAME, mf.path.stem)),
        path=str(mf.path),
        file_size=mf.file_size,
    )
    # The file's values passed the readers' checks; overrides are checked by the same rules.
    for name, value, override, why in (
        ("rms_norm_eps", info.rms_norm_eps, rms_norm_eps, EPS_WHY),
        ("rope_freq_base", info.rope_freq_base, rope_freq_base, ROPE_BASE_WHY),
        ("rope_freq_scale", info.rope_freq_scale, rope_freq_scale, "positions are scaled by it"),
    ):
        if not (math.isfinite(value) and value > 0):
            source = "the override" if override is not None else "the file's value for"
            raise ModelFormatError(
                f"{mf.path}: {source} {name} is {value!r}, but it must be a finite number "
                f"greater than 0 ({why})"
            )
    return info
