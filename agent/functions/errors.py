"""Errors of the function-calling backend.

``CallError`` is the ``FunctionCallError`` this package raises: same ``kind`` and message, plus the
details an app (or a retry prompt) needs — every schema violation with its JSON path, the closest
registered names, the model output that failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.errors import AgentError, FunctionCallError

KINDS = ("no_call", "invalid_syntax", "unknown_function", "invalid_params", "handler_error")


class CallError(FunctionCallError):
    """A ``FunctionCallError`` with details.

    ``errors``: ``(json_path, message)`` per schema violation (``invalid_params``); paths are
    JSONPath into ``params`` (``$`` is the params object itself).
    ``suggestions``: registered names close to an unknown one (``unknown_function``).
    ``function``: the function concerned, when known. ``raw``: the model output, when known.
    ``attempts``: ``(output, error)`` per attempt when ``select_function`` gave up.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        errors: Sequence[tuple[str, str]] = (),
        suggestions: Sequence[str] = (),
        function: str | None = None,
        raw: str | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"unknown FunctionCallError kind {kind!r}; expected one of {KINDS}")
        super().__init__(kind, message)
        self.errors: list[tuple[str, str]] = list(errors)
        self.suggestions: list[str] = list(suggestions)
        self.function = function
        self.raw = raw
        self.attempts: list[tuple[str, FunctionCallError]] = []

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for ``--json`` output and HTTP error bodies)."""
        out: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.function is not None:
            out["function"] = self.function
        if self.errors:
            out["errors"] = [{"path": p, "message": m} for p, m in self.errors]
        if self.suggestions:
            out["suggestions"] = list(self.suggestions)
        if self.attempts:
            out["attempts"] = [{"output": o, "error": str(e)} for o, e in self.attempts]
        return out


class FunctionDefinitionError(AgentError):
    """A function definition (name, JSON Schema, type hints, definitions file) is unusable."""


class ConstrainedDecodingUnavailable(AgentError):
    """``constrained=True`` was asked for but the grammar builder is not installed."""


def invalid_params(name: str, errors: list[tuple[str, str]], raw: str | None = None) -> CallError:
    listing = "; ".join(f"{path}: {msg}" for path, msg in errors)
    return CallError(
        "invalid_params",
        f"the params for {name!r} do not match its schema ({len(errors)} problem"
        f"{'s' if len(errors) != 1 else ''}): {listing}",
        errors=errors,
        function=name,
        raw=raw,
    )
