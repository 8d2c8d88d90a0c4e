"""Token masks: which vocabulary tokens keep the text inside the grammar, memoized per automaton
state.

A mask is computed by walking the vocabulary's trie through the transition table one level at a
time (numpy gathers over all prefixes of a length), expanding automaton states on demand. Masks are
stored bit-packed per state, so a state seen again (the same place in a JSON string, the same plan
field) costs one unpack.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from agent.llm.grammar.automaton import DEAD, Automaton
from agent.llm.grammar.errors import GrammarError
from agent.llm.grammar.tokens import TokenTable


class MaskCache:
    """Masks of one automaton over one vocabulary (LRU-bounded: 4096 masks of a 32000-token
    vocabulary take 16 MB packed)."""

    def __init__(self, automaton: Automaton, table: TokenTable, limit: int = 4096):
        self.auto = automaton
        self.table = table
        self.limit = limit
        self._masks: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0  # masks computed (not served from the cache); for benchmarks

    def mask(self, sid: int) -> np.ndarray:
        """bool [n_vocab]: tokens allowed in state ``sid`` (EOS allowed iff the state accepts)."""
        with self._lock:
            packed = self._masks.get(sid)
            if packed is not None:
                self._masks.move_to_end(sid)
                return np.unpackbits(packed, count=self.table.n_vocab).astype(bool)
        mask = self._compute(sid)
        with self._lock:
            self._masks[sid] = np.packbits(mask)
            if len(self._masks) > self.limit:
                self._masks.popitem(last=False)
            self.computed += 1
        return mask

    def _compute(self, sid: int) -> np.ndarray:
        t = self.table
        cur = token_destinations(self.auto, t, sid)
        mask = np.zeros(t.n_vocab, dtype=bool)
        mask[t.order] = cur != DEAD
        if 0 <= t.eos_id < t.n_vocab:
            mask[t.eos_id] = self.auto.accepting[sid]
        return mask


def token_destinations(auto: Automaton, t: TokenTable, sid: int) -> np.ndarray:
    """int32 [len(t.order)]: the state each non-empty token leads to from ``sid`` (DEAD if none),
    in ``t.order``; walked one trie level at a time (a numpy gather per level)."""
    states = np.zeros(t.starts[-1], dtype=np.int32)  # DEAD past the last level walked
    level = np.full(1, sid, dtype=np.int32)
    for j, (parents, last_bytes) in enumerate(zip(t.parents, t.last_bytes, strict=True)):
        src = level[parents]
        todo = ~auto.expanded[src]
        if todo.any():
            for s in np.unique(src[todo]):
                auto.expand(int(s))
        level = auto.table[src, last_bytes]
        states[t.starts[j] : t.starts[j + 1]] = level
        if not level.any():  # every longer prefix is dead already
            break
    return states[t.ends]


class GrammarMatcher:
    """The engine's ``TokenMatcher``: tracks one generation's position in the grammar."""

    def __init__(self, cache: MaskCache):
        self._cache = cache
        self._auto = cache.auto
        self.state = cache.auto.start
        self.text = bytearray()

    def allowed_mask(self) -> np.ndarray:
        mask = self._cache.mask(self.state)
        if not mask.any():
            raise GrammarError(
                "no token of the vocabulary can continue the constrained text after "
                f"{bytes(self.text)[-60:]!r}; the vocabulary lacks the bytes the grammar needs (it "
                "should have <0xXX> byte tokens)"
            )
        return mask

    def accept(self, token_id: int) -> None:
        piece = self._cache.table.pieces[token_id]
        nxt = self._auto.run(self.state, piece)
        if nxt == DEAD or not piece:
            raise GrammarError(
                f"token {token_id} ({piece!r}) is not allowed by the grammar after "
                f"{bytes(self.text)[-60:]!r}; sample from allowed_mask() only"
            )
        self.state = nxt
        self.text += piece

    def accept_bytes(self, data: bytes) -> bool:
        """Advance over raw text (e.g. a forced prefix); False (state unchanged) if it does not
        fit."""
        nxt = self._auto.run(self.state, data)
        if nxt == DEAD:
            return False
        self.state = nxt
        self.text += data
        return True

    def is_complete(self) -> bool:
        """True when the grammar accepts the text and no token but EOS can follow."""
        if not self._auto.accepting[self.state]:
            return False
        if self._auto.is_final(self.state):
            return True
        mask = self._cache.mask(self.state)
        eos = self._cache.table.eos_id
        return int(mask.sum()) - int(bool(mask[eos])) == 0

    def can_end(self) -> bool:
        return self._auto.accepting[self.state]
