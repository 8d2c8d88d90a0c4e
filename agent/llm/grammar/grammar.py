"""``Grammar``: what ``model.generate(..., grammar=g)`` takes.

A grammar is compiled once (its automaton grows lazily and is shared by every generation and every
vocabulary); mask caches are kept per vocabulary. ``g.matcher(model)`` returns a fresh
``GrammarMatcher`` per generation.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import Any

from agent.llm.grammar.automaton import DEAD, Automaton, Program
from agent.llm.grammar.matcher import GrammarMatcher, MaskCache
from agent.llm.grammar.nodes import Node
from agent.llm.grammar.tokens import TokenTable, token_table


class Grammar:
    # Schema keywords the grammar could not express; the caller validates the output for them.
    unenforced: tuple[str, ...] = ()

    def __init__(
        self, root: Node, rules: Mapping[str, Node] | None = None, *, name: str = "grammar"
    ):
        self.name = name
        self.automaton = Automaton(Program(root, rules))
        self._caches: weakref.WeakKeyDictionary[TokenTable, MaskCache] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Grammar {self.name}: {len(self.automaton.states)} states built>"

    def mask_cache(self, model: Any) -> MaskCache:
        table = token_table(model)
        with self._lock:
            cache = self._caches.get(table)
            if cache is None:
                cache = self._caches[table] = MaskCache(self.automaton, table)
            return cache

    def matcher(self, model: Any) -> GrammarMatcher:
        """A matcher for one generation; ``model`` is a model, a ``Vocab`` or a ``TokenTable``."""
        return GrammarMatcher(self.mask_cache(model))

    # -- text-level checks (tests, validation of unconstrained output) -----------------------------
    def _run(self, text: str | bytes) -> int:
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        return self.automaton.run(self.automaton.start, data)

    def accepts(self, text: str | bytes) -> bool:
        """True if ``text`` is a complete sentence of the grammar."""
        sid = self._run(text)
        return sid != DEAD and self.automaton.accepting[sid]

    def accepts_prefix(self, text: str | bytes) -> bool:
        """True if ``text`` can still be continued (or is) a sentence of the grammar."""
        return self._run(text) != DEAD

    def sample(self, model: Any, seed: int | None = None, max_tokens: int = 100_000) -> str:
        """A random sentence: uniformly chosen allowed tokens until the grammar completes (tests,
        bench).

        EOS is taken only when nothing else is allowed, so samples explore the whole grammar.
        """
        import numpy as np

        rng = np.random.default_rng(seed)
        m = self.matcher(model)
        eos = m._cache.table.eos_id
        for _ in range(max_tokens):
            if m.is_complete():
                break
            mask = m.allowed_mask()
            mask[eos] = False
            ids = np.nonzero(mask)[0]
            if not len(ids):
                break
            if m.can_end() and rng.random() < 0.05:
                break
            m.accept(int(rng.choice(ids)))
        return bytes(m.text).decode("utf-8")
