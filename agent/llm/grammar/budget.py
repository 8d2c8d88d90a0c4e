"""Token budgets: a grammar whose text must be complete within N tokens, at any temperature.

A bounded grammar (at most so many steps of so many characters) still lets a rambling model run
past the end of its context and leave the text cut. ``within_budget(grammar, n)`` closes it in
time: every automaton state knows the fewest bytes that complete a sentence from it (its
*distance*), and a token is allowed only if the distance of the state it leads to fits in the
tokens left after it. A token is at least one byte and the vocabulary has a token for every byte
(Llama's ``<0xXX>``), so the shortest completion always fits: the invariant "distance <= tokens
left" holds from the first token to the last, and the text is complete when the budget runs out.
While the budget is loose nothing is masked; near its end only the paths that still fit remain
(for a plan: finish the input, then ``Answer:``).

Distances come from the grammar's rules: the fewest bytes each alternative needs from each of its
positions (a fixpoint over the rules), summed over the frames of a parse stack, minimum over the
stacks of a state.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np

from agent.llm.grammar.automaton import DEAD, END, TERM, Automaton, Program
from agent.llm.grammar.grammar import Grammar
from agent.llm.grammar.matcher import GrammarMatcher, MaskCache, token_destinations

INF = 1 << 30


def _upper_bound(p: Program, rest: list[int]) -> int:
    """The largest distance any state can have (INF for recursive grammars): while more tokens
    than that are left, no token can break the budget and nothing needs checking."""
    rule_up = [-1] * len(p.rules)  # -1: not known yet (met again before it is known: a cycle)
    for r in _post_order(p):
        best = 0
        for s in p.rules[r]:
            pos = s
            while p.kind[pos] != END:
                if p.kind[pos] == TERM:
                    up = rest[pos]
                else:
                    inner = rule_up[p.val[pos]]
                    up = INF if inner < 0 else min(INF, rest[pos + 1] + inner)
                best = max(best, up)
                pos += 1
        rule_up[r] = best
    return rule_up[p.root]


def _rest_lengths(p: Program) -> list[int]:
    """Fewest bytes to finish each element's alternative from that element (END: 0)."""
    n_rules = len(p.rules)
    rule_min = [INF] * n_rules
    rest = [0] * len(p.kind)
    ends: dict[int, int] = {}
    for starts in p.rules:
        for s in starts:
            e = s
            while p.kind[e] != END:
                e += 1
            ends[s] = e
    order = _post_order(p)
    changed = True
    while changed:  # referenced rules come first in ``order``: cycles need a few more passes
        changed = False
        for r in order:
            best = INF
            for s in p.rules[r]:
                acc = 0
                for pos in range(ends[s] - 1, s - 1, -1):
                    step = 1 if p.kind[pos] == TERM else rule_min[p.val[pos]]
                    acc = min(INF, acc + step)
                    rest[pos] = acc
                best = min(best, acc)
            if best < rule_min[r]:
                rule_min[r] = best
                changed = True
    return rest


def _post_order(p: Program) -> list[int]:
    """Rules in depth-first post-order from the root (iterative: rule chains nest deeply)."""
    seen = [False] * len(p.rules)
    order: list[int] = []
    roots = [p.root] + list(range(len(p.rules)))
    for root in roots:
        if seen[root]:
            continue
        seen[root] = True
        stack = [(root, iter(_children(p, root)))]
        while stack:
            rule, children = stack[-1]
            for child in children:
                if not seen[child]:
                    seen[child] = True
                    stack.append((child, iter(_children(p, child))))
                    break
            else:
                stack.pop()
                order.append(rule)
    return order


def _children(p: Program, rule: int) -> list[int]:
    out = []
    for s in p.rules[rule]:
        pos = s
        while p.kind[pos] != END:
            if p.kind[pos] != TERM:
                out.append(p.val[pos])
            pos += 1
    return out


class Distances:
    """Fewest bytes from each state of one automaton to a complete sentence."""

    def __init__(self, automaton: Automaton):
        self.auto = automaton
        self.rest = _rest_lengths(automaton.p)
        self.upper = _upper_bound(automaton.p, self.rest)
        self._of: dict[int, int] = {DEAD: INF}
        self._lock = threading.Lock()

    def of(self, sid: int) -> int:
        d = self._of.get(sid)
        if d is None:
            rest = self.rest
            d = min((sum(rest[p] for p in st) for st in self.auto.states[sid]), default=INF)
            with self._lock:
                self._of[sid] = min(d, INF)
        return d

    def of_many(self, sids: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(sids, return_inverse=True)
        return np.array([self.of(int(s)) for s in uniq], dtype=np.int64)[inverse]


_DISTANCES: weakref.WeakKeyDictionary[Automaton, Distances] = weakref.WeakKeyDictionary()
_DIST_LOCK = threading.Lock()


def distances(grammar: Grammar) -> Distances:
    """The (cached) distances of ``grammar``'s automaton."""
    with _DIST_LOCK:
        d = _DISTANCES.get(grammar.automaton)
        if d is None:
            d = _DISTANCES[grammar.automaton] = Distances(grammar.automaton)
        return d


def context_left(model: Any) -> int | None:
    """Tokens ``model`` can still add to its context (None when it does not say)."""
    n_ctx, tokens = getattr(model, "n_ctx", None), getattr(model, "tokens", None)
    if isinstance(n_ctx, int) and isinstance(tokens, (list, tuple)):
        return max(0, n_ctx - len(tokens))
    return None


class BudgetMatcher:
    """A ``GrammarMatcher`` that also keeps the text completable within the tokens left.

    Without ``max_tokens`` the budget is the context the model has left when the first token is
    chosen (the prompt is in its KV cache by then); with it, the smaller of the two.
    """

    def __init__(
        self,
        cache: MaskCache,
        dist: Distances,
        max_tokens: int | None,
        model: Any = None,
        cache_size: int = 64,
    ):
        self.inner = GrammarMatcher(cache)
        self._cache = cache
        self._dist = dist
        self._model = model
        self._max_tokens = max_tokens
        self.left: int | None = None  # tokens that may still be generated, the next included
        self.narrowed = 0  # tokens chosen under a mask the budget narrowed (for tests, stats)
        self._dest: OrderedDict[int, np.ndarray] = OrderedDict()
        self._dest_size = cache_size

    @property
    def text(self) -> bytearray:
        return self.inner.text

    @property
    def state(self) -> int:
        return self.inner.state

    def _start(self) -> int:
        caps = [c for c in (self._max_tokens, context_left(self._model)) if c is not None]
        return min(caps) if caps else INF

    def allowed_mask(self) -> np.ndarray:
        mask = self.inner.allowed_mask()
        if self.left is None:
            self.left = self._start()
        table = self._cache.table
        eos = table.eos_id
        ends = bool(0 <= eos < table.n_vocab and mask[eos])
        if self.left - 1 >= self._dist.upper:  # loose: whatever comes next, the rest fits
            return mask
        if self.left <= 0:  # nothing more may be written: end if the grammar allows it
            only = np.zeros_like(mask)
            if ends:
                only[eos] = True
            return only if ends else mask
        dest = self._destination_distances(self.inner.state)
        fits = mask & (dest <= self.left - 1)
        if ends:
            fits[eos] = True
        if not fits.any():  # the vocabulary lacks a byte the shortest path needs: come closest
            best = dest[mask].min()
            fits = mask & (dest == best)
        if int(fits.sum()) < int(mask.sum()):
            self.narrowed += 1
        return fits

    def accept(self, token_id: int) -> None:
        self.inner.accept(token_id)
        if self.left is None:
            self.left = self._start()
        self.left -= 1

    def accept_bytes(self, data: bytes) -> bool:
        return self.inner.accept_bytes(data)

    def is_complete(self) -> bool:
        return self.inner.is_complete()

    def can_end(self) -> bool:
        return self.inner.can_end()

    def _destination_distances(self, sid: int) -> np.ndarray:
        """int64 [n_vocab]: the distance of the state each token leads to (INF: not allowed)."""
        got = self._dest.get(sid)
        if got is not None:
            self._dest.move_to_end(sid)
            return got
        t = self._cache.table
        cur = token_destinations(self._cache.auto, t, sid)
        out = np.full(t.n_vocab, INF, dtype=np.int64)
        out[t.order] = self._dist.of_many(cur)
        self._dest[sid] = out
        if len(self._dest) > self._dest_size:
            self._dest.popitem(last=False)
        return out


class BudgetGrammar:
    """``grammar`` constrained to finish within the tokens the generation may use.

    Pass it as ``model.generate(..., grammar=...)`` like the grammar itself. The budget is the
    context the model has left after the prompt, and at most ``max_tokens`` when given (give the
    generation's own ``max_tokens`` here too: a matcher cannot see it).
    """

    def __init__(self, grammar: Grammar, max_tokens: int | None = None):
        if max_tokens is not None and max_tokens < 0:
            raise ValueError(f"max_tokens must be at least 0, got {max_tokens}")
        self.grammar = grammar
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        limit = "the context left" if max_tokens is None else f"{max_tokens} tokens"
        self.name = f"{grammar.name} within {limit}"

    def __repr__(self) -> str:
        return f"<BudgetGrammar {self.name}>"

    def min_tokens(self) -> int:
        """The fewest tokens a complete sentence can take in the worst case (one per byte)."""
        return distances(self.grammar).of(self.grammar.automaton.start)

    def fits(self) -> bool:
        return self.max_tokens is None or self.min_tokens() <= self.max_tokens

    def matcher(self, model: Any) -> BudgetMatcher:
        return BudgetMatcher(
            self.grammar.mask_cache(model), distances(self.grammar), self.max_tokens, model
        )

    def __getattr__(self, name: str) -> Any:  # automaton, mask_cache, sample... of the grammar
        if name == "grammar":
            raise AttributeError(name)
        return getattr(self.grammar, name)

    def accepts(self, text: str | bytes) -> bool:
        return self.grammar.accepts(text)

    def accepts_prefix(self, text: str | bytes) -> bool:
        return self.grammar.accepts_prefix(text)


def within_budget(grammar: Grammar | BudgetGrammar, max_tokens: int | None = None) -> BudgetGrammar:
    """``grammar`` that must be complete within the context left and ``max_tokens`` tokens."""
    if isinstance(grammar, BudgetGrammar):  # a new budget for the same grammar, not a nesting
        grammar = grammar.grammar
    return BudgetGrammar(grammar, max_tokens)
