"""SentencePiece (SPM) tokenizer of Llama models, with llama.cpp's GGUF-era semantics.

``spm_reference`` is a plain transcription of llama.cpp's ``llm_tokenizer_spm_session``: one symbol
per character, a heap of adjacent pairs that form a vocabulary piece, merged best score first (ties:
leftmost), then each final symbol emitted as its piece or as ``<0xXX>`` byte tokens.

``Tokenizer.encode`` produces exactly the same ids, faster: when the vocabulary has no piece with a
non-space character directly before a ``▁`` (true of Llama's, checked at load), no merge can cross
the start of a word, so the text is cut there and each distinct word is merged once and cached.
A tied score between two words cannot change either word's merges, because merges never span them.
"""

from __future__ import annotations

import codecs
import heapq
import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import ModelFormatError
from agent.llm.formats.modelfile import (
    TOKEN_BYTE,
    TOKEN_CONTROL,
    TOKEN_NORMAL,
    TOKEN_UNKNOWN,
    TOKEN_USER_DEFINED,
    Vocab,
)

SPACE = "\u2581"  # SentencePiece's visible space
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_CACHE_LIMIT = 1 << 16  # distinct words kept; a web page has a few thousand


@dataclass
class _MergeTables:
    """What the merge loop looks up: piece text -> (id, score) for pieces text may merge into."""

    pieces: dict[str, tuple[int, float]]
    byte_ids: list[int | None]  # byte value -> id of its <0xXX> (or single-character) token


def _merge_tables(vocab: Vocab) -> _MergeTables:
    pieces: dict[str, tuple[int, float]] = {}
    byte_ids: list[int | None] = [None] * 256
    for i, (text, score, kind) in enumerate(
        zip(vocab.tokens, vocab.scores.tolist(), vocab.types.tolist(), strict=False)
    ):
        if kind == TOKEN_BYTE:
            m = _BYTE_PIECE.fullmatch(text)
            if m:
                byte_ids[int(m.group(1), 16)] = i
        # llama.cpp looks merges up among all pieces, so "<s>" typed by a user could in principle
        # merge into the control token (with Llama's vocab no merge path reaches one). Such text
        # must stay plain text, as in SentencePiece itself: control, unknown and byte pieces are
        # never merged into.
        if kind in (TOKEN_CONTROL, TOKEN_UNKNOWN, TOKEN_BYTE):
            continue
        pieces[text] = (i, float(score))  # a later duplicate wins, as in llama.cpp's token_to_id
    for b in range(128):  # llama.cpp's fallback when a vocab lacks <0xXX>: the one-character piece
        if byte_ids[b] is None and chr(b) in pieces:
            byte_ids[b] = pieces[chr(b)][0]
    return _MergeTables(pieces, byte_ids)


def _merge(text: str, tables: _MergeTables) -> list[tuple[int, int]]:
    """llama.cpp's SPM merge loop on ``text`` (already escaped); returns the final (start, length)
    symbols."""
    n = len(text)
    if n == 0:
        return []
    pieces = tables.pieces
    prev = list(range(-1, n - 1))
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    size = [1] * n  # characters in each symbol; 0 once merged into its left neighbour
    heap: list[
        tuple[float, int, int, int]
    ] = []  # (-score, left, right, merged size): max score, then leftmost

    def push(left: int, right: int) -> None:
        if left < 0 or right < 0:
            return
        merged = size[left] + size[right]
        hit = pieces.get(
            text[left : left + merged]
        )  # a symbol starts at its index: symbols are contiguous
        if hit is not None:
            heapq.heappush(heap, (-hit[1], left, right, merged))

    for i in range(n - 1):
        push(i, i + 1)
    while heap:
        _, left, right, merged = heapq.heappop(heap)
        # Stale entry: one side was merged away, or grew, since the pair was pushed.
        if size[left] == 0 or size[right] == 0 or size[left] + size[right] != merged:
            continue
        size[left] = merged
        size[right] = 0
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prev[nxt[right]] = left
        push(prev[left], left)
        push(left, nxt[left])

    out = []
    i = 0
    while i >= 0:
        out.append((i, size[i]))
        i = nxt[i]
    return out


def _emit(
    text: str, symbols: Iterable[tuple[int, int]], tables: _MergeTables, unk_id: int, out: list[int]
) -> None:
    """Append each symbol's piece id; a character with no piece falls back to byte tokens (or
    unk)."""
    pieces, byte_ids = tables.pieces, tables.byte_ids
    for start, length in symbols:
        piece = text[start : start + length]
        hit = pieces.get(piece)
        if hit is not None:
            out.append(hit[0])
            continue
        # A merged symbol is always a piece, so this is a single character. (llama.cpp's resegment()
        # would first look the text up in rev_merge, but only texts that are pieces ever enter it.)
        ids = [byte_ids[b] for b in piece.encode("utf-8", "surrogatepass")]
        if all(i is not None for i in ids):
            out.extend(ids)  # type: ignore[arg-type]
        else:
            out.append(unk_id)  # a vocab without byte tokens: SentencePiece's unknown piece


def escape(text: str, add_space_prefix: bool) -> str:
    """The text the merge loop sees: the dummy-prefix space, then every space as U+2581."""
    if add_space_prefix:
        text = " " + text
    return text.replace(" ", SPACE)


def spm_reference(
    vocab: Vocab, text: str, bos: bool = False, *, _tables: _MergeTables | None = None
) -> list[int]:
    """The reference: llama.cpp's algorithm on the whole text at once (slow on long texts)."""
    out = [vocab.bos_id] if bos else []
    if not text:
        return out
    tables = _tables or _merge_tables(vocab)
    escaped = escape(text, vocab.add_space_prefix)
    _emit(escaped, _merge(escaped, tables), tables, vocab.unk_id, out)
    return out


@dataclass(eq=False, repr=False)
class Tokenizer:
    """Text <-> token ids for a Llama SentencePiece vocabulary (GGUF or GGML-era, see ``Vocab``)."""

    vocab: Vocab
    _tables: _MergeTables = field(init=False, repr=False)
    _bytes: list[bytes] = field(init=False, repr=False)
    _word_split: re.Pattern[str] | None = field(init=False, repr=False)
    _cache: dict[str, tuple[int, ...]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        v = self.vocab
        n = len(v)
        if n == 0 or len(v.scores) != n or len(v.types) != n:
            raise ModelFormatError(
                f"the vocabulary is inconsistent: {n} tokens, {len(v.scores)} scores, "
                f"{len(v.types)} types; the model file is corrupt or was converted wrongly"
            )
        for name in ("bos_id", "eos_id", "unk_id"):
            tid = getattr(v, name)
            if not 0 <= tid < n:
                raise ModelFormatError(
                    f"the vocabulary's {name} is {tid}, outside its {n} tokens (0..{n - 1}); "
                    "the model file's tokenizer.ggml.*_token_id metadata is wrong"
                )
        self._tables = _merge_tables(v)
        self._bytes = [self._piece_bytes_uncached(i) for i in range(n)]
        # Words may be merged one by one only if no piece glues a non-space character to a following
        # space; otherwise the whole text goes through the merge loop at once.
        crosses = any(SPACE in p.lstrip(SPACE) for p in self._tables.pieces)
        self._word_split = None if crosses else re.compile(f"(?<=[^{SPACE}])(?={SPACE})")

    def __repr__(self) -> str:
        return f"Tokenizer(n_vocab={self.n_vocab}, bos_id={self.bos_id}, eos_id={self.eos_id})"

    @classmethod
    def from_model_file(cls, path: str | Path) -> Tokenizer:
        """The tokenizer of a GGUF or GGML model file (the file is memory-mapped; no weights are
        read)."""
        from agent.llm.formats.files import open_model_file

        return cls(open_model_file(path).vocab)

    # -- ids and pieces ----------------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        return len(self.vocab)

    @property
    def bos_id(self) -> int:
        return self.vocab.bos_id

    @property
    def eos_id(self) -> int:
        return self.vocab.eos_id

    def _check(self, token_id: int) -> int:
        try:
            i = operator.index(token_id)
        except TypeError:
            raise ValueError(f"token id {token_id!r} is not an integer") from None
        if not 0 <= i < len(self.vocab):
            raise ValueError(
                f"token id {i} is out of range for this vocabulary of {len(self.vocab)} tokens "
                f"(valid ids: 0..{len(self.vocab) - 1}); was it produced with a different model?"
            )
        return i

    def token_text(self, token_id: int) -> str:
        """The piece as the vocabulary stores it: ``▁Hello``, ``<0x0A>``, ``<s>``."""
        return self.vocab.tokens[self._check(token_id)]

    def _piece_bytes_uncached(self, i: int) -> bytes:
        text, kind = self.vocab.tokens[i], int(self.vocab.types[i])
        if kind == TOKEN_NORMAL:
            return text.replace(SPACE, " ").encode("utf-8", "surrogatepass")
        if kind == TOKEN_BYTE:
            m = _BYTE_PIECE.fullmatch(text)
            return bytes([int(m.group(1), 16)]) if m else text.encode("utf-8", "surrogatepass")
        if kind == TOKEN_USER_DEFINED:
            return text.encode("utf-8", "surrogatepass")  # llama.cpp copies these verbatim
        # CONTROL, UNKNOWN, UNUSED (and unknown types): nothing, as llama.cpp without special=true.
        return b""

    def piece_bytes(self, token_id: int) -> bytes:
        """The bytes this token adds to the text (may be part of one UTF-8 character)."""
        return self._bytes[self._check(token_id)]

    # -- encode ------------------------------------------------------------------------------------
    def encode(self, text: str, bos: bool = True) -> list[int]:
        """Token ids of ``text``: BOS if ``bos``, then the SentencePiece ids (dummy-prefix space
        added when the vocabulary asks for it). Control-token text such as ``</s>`` stays plain
        text."""
        if not isinstance(text, str):
            raise TypeError(
                f"encode() takes text (str), not {type(text).__name__}; decode bytes first"
            )
        out = [self.vocab.bos_id] if bos else []
        if not text:
            return out
        escaped = escape(text, self.vocab.add_space_prefix)
        if self._word_split is None:
            _emit(escaped, _merge(escaped, self._tables), self._tables, self.vocab.unk_id, out)
            return out
        cache = self._cache
        for word in self._word_split.split(escaped):
            ids = cache.get(word)
            if ids is None:
                found: list[int] = []
                _emit(word, _merge(word, self._tables), self._tables, self.vocab.unk_id, found)
                ids = tuple(found)
                if len(word) < 256:  # long runs (minified code, base64) rarely repeat
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()
                    cache[word] = ids
            out.extend(ids)
        return out

    def encode_reference(self, text: str, bos: bool = True) -> list[int]:
        """``encode`` by the unsplit reference algorithm (for tests and cross-checks)."""
        return spm_reference(self.vocab, text, bos, _tables=self._tables)

    # -- decode ------------------------------------------------------------------------------------
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` read from the start of a sequence: a leading BOS is skipped and the space
        the dummy prefix put before the first token is removed. Control tokens give no text; invalid
        UTF-8 (a partial character) becomes U+FFFD."""
        checked = [self._check(t) for t in ids]
        if checked and checked[0] == self.vocab.bos_id:
            checked = checked[1:]
        parts = [self._bytes[i] for i in checked]
        if parts and self.vocab.add_space_prefix and parts[0].startswith(b" "):
            parts[0] = parts[0][1:]
        return b"".join(parts).decode("utf-8", errors="replace")

    def stream_decoder(self) -> StreamDecoder:
        """A decoder for generated ids (see ``StreamDecoder``)."""
        return StreamDecoder(self)


class StreamDecoder:
    """Turns generated ids into text as they arrive, holding back the bytes of an unfinished UTF-8
    character. No leading space is stripped: generation continues a prompt, so it is real text."""

    def __init__(self, tokenizer: Tokenizer):
        self._tok = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        """Text completed by this token ('' while a character is still incomplete)."""
        return self._utf8.decode(self._tok.piece_bytes(token_id))

    def flush(self) -> str:
        """Whatever is held back, at the end of generation (an incomplete character becomes
        U+FFFD)."""
        return self._utf8.decode(b"", final=True)

    @property
    def pending(self) -> bool:
        """True while bytes of an unfinished character are held back."""
        return bool(self._utf8.getstate()[0])
