"""GGML-era reader: unversioned 'ggml', 'ggmf' v1, 'ggjt' v1-v3, memory-mapped.

These files store no n_head_kv, eps, rope settings or context length (see design notes): we derive
what the shapes tell (n_ff from ffn_gate, n_head_kv from attn_k) and leave the rest to defaults and
user overrides, recording the derived values as GGUF-style metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import ModelFormatError
from agent.llm.formats import gguf_keys as K
from agent.llm.formats.ggml_types import GGMLType, type_name
from agent.llm.formats.hparam_checks import check_llama_hparams
from agent.llm.formats.modelfile import (
    TOKEN_BYTE,
    TOKEN_CONTROL,
    TOKEN_NORMAL,
    TOKEN_UNKNOWN,
    ByteReader,
    ModelFile,
    TensorInfo,
    Vocab,
    check_llama_shapes,
    map_file,
    tensor_view,
)

MAGICS = {0x67676D6C: "ggml", 0x67676D66: "ggmf", 0x67676A74: "ggjt"}
UNK_TEXT = b" \xe2\x81\x87 "  # convert.py stores <unk> as " ⁇ "

# GGML tensor names -> GGUF names (layer tensors carry "layers.{i}." / "blk.{i}.").
GLOBAL_NAMES = {
    "tok_embeddings.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "output.weight": "output.weight",
}
LAYER_NAMES = {
    "attention_norm.weight": "attn_norm.weight",
    "attention.wq.weight": "attn_q.weight",
    "attention.wk.weight": "attn_k.weight",
    "attention.wv.weight": "attn_v.weight",
    "attention.wo.weight": "attn_output.weight",
    "ffn_norm.weight": "ffn_norm.weight",
    "feed_forward.w1.weight": "ffn_gate.weight",
    "feed_forward.w2.weight": "ffn_down.weight",
    "feed_forward.w3.weight": "ffn_up.weight",
}


def gguf_tensor_name(name: str) -> str:
    if name in GLOBAL_NAMES:
        return GLOBAL_NAMES[name]
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "layers" and parts[1].isdigit() and parts[2] in LAYER_NAMES:
        return f"blk.{parts[1]}.{LAYER_NAMES[parts[2]]}"
    return name


def ggml_piece_to_spm(text: bytes, token_id: int) -> tuple[str, int]:
    """Map a GGML-era vocab entry back to its SentencePiece piece and type (inverse of
    convert.py)."""
    if token_id == 0 and text in (UNK_TEXT, b"<unk>"):
        return "<unk>", TOKEN_UNKNOWN
    if text == b"":
        return {1: "<s>", 2: "</s>"}.get(token_id, f"<ctrl{token_id}>"), TOKEN_CONTROL
    if 3 <= token_id <= 258 and len(text) == 1:
        return f"<0x{text[0]:02X}>", TOKEN_BYTE
    return text.decode("utf-8", errors="replace").replace(" ", "\u2581"), TOKEN_NORMAL


def read_ggml(path: str | Path) -> ModelFile:
    path = Path(path)
    mm, buf = map_file(path)
    r = ByteReader(path, buf)
    magic = r.u32("magic")
    if magic not in MAGICS:
        raise ModelFormatError(
            f"{path}: unknown magic 0x{magic:08x}; expected a GGML (ggml/ggmf/ggjt) or GGUF file"
        )
    kind = MAGICS[magic]
    version = 0 if kind == "ggml" else r.u32("format version")
    if (kind == "ggmf" and version != 1) or (kind == "ggjt" and version not in (1, 2, 3)):
        raise ModelFormatError(
            f"{path}: unsupported {kind} version {version} (readable: ggmf v1, ggjt v1-v3)"
        )
    fmt = kind if kind == "ggml" else f"{kind}-v{version}"
    n_vocab, n_embd, n_mult, n_head, n_layer, n_rot, ftype = r.unpack("7I", "hyperparameters")
    if not (
        0 < n_vocab < 1 << 20
        and 0 < n_embd < 1 << 20
        and 0 < n_head <= n_embd
        and 0 < n_layer < 1024
    ):
        raise r.fail(
            f"implausible hyperparameters (n_vocab {n_vocab}, n_embd {n_embd}, n_head {n_head}, "
            f"n_layer {n_layer})",
            "the file is corrupt or not a Llama model",
        )
    ftype %= 1000  # some writers packed the quantization version as ftype // 1000
    header = {
        K.LLAMA_EMBEDDING_LENGTH: n_embd,
        K.LLAMA_ATTENTION_HEAD_COUNT: n_head,
        K.LLAMA_BLOCK_COUNT: n_layer,
        K.LLAMA_ROPE_DIMENSION_COUNT: n_rot,
    }
    check_llama_hparams(path, header, ggml=True)  # before the vocab and tensors are read

    tokens, scores, types = [], np.zeros(n_vocab, np.float32), np.zeros(n_vocab, np.int32)
    for i in range(n_vocab):
        n = r.u32(f"length of vocab entry #{i}")
        if n > 4096:
            raise r.fail(f"vocab entry #{i} claims {n} bytes", "the file is corrupt")
        text = r.raw(n, f"vocab entry #{i}")
        if kind != "ggml":  # unversioned files carry no scores
            scores[i] = r.unpack("f", f"score of vocab entry #{i}")[0]
        piece, types[i] = ggml_piece_to_spm(text, i)
        tokens.append(piece)
    vocab = Vocab(tokens, scores, types)

    tensors: dict[str, TensorInfo] = {}
    while r.pos < r.size:
        n_dims, name_len, ttype = r.unpack("3I", "tensor header")
        if not 1 <= n_dims <= 4 or name_len > 1024:
            raise r.fail(
                f"bad tensor header (n_dims {n_dims}, name length {name_len})",
                "the file is corrupt",
            )
        ne = r.unpack(f"{n_dims}I", "tensor shape")
        name = r.raw(name_len, "tensor name").decode("utf-8", errors="replace")
        if kind == "ggjt":
            r.align(32)
        # ggjt v2 changed the bit order of every quantized block, v3 the Q4_0/Q4_1/Q8_0 scales to
        # f16.
        if kind == "ggjt" and version == 3:
            old_layout = False
        elif kind == "ggjt" and version == 2:
            old_layout = ttype in (GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q8_0)
        else:
            old_layout = ttype not in (GGMLType.F32, GGMLType.F16)
        if old_layout:
            raise ModelFormatError(
                f"{path}: tensor {name!r} uses the old {type_name(ttype)} block layout of {fmt} "
                "files, which this engine does not decode; re-quantize the model with llama.cpp "
                "of June-August 2023 (ggjt v3) or convert it to GGUF"
            )
        info = tensor_view(r, gguf_tensor_name(name), ttype, tuple(reversed(ne)), r.pos)
        if info.name in tensors:
            raise ModelFormatError(f"{path}: tensor {name!r} appears twice; the file is corrupt")
        r.pos += info.nbytes
        tensors[info.name] = info

    metadata = derived_metadata(path, tensors, n_vocab, n_embd, n_head, n_layer, n_rot, ftype)
    mf = ModelFile(path, fmt, metadata, tensors, vocab, len(buf), mm)
    check_llama_shapes(mf)
    return mf


def derived_metadata(
    path: Path,
    tensors: dict[str, TensorInfo],
    n_vocab: int,
    n_embd: int,
    n_head: int,
    n_layer: int,
    n_rot: int,
    ftype: int,
) -> dict[str, Any]:
    """GGUF-style llama.* keys for a GGML file: stored values, plus what the shapes imply."""
    md: dict[str, Any] = {
        K.GENERAL_ARCHITECTURE: "llama",
        K.GENERAL_NAME: path.stem,
        K.GENERAL_FILE_TYPE: ftype,
        K.LLAMA_VOCAB_SIZE: n_vocab,
        K.LLAMA_EMBEDDING_LENGTH: n_embd,
        K.LLAMA_BLOCK_COUNT: n_layer,
        K.LLAMA_ATTENTION_HEAD_COUNT: n_head,
        K.LLAMA_ROPE_DIMENSION_COUNT: n_rot,
    }
    head_dim = n_embd // n_head
    wk = tensors.get("blk.0.attn_k.weight")
    if wk is not None:
        n_embd_kv = wk.shape[0]
        if n_embd_kv % head_dim or n_head % (n_embd_kv // head_dim):
            raise ModelFormatError(
                f"{path}: attention.wk has {n_embd_kv} rows, which does not fit "
                f"{n_head} heads of size {head_dim}"
            )
        md[K.LLAMA_ATTENTION_HEAD_COUNT_KV] = n_embd_kv // head_dim
    w1 = tensors.get("blk.0.ffn_gate.weight")
    if w1 is not None:
        md[K.LLAMA_FEED_FORWARD_LENGTH] = w1.shape[0]
    return md
