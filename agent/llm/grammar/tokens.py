"""The vocabulary as byte strings, laid out for walking every token through the automaton at once.

The tokens' byte strings form a trie, stored level by level: level j holds the distinct prefixes
of j+1 bytes, each with its last byte and its parent in level j-1. Walking the trie a level at a
time is one numpy gather per level over the distinct prefixes (57,000 nodes for Llama's 32,000
tokens, against 177,000 token bytes), and each token's state is read at the node it ends on.
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
    pieces: list[bytes]  # bytes of every token id (b"" for control/unknown/unused)
    parents: list[np.ndarray]  # per trie level: int32 index of each node's parent one level up
    last_bytes: list[np.ndarray]  # per trie level: the node's last byte (int32)
    starts: list[int]  # where each trie level begins when the levels are concatenated (+ the end)
    ends: np.ndarray  # int32 [n]: the node each token of ``order`` ends on, levels concatenated

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
        levels: list[dict[bytes, int]] = [{} for _ in range(max_len)]
        parents: list[list[int]] = [[] for _ in range(max_len)]
        for i in ids:
            p = pieces[i]
            parent = 0
            for j in range(len(p)):
                nodes = levels[j]
                node = nodes.get(p[: j + 1])
                if node is None:
                    node = nodes[p[: j + 1]] = len(nodes)
                    parents[j].append(parent)
                parent = node
        starts = np.cumsum([0] + [len(nodes) for nodes in levels]).tolist()
        ends = np.array(
            [starts[len(pieces[i]) - 1] + levels[len(pieces[i]) - 1][pieces[i]] for i in ids],
            dtype=np.int32,
        )
        last_bytes = [np.array([k[-1] for k in nodes], dtype=np.int32) for nodes in levels]
        return cls(
            len(pieces),
            int(eos_id),
            ids.astype(np.int64),
            data,
            pieces,
            [np.array(par, dtype=np.int32) for par in parents],
            last_bytes,
            starts,
            ends,
        )

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
