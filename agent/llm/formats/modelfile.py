"""What a model file holds, independent of its container (GGML/GGJT or GGUF).

Tensors are numpy views on the memory-mapped file: opening a 13B file copies nothing.
Tensor names use the GGUF convention (``token_embd.weight``, ``blk.0.attn_q.weight``...);
the GGML reader renames its tensors on the way in.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import ModelFormatError
from agent.llm.formats import gguf_keys as K
from agent.llm.formats.ggml_types import LAYOUTS, GGMLType, type_name
from agent.llm.formats.hparam_checks import GLOBAL_TENSORS, LAYER_TENSORS, check_llama_hparams

# SentencePiece piece types, as GGUF's tokenizer.ggml.token_type stores them.
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = (
    1,
    2,
    3,
    4,
    5,
    6,
)


@dataclass
class Vocab:
    """A SentencePiece vocabulary in GGUF form: pieces use U+2581 for spaces, bytes are <0xXX>."""

    tokens: list[str]
    scores: np.ndarray  # float32 [n_vocab]
    types: np.ndarray  # int32 [n_vocab], TOKEN_* values
    bos_id: int = 1
    eos_id: int = 2
    unk_id: int = 0
    add_bos: bool = True
    add_space_prefix: bool = True

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class TensorInfo:
    name: str
    type: int  # GGMLType value
    shape: tuple[int, ...]  # numpy order: (rows, row_length) for matrices
    offset: int  # absolute file offset of the data
    data: np.ndarray  # uint8 view on the mapped bytes

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


@dataclass
class ModelFile:
    path: Path
    format: str  # "ggjt-v3", "ggml", "ggmf-v1", "gguf-v3", ...
    metadata: dict[str, Any]  # GGUF keys (GGML files: the equivalent keys we could derive)
    tensors: dict[str, TensorInfo]
    vocab: Vocab
    file_size: int
    _mmap: Any = field(default=None, repr=False)

    def tensor(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise ModelFormatError(
                f"{self.path}: tensor {name!r} is missing; is this a Llama model file?"
            ) from None


def map_file(path: Path) -> tuple[Any, np.ndarray]:
    """Memory-map ``path`` read-only; returns the mmap and a uint8 view on it."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size == 0:
                raise ModelFormatError(f"{path}: the file is empty; expected a GGML or GGUF model")
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise ModelFormatError(f"cannot open model file {path}: {exc.strerror or exc}") from exc
    return mm, np.frombuffer(mm, dtype=np.uint8)


class ByteReader:
    """Sequential little-endian reads over the mapped bytes, with errors that name the offset."""

    def __init__(self, path: Path, buf: np.ndarray, pos: int = 0):
        self.path = path
        self.buf = buf
        self.mv = buf.data  # memoryview(buf), which numpy's stubs only allow from Python 3.12
        self.pos = pos
        self.size = len(buf)

    def fail(self, what: str, hint: str = "") -> ModelFormatError:
        msg = f"{self.path}: {what} at offset {self.pos}"
        return ModelFormatError(msg + (f"; {hint}" if hint else ""))

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(
                f"file ends while reading {what} ({n} bytes needed, {self.size - self.pos} left)",
                "the file is truncated or corrupt: download it again",
            )

    def unpack(self, fmt: str, what: str) -> tuple:
        n = struct.calcsize("<" + fmt)
        self.need(n, what)
        values = struct.unpack_from("<" + fmt, self.mv, self.pos)
        self.pos += n
        return values

    def u32(self, what: str) -> int:
        return self.unpack("I", what)[0]

    def u64(self, what: str) -> int:
        return self.unpack("Q", what)[0]

    def raw(self, n: int, what: str) -> bytes:
        self.need(n, what)
        b = bytes(self.mv[self.pos : self.pos + n])
        self.pos += n
        return b

    def align(self, alignment: int) -> None:
        self.pos += -self.pos % alignment


def tensor_view(
    reader: ByteReader, name: str, type_id: int, shape: tuple[int, ...], offset: int
) -> TensorInfo:
    """A checked uint8 view of one tensor's bytes."""
    try:
        layout = LAYOUTS[GGMLType(type_id)]
    except (ValueError, KeyError):
        raise ModelFormatError(
            f"{reader.path}: tensor {name!r} has tensor type {type_id} ({type_name(type_id)}), "
            "which this engine does not support (supported: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, "
            "Q8_0, Q2_K..Q6_K); re-quantize the model to one of those types"
        ) from None
    n = 1
    for d in shape:
        if d <= 0:
            raise ModelFormatError(
                f"{reader.path}: tensor {name!r} has an invalid dimension in shape {shape}"
            )
        n *= d
    if shape[-1] % layout.block_size:
        raise ModelFormatError(
            f"{reader.path}: tensor {name!r} of type {type_name(type_id)} has rows of {shape[-1]} "
            f"values, not a multiple of its block size {layout.block_size}"
        )
    nbytes = n // layout.block_size * layout.type_size
    if offset < 0 or offset + nbytes > reader.size:
        raise ModelFormatError(
            f"{reader.path}: tensor {name!r} ({type_name(type_id)}, shape {shape}) needs {nbytes} "
            f"bytes at offset {offset}, but the file has only {reader.size} bytes; the file is "
            "truncated or corrupt"
        )
    return TensorInfo(name, type_id, shape, offset, reader.buf[offset : offset + nbytes])


def tensor_nbytes(type_id: int, shape: tuple[int, ...]) -> int | None:
    """Bytes of a tensor's data; None for an unknown type or a shape that does not fit blocks."""
    try:
        layout = LAYOUTS[GGMLType(type_id)]
    except (ValueError, KeyError):
        return None
    n = 1
    for d in shape:
        n *= d
    if n <= 0 or shape[-1] % layout.block_size:
        return None
    return n // layout.block_size * layout.type_size


# Keys whose value type the engine relies on (model_info, tokenizer): checked once, at read time,
# so a corrupt file fails here with a clear message instead of deep inside the engine.
INT_KEYS = (
    K.GENERAL_ALIGNMENT,
    K.GENERAL_FILE_TYPE,
    K.GENERAL_QUANTIZATION_VERSION,
    K.LLAMA_CONTEXT_LENGTH,
    K.LLAMA_EMBEDDING_LENGTH,
    K.LLAMA_BLOCK_COUNT,
    K.LLAMA_FEED_FORWARD_LENGTH,
    K.LLAMA_ATTENTION_HEAD_COUNT,
    K.LLAMA_ATTENTION_HEAD_COUNT_KV,
    K.LLAMA_ROPE_DIMENSION_COUNT,
    K.LLAMA_VOCAB_SIZE,
    K.TOKENIZER_GGML_BOS_TOKEN_ID,
    K.TOKENIZER_GGML_EOS_TOKEN_ID,
    K.TOKENIZER_GGML_UNKNOWN_TOKEN_ID,
)
FLOAT_KEYS = (
    K.LLAMA_ATTENTION_LAYER_NORM_RMS_EPSILON,
    K.LLAMA_ROPE_FREQ_BASE,
    K.LLAMA_ROPE_SCALE_LINEAR,
    K.LLAMA_ROPE_SCALING_FACTOR,
)
STR_KEYS = (K.GENERAL_ARCHITECTURE, K.GENERAL_NAME, K.TOKENIZER_GGML_MODEL)
BOOL_KEYS = (K.TOKENIZER_GGML_ADD_BOS_TOKEN, K.TOKENIZER_GGML_ADD_SPACE_PREFIX)


def check_metadata_types(path: Path, md: dict[str, Any]) -> None:
    def bad(key: str, expected: str) -> ModelFormatError:
        value = md[key]
        shown = (
            f"an array of {len(value)}"
            if isinstance(value, (list, np.ndarray))
            else repr(value)[:40]
        )
        return ModelFormatError(
            f"{path}: metadata {key!r} should be {expected} but is {shown}; the file is corrupt"
        )

    for key in INT_KEYS:
        if key in md and (
            not isinstance(md[key], (int, np.integer)) or isinstance(md[key], bool) or md[key] < 0
        ):
            raise bad(key, "a non-negative integer")
    for key in FLOAT_KEYS:
        if key in md and (
            not isinstance(md[key], (int, float, np.integer, np.floating))
            or isinstance(md[key], bool)
            or not np.isfinite(md[key])
        ):
            raise bad(key, "a finite number")
    for key in STR_KEYS:
        if key in md and not isinstance(md[key], str):
            raise bad(key, "a string")
    for key in BOOL_KEYS:
        if key in md and not isinstance(md[key], (bool, int, np.integer)):
            raise bad(key, "a boolean")


def check_llama_shapes(mf: ModelFile) -> None:
    """Each Llama tensor present must have the shape the hyperparameters imply, so that a damaged or
    mislabelled file fails at load time naming the tensor, not later as a numpy broadcasting
    error."""
    md = mf.metadata
    if md.get(K.GENERAL_ARCHITECTURE, "llama") != "llama":
        return
    ggml = not mf.format.startswith("gguf")
    check_llama_hparams(mf.path, md, n_vocab=len(mf.vocab) or None, ggml=ggml)
    if not mf.tensors or K.LLAMA_BLOCK_COUNT not in md:
        return  # a vocabulary-only file; or model_info reports the missing key
    n_layer = int(md[K.LLAMA_BLOCK_COUNT])
    check_complete(mf, n_layer, ggml)
    try:
        n_embd, n_head = int(md[K.LLAMA_EMBEDDING_LENGTH]), int(md[K.LLAMA_ATTENTION_HEAD_COUNT])
        n_ff = int(md[K.LLAMA_FEED_FORWARD_LENGTH])
    except KeyError:
        return  # model_info reports the missing key
    n_head_kv = int(md.get(K.LLAMA_ATTENTION_HEAD_COUNT_KV, n_head))
    n_vocab, kv = len(mf.vocab), n_embd // n_head * n_head_kv
    expected = {
        "token_embd.weight": (n_vocab, n_embd),
        "output_norm.weight": (n_embd,),
        "output.weight": (n_vocab, n_embd),
    }
    per_layer = {
        "attn_norm.weight": (n_embd,),
        "attn_q.weight": (n_embd, n_embd),
        "attn_k.weight": (kv, n_embd),
        "attn_v.weight": (kv, n_embd),
        "attn_output.weight": (n_embd, n_embd),
        "ffn_norm.weight": (n_embd,),
        "ffn_gate.weight": (n_ff, n_embd),
        "ffn_up.weight": (n_ff, n_embd),
        "ffn_down.weight": (n_embd, n_ff),
    }
    for name, t in mf.tensors.items():
        want = expected.get(name)
        if want is None and name.startswith("blk."):
            _, layer, rest = name.split(".", 2) if name.count(".") >= 2 else ("", "", "")
            want = per_layer.get(rest)
            if want is not None and (not layer.isdigit() or int(layer) >= n_layer):
                raise ModelFormatError(
                    f"{mf.path}: tensor {name!r} belongs to no layer (the model has {n_layer})"
                )
        if want is not None and tuple(t.shape) != want:
            raise ModelFormatError(
                f"{mf.path}: tensor {name!r} has shape {tuple(t.shape)} but the hyperparameters "
                f"(n_vocab {n_vocab}, n_embd {n_embd}, n_head {n_head}, n_head_kv {n_head_kv}, "
                f"n_ff {n_ff}) need {want}; the file is corrupt or its metadata does not match its "
                "weights"
            )


def llama_tensor_names(n_layer: int) -> Iterator[str]:
    yield from ("token_embd.weight", "output_norm.weight", "output.weight")
    for i in range(n_layer):
        for rest in LAYER_TENSOR_NAMES:
            yield f"blk.{i}.{rest}"


LAYER_TENSOR_NAMES = (
    "attn_norm.weight",
    "attn_q.weight",
    "attn_k.weight",
    "attn_v.weight",
    "attn_output.weight",
    "ffn_norm.weight",
    "ffn_gate.weight",
    "ffn_up.weight",
    "ffn_down.weight",
)


def check_complete(mf: ModelFile, n_layer: int, ggml: bool) -> None:
    """Every tensor of an ``n_layer`` Llama model must be present. The work is bounded by the
    tensors the file holds, whatever the layer count claims (names stop at the first missing)."""
    n_required = GLOBAL_TENSORS + LAYER_TENSORS * n_layer
    if len(mf.tensors) >= n_required:
        missing = [name for name in llama_tensor_names(n_layer) if name not in mf.tensors]
    else:
        first = next(name for name in llama_tensor_names(n_layer) if name not in mf.tensors)
        missing = [first]
    if not missing:
        return
    if ggml:  # GGML files have no tensor count: a file cut between two records reads as shorter
        raise ModelFormatError(
            f"{mf.path}: the file is truncated: it ends at offset {mf.file_size} after "
            f"{len(mf.tensors)} tensors, but a Llama model with n_layer {n_layer} has {n_required} "
            f"(first missing: {missing[0]!r}); download the file again"
        )
    raise ModelFormatError(
        f"{mf.path}: tensors are missing: the file holds {len(mf.tensors)} tensors, the model's "
        f"{n_layer} layers need {n_required} (first missing: {missing[0]!r}); "
        "the file is not a complete Llama model"
    )
