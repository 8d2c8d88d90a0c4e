"""GGML v3 (ggjt, and the older GGML containers) -> GGUF v3, tensors copied byte for byte.

What a GGML file does not store is filled in as Llama-2 needs it: n_head_kv from the shape of
``attn_k`` (or ``--n-gqa``), RMS eps 1e-5, context length 4096, RoPE base 10000 and scale 1.
Tensor data is streamed from the memory-mapped input, so converting a 13B file needs little RAM.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from agent.errors import ModelFormatError
from agent.llm.formats import gguf_keys as K
from agent.llm.formats.gguf_writer import GGUFValueType as T
from agent.llm.formats.gguf_writer import GGUFWriter
from agent.llm.formats.modelfile import ModelFile, TensorInfo, Vocab
from agent.llm.llama2 import (
    CONTEXT_LENGTH,
    RMS_NORM_EPS,
    ROPE_FREQ_BASE,
    ROPE_FREQ_SCALE,
    LlamaHParams,
)

GGML_QUANT_VERSION = 2  # general.quantization_version for the block layouts of ggjt v3
COPY_CHUNK = 16 << 20  # bytes per write when streaming tensor data


def add_llama_keys(
    w: GGUFWriter, hp: LlamaHParams, *, name: str, file_type: int, description: str | None = None
) -> None:
    """The general.* and llama.* keys llama.cpp reads, with the types gguf-py writes."""
    w.add(K.GENERAL_ARCHITECTURE, "llama")
    w.add(K.GENERAL_NAME, name)
    if description:
        w.add(K.GENERAL_DESCRIPTION, description)
    w.add(K.GENERAL_FILE_TYPE, file_type, T.UINT32)
    w.add(K.GENERAL_QUANTIZATION_VERSION, GGML_QUANT_VERSION, T.UINT32)
    w.add(K.LLAMA_CONTEXT_LENGTH, hp.n_ctx, T.UINT32)
    w.add(K.LLAMA_EMBEDDING_LENGTH, hp.n_embd, T.UINT32)
    w.add(K.LLAMA_BLOCK_COUNT, hp.n_layer, T.UINT32)
    w.add(K.LLAMA_FEED_FORWARD_LENGTH, hp.n_ff, T.UINT32)
    w.add(K.LLAMA_ROPE_DIMENSION_COUNT, hp.n_embd // hp.n_head, T.UINT32)
    w.add(K.LLAMA_ATTENTION_HEAD_COUNT, hp.n_head, T.UINT32)
    w.add(K.LLAMA_ATTENTION_HEAD_COUNT_KV, hp.n_head_kv, T.UINT32)
    w.add(K.LLAMA_ATTENTION_LAYER_NORM_RMS_EPSILON, hp.rms_norm_eps, T.FLOAT32)
    w.add(K.LLAMA_ROPE_FREQ_BASE, hp.rope_freq_base, T.FLOAT32)
    if hp.rope_freq_scale != 1.0:  # linear scaling: llama.cpp reads freq_scale = 1 / factor
        w.add(K.LLAMA_ROPE_SCALING_TYPE, "linear")
        w.add(K.LLAMA_ROPE_SCALING_FACTOR, 1.0 / hp.rope_freq_scale, T.FLOAT32)


def add_vocab_keys(w: GGUFWriter, vocab: Vocab) -> None:
    """A SentencePiece vocab as tokenizer.ggml.* keys."""
    w.add(K.TOKENIZER_GGML_MODEL, "llama")
    w.add(K.TOKENIZER_GGML_TOKENS, list(vocab.tokens), elem_type=T.STRING)
    w.add(K.TOKENIZER_GGML_SCORES, np.asarray(vocab.scores, dtype=np.float32))
    w.add(K.TOKENIZER_GGML_TOKEN_TYPE, np.asarray(vocab.types, dtype=np.int32))
    w.add(K.TOKENIZER_GGML_BOS_TOKEN_ID, vocab.bos_id, T.UINT32)
    w.add(K.TOKENIZER_GGML_EOS_TOKEN_ID, vocab.eos_id, T.UINT32)
    w.add(K.TOKENIZER_GGML_UNKNOWN_TOKEN_ID, vocab.unk_id, T.UINT32)
    w.add(K.TOKENIZER_GGML_ADD_BOS_TOKEN, bool(vocab.add_bos), T.BOOL)


def tensor_chunks(t: TensorInfo, chunk: int = COPY_CHUNK) -> Callable[[], Iterator[np.ndarray]]:
    """Lazy pieces of a mapped tensor's bytes (nothing is read until the writer asks)."""

    def gen() -> Iterator[np.ndarray]:
        for start in range(0, t.nbytes, chunk):
            yield t.data[start : start + chunk]

    return gen


def stderr_progress(label: str, min_bytes: int = 64 << 20) -> Callable[[int, int], None]:
    """A progress callback printing at most ~4 times a second, only for big files."""
    state = {"last": 0.0}

    def report(done: int, total: int) -> None:
        if total < min_bytes:
            return
        now = time.monotonic()
        if now - state["last"] < 0.25 and done < total:
            return
        state["last"] = now
        end = "\n" if done >= total else ""
        print(
            f"\r{label}: {done / 2**20:,.0f} / {total / 2**20:,.0f} MiB "
            f"({100 * done / total:.0f}%)",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    return report


def ggml_hparams(
    mf: ModelFile,
    *,
    n_gqa: int | None = None,
    n_ctx: int = CONTEXT_LENGTH,
    rms_norm_eps: float = RMS_NORM_EPS,
    rope_freq_base: float = ROPE_FREQ_BASE,
    rope_freq_scale: float = ROPE_FREQ_SCALE,
) -> LlamaHParams:
    """Hyperparameters of a GGML file: stored, inferred from shapes, or the Llama-2 defaults."""
    md = mf.metadata
    n_embd, n_head = int(md[K.LLAMA_EMBEDDING_LENGTH]), int(md[K.LLAMA_ATTENTION_HEAD_COUNT])
    inferred_kv = md.get(K.LLAMA_ATTENTION_HEAD_COUNT_KV)
    if n_gqa is not None:
        if n_gqa <= 0 or n_head % n_gqa:
            raise ModelFormatError(
                f"{mf.path}: --n-gqa {n_gqa} does not divide the {n_head} attention heads"
            )
        n_head_kv = n_head // n_gqa
        if inferred_kv is not None and inferred_kv != n_head_kv:
            raise ModelFormatError(
                f"{mf.path}: --n-gqa {n_gqa} means {n_head_kv} KV heads, but attention.wk's shape "
                f"says {inferred_kv}; leave --n-gqa out to use the shape"
            )
    else:
        n_head_kv = int(inferred_kv) if inferred_kv is not None else n_head
    if K.LLAMA_FEED_FORWARD_LENGTH not in md:
        raise ModelFormatError(
            f"{mf.path}: no layers.0.feed_forward.w1.weight tensor to take n_ff from; "
            "is this a Llama model?"
        )
    return LlamaHParams(
        n_vocab=len(mf.vocab),
        n_embd=n_embd,
        n_layer=int(md[K.LLAMA_BLOCK_COUNT]),
        n_head=n_head,
        n_head_kv=n_head_kv,
        n_ff=int(md[K.LLAMA_FEED_FORWARD_LENGTH]),
        n_ctx=n_ctx,
        rms_norm_eps=rms_norm_eps,
        rope_freq_base=rope_freq_base,
        rope_freq_scale=rope_freq_scale,
    )


def check_options(src: Path, hp: LlamaHParams) -> None:
    """What the caller sets (GGML files lack it) must be usable: never write a broken GGUF."""
    for option, value in (
        ("n_ctx (--context-length)", hp.n_ctx),
        ("rms_norm_eps (--eps)", hp.rms_norm_eps),
        ("rope_freq_base (--rope-freq-base)", hp.rope_freq_base),
        ("rope_freq_scale (--rope-freq-scale)", hp.rope_freq_scale),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ModelFormatError(
                f"{src}: {option} is {value!r}, but it must be a finite number greater than 0; "
                "nothing was written"
            )


def convert_ggml_to_gguf(
    src: str | Path,
    dst: str | Path,
    *,
    name: str | None = None,
    n_gqa: int | None = None,
    n_ctx: int = CONTEXT_LENGTH,
    rms_norm_eps: float = RMS_NORM_EPS,
    rope_freq_base: float = ROPE_FREQ_BASE,
    rope_freq_scale: float = ROPE_FREQ_SCALE,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``dst`` (GGUF v3) from the GGML-era file ``src``; returns ``dst``."""
    from agent.llm.formats.files import open_model_file

    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ModelFormatError(f"{src}: the output file must differ from the input")
    mf = open_model_file(src)
    if mf.format.startswith("gguf"):
        raise ModelFormatError(f"{src}: already a GGUF file ({mf.format}); nothing to convert")
    hp = ggml_hparams(
        mf,
        n_gqa=n_gqa,
        n_ctx=n_ctx,
        rms_norm_eps=rms_norm_eps,
        rope_freq_base=rope_freq_base,
        rope_freq_scale=rope_freq_scale,
    )
    check_options(src, hp)
    w = GGUFWriter(dst, progress=progress)
    add_llama_keys(
        w,
        hp,
        name=name or str(mf.metadata.get(K.GENERAL_NAME, src.stem)),
        file_type=int(mf.metadata[K.GENERAL_FILE_TYPE]),
        description=f"converted from {mf.format} file {src.name}",
    )
    add_vocab_keys(w, mf.vocab)
    for t in mf.tensors.values():
        w.add_tensor(t.name, tensor_chunks(t), shape=t.shape, type=t.type)
    w.write()
    return dst
