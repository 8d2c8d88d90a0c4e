"""The project's one exception hierarchy.

Every message says what was wrong, where (file offset, plan line, JSON path) and what to do.
Packages may subclass these, but never raise bare exceptions across the public API.
"""

from __future__ import annotations


class AgentError(Exception):
    """Root of every error this project raises on purpose."""


class ModelFormatError(AgentError):
    """A model file (GGML/GGUF) is malformed, truncated or of an unsupported kind."""


class PlanError(AgentError):
    """A reWOO plan could not be parsed or validated.

    ``problems`` lists every problem found (see ``agent.planner``), not just the first; ``steps``
    holds the steps that did parse, so a tool can show what was understood.
    """

    def __init__(self, message: str, problems: list | None = None, steps: list | None = None):
        super().__init__(message)
        self.problems = list(problems or [])
        self.steps = list(steps or [])


class ToolError(AgentError):
    """A tool could not produce its output (network, refused URL, bad input...)."""


class FunctionCallError(AgentError):
    """A model's function call could not be found, parsed, validated or dispatched.

    ``kind`` is one of: no_call, invalid_syntax, unknown_function, invalid_params, handler_error.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class ContextLengthError(AgentError, ValueError):
    """A prompt (plus the tokens to generate) does not fit the model's context window."""
