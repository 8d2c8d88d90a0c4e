"""Grammar nodes -> flat rules -> a byte automaton built lazily, one state per distinct parse
situation.

The parser is a pushdown recognizer in the style of llama.cpp's GBNF sampler: a *stack* is a tuple
of element positions still to match (top last); a *state* is the set of stacks the bytes so far
allow. Unlike a GBNF sampler, states are interned and each state's 256 byte transitions are computed
once and stored in a numpy table, so the same parse situation never costs twice, and token masks
(``matcher.py``) can walk all vocabulary tokens through the table at once.

State 0 is the dead state (no stack survives); its row maps every byte back to 0.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from agent.llm.grammar.errors import GrammarError
from agent.llm.grammar.nodes import Alt, Bytes, Lit, Node, Ref, Rep, Seq

END, TERM, REF = 0, 1, 2
DEAD = 0
_MAX_CLOSURE = 200_000  # stacks visited while closing one state: guards against left recursion
_MAX_DEPTH = 2_000  # parse stack depth: deeper means unbounded (left) recursion


class Program:
    """Rules flattened into one element array: each alternative is a run of elements ended by
    END."""

    def __init__(self, root: Node, rules: Mapping[str, Node] | None = None):
        self.kind: list[int] = []
        self.val: list[int] = []
        self.rules: list[list[int]] = []  # rule id -> start positions of its alternatives
        self._named: dict[str, int] = {}
        self._defs = dict(rules or {})
        self._memo: dict[Node, int] = {}
        self._pending: list[tuple[int, str]] = []
        self.root = self._rule_for(root)
        for name in self._defs:  # compile named rules that are referenced only indirectly
            self._named_rule(name)
        while self._pending:  # named rules are compiled from a work list: nesting costs no stack
            rid, name = self._pending.pop()
            node = self._defs[name]
            for a in node.items if isinstance(node, Alt) else (node,):
                self._add_alternative(rid, a)

    # -- compilation -----------------------------------------------------------------------------
    def _new_rule(self) -> int:
        self.rules.append([])
        return len(self.rules) - 1

    def _named_rule(self, name: str) -> int:
        if name in self._named:
            return self._named[name]
        if name not in self._defs:
            raise GrammarError(
                f"grammar refers to rule {name!r}, which is not defined; "
                f"defined rules: {sorted(self._defs)}"
            )
        rid = self._named[name] = self._new_rule()
        self._pending.append((rid, name))
        return rid

    def _rule_for(self, node: Node) -> int:
        if isinstance(node, Ref):
            return self._named_rule(node.name)
        memo = self._memo.get(node)
        if memo is not None:
            return memo
        rid = self._new_rule()
        self._memo[node] = rid
        if isinstance(node, Alt):
            for a in node.items:
                self._add_alternative(rid, a)
        elif isinstance(node, Rep):
            self._compile_repeat(rid, node)
        else:
            self._add_alternative(rid, node)
        return rid

    def _compile_repeat(self, rid: int, node: Rep) -> None:
        item, lo, hi = node.item, node.lo, node.hi
        if hi is None:  # star ::= "" | item star   (tail position: the stack does not grow)
            star = self._new_rule()
            self._emit(star, [])
            self._emit_items(star, [item, ("rule", star)])
            tail: list = [("rule", star)]
        else:  # opt_k ::= "" | item opt_{k-1}: a bounded chain, one rule per remaining count
            tail = []
            prev = None
            for _ in range(hi - lo):
                r = self._new_rule()
                self._emit(r, [])
                self._emit_items(r, [item] + ([("rule", prev)] if prev is not None else []))
                prev = r
            if prev is not None:
                tail = [("rule", prev)]
        self._emit_items(rid, [item] * lo + tail)

    def _add_alternative(self, rid: int, node: Node) -> None:
        self._emit_items(rid, [node])

    def _emit_items(self, rid: int, items: list) -> None:
        out: list[tuple[int, int]] = []
        for it in items:
            self._flatten(it, out)
        self._emit(rid, out)

    def _emit(self, rid: int, elems: list[tuple[int, int]]) -> None:
        self.rules[rid].append(len(self.kind))
        for k, v in elems:
            self.kind.append(k)
            self.val.append(v)
        self.kind.append(END)
        self.val.append(0)

    def _flatten(self, node, out: list[tuple[int, int]]) -> None:
        if isinstance(node, tuple):  # ("rule", id) placeholders from repeat compilation
            out.append((REF, node[1]))
        elif isinstance(node, Lit):
            out.extend((TERM, 1 << b) for b in node.data)
        elif isinstance(node, Bytes):
            if node.mask == 0:
                raise GrammarError(
                    "a byte set in the grammar is empty; nothing could ever match it"
                )
            out.append((TERM, node.mask))
        elif isinstance(node, Seq):
            for it in node.items:
                self._flatten(it, out)
        else:
            out.append((REF, self._rule_for(node)))


_BITS: dict[int, np.ndarray] = {}


def _bits(mask: int) -> np.ndarray:
    """bool [256] of a 256-bit byte mask."""
    bits = _BITS.get(mask)
    if bits is None:
        raw = np.frombuffer(mask.to_bytes(32, "little"), dtype=np.uint8)
        bits = _BITS[mask] = np.unpackbits(raw, bitorder="little").astype(bool)
    return bits


def _disjoint(masks: Mapping[int, object]) -> bool:
    seen = 0
    for m in masks:
        if seen & m:
            return False
        seen |= m
    return True


class _Closure(NamedTuple):
    """What one position reaches without reading a byte, as stacks of its own frame."""

    stacks: tuple[tuple[int, ...], ...]  # terminal on top
    returns: bool  # the frame can finish (pop) without a byte
    depth: int  # the longest of ``stacks``


class Automaton:
    """Lazily determinized byte automaton of a ``Program`` (thread-safe)."""

    def __init__(self, program: Program):
        self.p = program
        self._lock = threading.RLock()
        self.states: list[frozenset[tuple[int, ...]]] = [frozenset()]
        self._ids: dict[frozenset[tuple[int, ...]], int] = {frozenset(): DEAD}
        self.accepting: list[bool] = [False]
        self.table = np.zeros((64, 256), dtype=np.int32)
        self.expanded = np.zeros(64, dtype=bool)
        self.expanded[DEAD] = True
        self._closure_memo: dict[int, _Closure] = {}
        starts = self.p.rules[self.p.root]
        self.start = self._intern(frozenset().union(*(self._close((s,)) for s in starts)))

    # -- stacks ----------------------------------------------------------------------------------
    def _close(self, stack: tuple[int, ...]) -> frozenset[tuple[int, ...]]:
        """Every stack reachable from ``stack`` without reading a byte, with a terminal (or
        nothing) on top.

        Moves without a byte touch only the top frame until it returns, so the closure is the
        top position's own closure (memoized per position: a program has few) under the rest of
        the stack, plus the closure of the rest wherever the top frame can return.
        """
        out: set[tuple[int, ...]] = set()
        rest = stack
        while rest:
            top = self._close_position(rest[-1])
            rest = rest[:-1]
            if len(rest) + top.depth > _MAX_DEPTH:
                raise self._too_deep()
            out.update(rest + s for s in top.stacks)
            if not top.returns:
                return frozenset(out)
        out.add(())
        return frozenset(out)

    def _close_position(self, pos: int) -> _Closure:
        memo = self._closure_memo.get(pos)
        if memo is not None:
            return memo
        kind, val, rules = self.p.kind, self.p.val, self.p.rules
        stacks: set[tuple[int, ...]] = set()
        returns = False
        seen: set[tuple[int, ...]] = set()
        todo: list[tuple[int, ...]] = [(pos,)]
        while todo:
            st = todo.pop()
            if st in seen:
                continue
            seen.add(st)
            if len(seen) > _MAX_CLOSURE or len(st) > _MAX_DEPTH:
                raise self._too_deep()
            if not st:
                returns = True
                continue
            top = st[-1]
            k = kind[top]
            if k == TERM:
                stacks.add(st)
            elif k == END:
                todo.append(st[:-1])
            else:
                rest = st[:-1] if kind[top + 1] == END else st[:-1] + (top + 1,)  # tail call
                for start in rules[val[top]]:
                    todo.append(rest + (start,))
        memo = self._closure_memo[pos] = _Closure(
            tuple(stacks), returns, max((len(s) for s in stacks), default=0)
        )
        return memo

    @staticmethod
    def _too_deep() -> GrammarError:
        return GrammarError(
            "the grammar is left-recursive or far too ambiguous: a single "
            f"state expands to more than {_MAX_CLOSURE} parse stacks or nests "
            f"rules more than {_MAX_DEPTH} deep without reading a byte"
        )

    def _intern(self, stacks: frozenset[tuple[int, ...]]) -> int:
        sid = self._ids.get(stacks)
        if sid is not None:
            return sid
        sid = len(self.states)
        self.states.append(stacks)
        self._ids[stacks] = sid
        self.accepting.append(() in stacks)
        if sid >= len(self.table):
            grow = len(self.table)
            self.table = np.concatenate([self.table, np.zeros((grow, 256), np.int32)])
            self.expanded = np.concatenate([self.expanded, np.zeros(grow, bool)])
        return sid

    # -- transitions -----------------------------------------------------------------------------
    def expand(self, sid: int) -> None:
        """Fill row ``sid`` of the transition table (all 256 bytes at once)."""
        with self._lock:
            if self.expanded[sid]:
                return
            val = self.p.val
            by_mask: dict[int, set[tuple[int, ...]]] = {}
            for st in self.states[sid]:
                if not st:
                    continue
                pos = st[-1]
                nxt = self._close(st[:-1] + (pos + 1,))
                by_mask.setdefault(val[pos], set()).update(nxt)
            groups = list(by_mask.items())
            row = np.zeros(256, dtype=np.int32)
            if _disjoint(by_mask):  # the usual case: each byte class leads to its own state
                for m, stacks in groups:
                    row[_bits(m)] = self._intern(frozenset(stacks))
            elif len(groups) <= 62:  # partition the bytes by which groups accept them, vectorized
                codes = np.zeros(256, dtype=np.int64)
                for i, (m, _) in enumerate(groups):
                    codes |= _bits(m).astype(np.int64) << i
                for code in np.unique(codes[codes != 0]):
                    members = [groups[i][1] for i in range(len(groups)) if int(code) >> i & 1]
                    row[codes == code] = self._intern(frozenset().union(*members))
            else:
                by_key: dict[tuple[int, ...], int] = {}
                for b in range(256):
                    key = tuple(i for i, (m, _) in enumerate(groups) if m >> b & 1)
                    if key:
                        if key not in by_key:
                            by_key[key] = self._intern(
                                frozenset().union(*(groups[i][1] for i in key))
                            )
                        row[b] = by_key[key]
            self.table[sid] = row
            self.expanded[sid] = True

    def step(self, sid: int, byte: int) -> int:
        if not self.expanded[sid]:
            self.expand(sid)
        return int(self.table[sid, byte])

    def run(self, sid: int, data: bytes) -> int:
        for b in data:
            sid = self.step(sid, b)
            if sid == DEAD:
                return DEAD
        return sid

    def is_final(self, sid: int) -> bool:
        """Accepting with nothing more allowed: only the empty stack is left."""
        return self.states[sid] == frozenset({()})
