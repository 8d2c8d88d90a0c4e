"""Errors of the grammar engine and of the grammar builders."""

from __future__ import annotations

from agent.errors import AgentError

SHOWN_PROBLEMS = 5  # an error message lists at most this many problems (``problems`` has more)


class GrammarError(AgentError):
    """A grammar is malformed, or generation reached a point no token of the vocabulary can
    continue."""


class SchemaUnsupportedError(GrammarError):
    """A JSON Schema uses keywords the grammar cannot enforce; ``problems`` lists each one with
    its path."""

    def __init__(self, problems: list[str], total: int | None = None):
        self.problems = list(problems)
        total = max(len(self.problems), total or 0)
        shown = "; ".join(self.problems[:SHOWN_PROBLEMS])
        more = total - min(len(self.problems), SHOWN_PROBLEMS)
        super().__init__(
            "the JSON Schema cannot be turned into a grammar: "
            + shown
            + (f"; and {more} more problem(s)" if more > 0 else "")
            + ". Remove or simplify these keywords (or validate them after generation instead)"
        )


class SchemaTooLargeError(SchemaUnsupportedError):
    """The schema is too large to compile: past the per-schema work or time budget, or a bomb
    (references that expand beyond the limit); ``path`` names the part of the schema."""

    def __init__(self, path: str, detail: str):
        self.path = path
        GrammarError.__init__(self, f"the JSON Schema is too large to compile at {path}: {detail}")
        self.problems = [f"{path}: too large to compile"]
