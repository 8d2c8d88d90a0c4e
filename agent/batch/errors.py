"""The batch package's errors, under the project's ``AgentError``."""

from __future__ import annotations

from agent.errors import AgentError


class BatchError(AgentError):
    """A batch cannot run: unreadable input, an output file in use or not ours, no engine."""


class EngineStartError(BatchError):
    """A worker or Ray actor could not open its engine (model path, script, factory)."""
