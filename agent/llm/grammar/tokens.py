"""The vocabulary as byte strings, laid out for walking every token through the automaton at once.

Tokens are sorted by byte length, longest first, into a padded matrix: at byte column j the tokens
still being walked are exactly the first ``count[j]`` rows, so each column is one numpy gather.
Control, unknown and unused tokens produce no bytes and are never allowed by a grammar (EOS is
decided by the automaton's accepting flag instead).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_SPACE = "\u2581"
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_TOKEN_NORMAL, _TOKEN_USER_DEFINED, _TOKEN_BYTE = 1, 4, 6


@dataclass(eq=False)
class TokenTable:
    n_vocab: int
    eos_id: int
    order: np.ndarray  # int64 [n]: token ids of the non-empty tokens, longest first
    data: np.ndarray  # uint8 [n, max_len]: their bytes, zero padded
    count: np.ndarray  # int64 [max_len]: tokens longer than j bytes
    pieces: list[bytes]  # bytes of every token id (b"" for control/unknown/unused)

    @classmethod
    def from_pieces(cls, pieces: Sequence[bytes], eos_id: int) -> TokenTable:
        pieces = [bytes(p) for p in pieces]
        lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        ids = np.nonzero(lengths)[0]
        ids = ids[np.argsort(-lengths[ids], kind="stable")]
        max_len = int(lengths.max()) if len(pieces) else 0
        data = np.zeros((len(ids), max(max_len, 1)), dtype=np.uint8)
        for row, i in enumerate(ids):
            p = pieces[i]
            data[row, : len(p)] = np.frombuffer(p, dtype=np.uint8)
        count = np.array([(lengths[ids] > j).sum() for j in range(max_len)], dtype=np.int64)
        return cls(len(pieces), int(eos_id), ids.astype(np.int64), data, count, pieces)

    @classmethod
    def from_vocab(cls, vocab: Any) -> TokenTable:
        """From ``agent.llm.formats.modelfile.Vocab`` (pieces in SentencePiece form)."""
        pieces = []
        for text, stored_kind in zip(vocab.tokens, vocab.types, strict=False):
            kind = int(stored_kind)
            if kind == _TOKEN_NORMAL:
                pieces.append(text.replace(_SPACE, " ").encode("utf-8", "surrogatepass"))
            elif kind == _TOKEN_BYTE:
                m = _BYTE_PIECE.fullmatch(text)
                pieces.append(
                    bytes([int(m.group(1), 16)]) if m else text.encode("utf-8", "surrogatepass")
                )
            elif kind == _TOKEN_USER_DEFINED:
                pieces.append(text.encode("utf-8", "surrogatepass"))
            else:
                pieces.append(b"")
        return cls.from_pieces(pieces, vocab.eos_id)


_TABLES: dict[int, TokenTable] = {}  # by id(vocab); entries leave with their vocabulary


def token_table(model: Any) -> TokenTable:
    """The (cached) token table of a model, a tokenizer, a ``Vocab`` or a ``TokenTable``."""
    if isinstance(model, TokenTable):
        return model
    vocab = getattr(getattr(model, "file", None), "vocab", None)
    if vocab is None:
        vocab = getattr(getattr(model, "tokenizer", None), "vocab", None) or getattr(
            model, "vocab", None
        )
    if vocab is None and hasattr(model, "tokens") and hasattr(model, "types"):
        vocab = model
    if vocab is None:
        raise TypeError(
            f"cannot read a vocabulary from {type(model).__name__}: constrained decoding "
            "needs a model with .file.vocab, a tokenizer, a Vocab or a TokenTable"
        )
    key = id(vocab)
    table = _TABLES.get(key)
    if table is None:
        table = _TABLES[key] = TokenTable.from_vocab(vocab)
        weakref.finalize(vocab, _TABLES.pop, key, None)
    return table
