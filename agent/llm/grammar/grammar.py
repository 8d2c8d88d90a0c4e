"""``Grammar``: what ``model.generate(..., grammar=g)`` takes.

A grammar is compiled once (its automaton grows lazily and is shared by every generation and every
vocabulary); mask caches are kept per vocabulary. ``g.matcher(model)`` returns a fresh
``GrammarMatcher`` per generation.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Mapping

from agent.llm.grammar.automaton import DEAD, Automaton, Program
from agent.llm.grammar.matcher import GrammarMatcher, MaskCache
from agent.llm.grammar.nodes import Node
from agent.llm.grammar.tokens import TokenTable, token_table


class Grammar:
    def __init__(self, root: Node, rules: Mapping[str, Node] | None = None, *, name: str = "grammar"):
        self.name = name
        self.automaton = Automaton(Program(root, rules))
        self._caches: "weakref.WeakKeyDictionary[TokenTable, MaskCache]" = weakref.WeakKeyDictionary()
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
