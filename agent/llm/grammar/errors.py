"""Errors of the grammar engine and of the grammar builders."""

from __future__ import annotations

from agent.errors import AgentError


class GrammarError(AgentError):
    """A grammar is malformed, or generation reached a point no token of the vocabulary can continue."""


class SchemaUnsupportedError(GrammarError):
    """A JSON Schema uses keywords the grammar cannot enforce; ``problems`` lists each one with its path."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(
            "the JSON Schema cannot be turned into a grammar: "
            + "; ".join(self.problems)
            + ". Remove or simplify these keywords (or validate them after generation instead)"
        )
