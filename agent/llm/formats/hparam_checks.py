"""Load-time rules for Llama hyperparameters, checked before any per-layer work.

A file whose hyperparameters break the model (a head size of 1, eps <= 0, a RoPE base <= 0, a
layer count no file could hold...) is refused here, naming the key, its value and the rule, instead
of loading and failing later as a numpy error or all-NaN logits. GGML files store no keys: their
header fields are named instead. Values that do not stop the engine (an unknown file type, an
odd training context) are warnings, for ``agent info``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.errors import ModelFormatError
from agent.llm.formats import gguf_keys as K
from agent.llm.formats.ggml_types import FILE_TYPES

LAYER_TENSORS = 9  # attn_norm, q, k, v, output, ffn_norm, gate, up, down
GLOBAL_TENSORS = 3  # token_embd, output_norm, output
MIN_GLOBAL_TENSORS = 2  # output may be tied to token_embd: the layer bound must not refuse that
MAX_CONTEXT = 1 << 20  # a training context beyond this is implausible for a Llama model

# What a GGML header calls the values its reader records under GGUF keys.
GGML_FIELDS = {
    K.GENERAL_FILE_TYPE: "ftype",
    K.LLAMA_VOCAB_SIZE: "n_vocab",
    K.LLAMA_EMBEDDING_LENGTH: "n_embd",
    K.LLAMA_ATTENTION_HEAD_COUNT: "n_head",
    K.LLAMA_BLOCK_COUNT: "n_layer",
    K.LLAMA_ROPE_DIMENSION_COUNT: "n_rot",
    K.LLAMA_ATTENTION_HEAD_COUNT_KV: "n_head_kv (from the shape of attention.wk)",
    K.LLAMA_FEED_FORWARD_LENGTH: "n_ff (from the shape of feed_forward.w1)",
}


def field_name(key: str, ggml: bool) -> str:
    if ggml and key in GGML_FIELDS:
        return f"{GGML_FIELDS[key]} in the GGML header"
    return key


def refusal(path: Path, key: str, value: Any, rule: str, ggml: bool = False) -> ModelFormatError:
    return ModelFormatError(
        f"{path}: {field_name(key, ggml)} is {value!r}, but {rule}; the file is corrupt or its "
        "header was written wrongly: get a good copy of the model"
    )


def head_size_rule(path: Path, n_embd: int, n_head: int, ggml: bool = False) -> int:
    """The head size ``n_embd / n_head``; refuses what RoPE and the attention cannot use."""
    key = K.LLAMA_ATTENTION_HEAD_COUNT
    if n_head <= 0:
        raise refusal(path, key, n_head, "a model needs at least one attention head", ggml)
    if n_embd % n_head:
        raise refusal(path, key, n_head, f"it must divide the embedding length {n_embd}", ggml)
    head = n_embd // n_head
    if head < 2 or head % 2:
        raise refusal(
            path,
            key,
            n_head,
            f"it gives a head size of {head} (embedding length {n_embd} / {n_head}); "
            "RoPE rotates pairs of values, so the head size must be even and at least 2",
            ggml,
        )
    return head


def positive_rule(path: Path, key: str, value: float, why: str, ggml: bool = False) -> None:
    if not value > 0:  # also refuses NaN
        raise refusal(path, key, value, f"it must be greater than 0 ({why})", ggml)


EPS_WHY = "RMSNorm divides by sqrt(mean(x^2) + eps)"
ROPE_BASE_WHY = "RoPE's angles are position * base^(-2i/head size)"


def check_llama_hparams(
    path: Path,
    md: dict[str, Any],
    *,
    n_tensors: int | None = None,
    n_vocab: int | None = None,
    ggml: bool = False,
) -> None:
    """Refuse hyperparameters the engine cannot run. Only keys present are checked (a reader may
    call this with the few values it has so far). ``n_tensors`` (when the file has tensors) bounds
    the layer count before anything is built per layer; ``n_vocab`` is the vocabulary's size."""
    n_embd = md.get(K.LLAMA_EMBEDDING_LENGTH)
    n_head = md.get(K.LLAMA_ATTENTION_HEAD_COUNT)
    n_head_kv = md.get(K.LLAMA_ATTENTION_HEAD_COUNT_KV)
    if n_embd is not None and n_embd <= 0:
        raise refusal(path, K.LLAMA_EMBEDDING_LENGTH, n_embd, "it must be positive", ggml)
    head = None
    if n_head is not None and n_embd is not None:
        head = head_size_rule(path, int(n_embd), int(n_head), ggml)
    if n_head_kv is not None and n_head is not None and (n_head_kv <= 0 or n_head % n_head_kv):
        raise refusal(
            path,
            K.LLAMA_ATTENTION_HEAD_COUNT_KV,
            n_head_kv,
            f"it must be positive and divide the {n_head} attention heads",
            ggml,
        )
    n_rot = md.get(K.LLAMA_ROPE_DIMENSION_COUNT)
    if n_rot is not None and head is not None and n_rot != head:
        raise refusal(
            path,
            K.LLAMA_ROPE_DIMENSION_COUNT,
            n_rot,
            f"Llama rotates whole heads: it must equal the head size {head}, as in llama.cpp",
            ggml,
        )
    n_ff = md.get(K.LLAMA_FEED_FORWARD_LENGTH)
    if n_ff is not None and n_ff <= 0:
        raise refusal(path, K.LLAMA_FEED_FORWARD_LENGTH, n_ff, "it must be positive", ggml)
    n_layer = md.get(K.LLAMA_BLOCK_COUNT)
    if n_layer is not None:
        if n_layer <= 0:
            raise refusal(
                path, K.LLAMA_BLOCK_COUNT, n_layer, "a model has at least one layer", ggml
            )
        most = max(0, (n_tensors or 0) - MIN_GLOBAL_TENSORS) // LAYER_TENSORS
        if n_tensors and n_layer > most:
            raise refusal(
                path,
                K.LLAMA_BLOCK_COUNT,
                n_layer,
                f"the file holds only {n_tensors} tensors, enough for at most {most} layers "
                f"({LAYER_TENSORS} tensors each, plus {MIN_GLOBAL_TENSORS})",
                ggml,
            )
    vocab_size = md.get(K.LLAMA_VOCAB_SIZE)
    if vocab_size is not None and n_vocab and vocab_size != n_vocab:
        raise refusal(
            path,
            K.LLAMA_VOCAB_SIZE,
            vocab_size,
            f"the vocabulary holds {n_vocab} tokens, and the two must agree",
            ggml,
        )
    eps = md.get(K.LLAMA_ATTENTION_LAYER_NORM_RMS_EPSILON)
    if eps is not None:
        positive_rule(path, K.LLAMA_ATTENTION_LAYER_NORM_RMS_EPSILON, float(eps), EPS_WHY)
    base = md.get(K.LLAMA_ROPE_FREQ_BASE)
    if base is not None:
        positive_rule(path, K.LLAMA_ROPE_FREQ_BASE, float(base), ROPE_BASE_WHY)
    for key in (K.LLAMA_ROPE_SCALING_FACTOR, K.LLAMA_ROPE_SCALE_LINEAR):
        if md.get(key) is not None and md[key] < 0:
            raise refusal(path, key, md[key], "a scaling factor is positive (0: no scaling)")


def hparam_warnings(md: dict[str, Any], ggml: bool = False) -> list[str]:
    """What is odd but does not stop the engine (each tensor carries its own type, and the
    context window is chosen at load time)."""
    warnings = []
    ftype = md.get(K.GENERAL_FILE_TYPE)
    if ftype is not None and int(ftype) not in FILE_TYPES:
        warnings.append(
            f"{field_name(K.GENERAL_FILE_TYPE, ggml)} is {ftype}, which is not a llama.cpp file "
            "type; it is only a label (each tensor's own type is what is read)"
        )
    n_ctx = md.get(K.LLAMA_CONTEXT_LENGTH)
    if n_ctx is not None and not 0 < n_ctx <= MAX_CONTEXT:
        warnings.append(
            f"llama.context_length is {n_ctx}, which is not a plausible training context "
            f"(1..{MAX_CONTEXT}); choose the window with n_ctx (-c)"
        )
    return warnings
