"""GGML-era writer: 'ggjt' v3 (what llama.cpp wrote until August 2023), plus the older 'ggml',
'ggmf' v1 and 'ggjt' v1/v2 containers so the readers can be tested against them.

Tensors and the vocab are given in GGUF form (``blk.0.attn_q.weight``, SentencePiece pieces) and
translated to what llama.cpp's ``convert.py`` wrote. Data streams to disk as in ``GGUFWriter``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.llm.formats.atomic import atomic_write
from agent.llm.formats.ggml import GLOBAL_NAMES, LAYER_NAMES, UNK_TEXT
from agent.llm.formats.ggml_types import LAYOUTS, GGMLType, tensor_nbytes, type_name
from agent.llm.formats.gguf_writer import (
    PendingTensor,
    TensorSource,
    WriterError,
    float_tensor_bytes,
    write_tensor_data,
)
from agent.llm.formats.modelfile import TOKEN_BYTE, TOKEN_CONTROL, TOKEN_UNKNOWN, Vocab

MAGICS = {"ggml": 0x67676D6C, "ggmf": 0x67676D66, "ggjt": 0x67676A74}
_GGUF_GLOBAL = {v: k for k, v in GLOBAL_NAMES.items()}
_GGUF_LAYER = {v: k for k, v in LAYER_NAMES.items()}


@dataclass
class GGMLHParams:
    """The seven uint32 of a GGML header (n_head_kv, eps, rope and context are not stored)."""

    n_vocab: int
    n_embd: int
    n_mult: int
    n_head: int
    n_layer: int
    n_rot: int
    ftype: int


def ggml_tensor_name(name: str) -> str:
    """GGUF tensor name -> the name GGML files use (inverse of ``ggml.gguf_tensor_name``)."""
    if name in _GGUF_GLOBAL:
        return _GGUF_GLOBAL[name]
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _GGUF_LAYER:
        return f"layers.{parts[1]}.{_GGUF_LAYER[parts[2]]}"
    return name


def spm_to_ggml_piece(piece: str, token_type: int) -> bytes:
    """A SentencePiece piece as convert.py stored it in GGML vocabs (see reference §1.3)."""
    if token_type == TOKEN_UNKNOWN:
        return UNK_TEXT
    if token_type == TOKEN_CONTROL:
        return b""
    if (
        token_type == TOKEN_BYTE
        and len(piece) == 6
        and piece.startswith("<0x")
        and piece.endswith(">")
    ):
        return bytes([int(piece[3:5], 16)])
    return piece.replace("\u2581", " ").encode("utf-8")


def find_n_mult(n_ff: int, n_embd: int) -> int:
    """The n_mult that makes llama.cpp's n_ff formula give ``n_ff`` (as convert.py searched it)."""
    for n_mult in range(8192, 1, -1):
        if ((8 * n_embd) // 3 + n_mult - 1) // n_mult * n_mult == n_ff:
            return n_mult
    return 256  # no n_mult fits (odd custom shapes): readers take n_ff from the w1 shape anyway


class GGMLWriter:
    """Header, vocab, then tensor records (with 32-byte alignment in ggjt) streamed to disk."""

    def __init__(
        self,
        path: str | Path,
        hparams: GGMLHParams,
        *,
        kind: str = "ggjt",
        version: int = 3,
        progress: Callable[[int, int], None] | None = None,
    ):
        if kind not in MAGICS:
            raise WriterError(f"unknown GGML container {kind!r} (ggml, ggmf, ggjt)")
        if (kind == "ggmf" and version != 1) or (kind == "ggjt" and version not in (1, 2, 3)):
            raise WriterError(f"{kind} version {version} does not exist (ggmf v1, ggjt v1-v3)")
        self.path = Path(path)
        self.hparams = hparams
        self.kind = kind
        self.version = version
        self.progress = progress
        self._vocab: list[tuple[bytes, float]] = []
        self._tensors: dict[str, PendingTensor] = {}

    def set_vocab(self, vocab: Vocab) -> None:
        self._vocab = [
            (spm_to_ggml_piece(tok, int(tt)), float(sc))
            for tok, sc, tt in zip(vocab.tokens, vocab.scores, vocab.types, strict=False)
        ]

    def set_raw_vocab(self, entries: list[tuple[bytes, float]]) -> None:
        self._vocab = list(entries)

    def add_tensor(
        self, name: str, data: TensorSource, *, shape: tuple[int, ...], type: int
    ) -> None:
        """``name`` in GGUF or GGML spelling; ``shape`` numpy order; ``data`` as for GGUFWriter."""
        name = ggml_tensor_name(name)
        if name in self._tensors:
            raise WriterError(f"tensor {name!r} added twice")
        if GGMLType(type) not in LAYOUTS:
            raise WriterError(
                f"tensor {name!r}: type {type_name(type)} cannot be stored in a model file"
            )
        shape = tuple(int(d) for d in shape)
        if shape[-1] % LAYOUTS[GGMLType(type)].block_size:
            raise WriterError(
                f"tensor {name!r}: row length {shape[-1]} does not fit {type_name(type)} blocks"
            )
        if isinstance(data, np.ndarray) and data.dtype != np.uint8:
            data = float_tensor_bytes(name, data, int(type))
        self._tensors[name] = PendingTensor(
            name, shape, int(type), tensor_nbytes(type, shape), data
        )

    def write(self) -> int:
        if len(self._vocab) != self.hparams.n_vocab:
            raise WriterError(
                f"the vocab has {len(self._vocab)} entries but n_vocab is {self.hparams.n_vocab}"
            )
        h = self.hparams
        head = struct.pack("<I", MAGICS[self.kind])
        if self.kind != "ggml":  # unversioned files have no version field
            head += struct.pack("<I", self.version)
        head += struct.pack(
            "<7I", h.n_vocab, h.n_embd, h.n_mult, h.n_head, h.n_layer, h.n_rot, h.ftype
        )
        vocab = []
        for text, score in self._vocab:
            vocab.append(struct.pack("<I", len(text)) + text)
            if self.kind != "ggml":  # unversioned files carry no scores
                vocab.append(struct.pack("<f", score))
        total = sum(t.nbytes for t in self._tensors.values())
        with atomic_write(self.path) as f:
            f.write(head + b"".join(vocab))
            done = 0
            for t in self._tensors.values():
                ne = t.shape[::-1]
                name = t.name.encode("utf-8")
                f.write(struct.pack(f"<3I{len(ne)}I", len(ne), len(name), t.type, *ne) + name)
                if self.kind == "ggjt":  # data starts at a multiple of 32 of the absolute offset
                    f.write(b"\0" * (-f.tell() % 32))
                done = write_tensor_data(f, t, done, total, self.progress)
            size = f.tell()
        return size
