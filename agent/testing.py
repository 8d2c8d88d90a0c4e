"""Helpers for tests of code built on the runtime.

from agent.testing import replay_cassette
result = replay_cassette("examples/nobel-prize.cassette.json")   # no model, no network
assert result.ok and "Glück" in result.answer
"""

from __future__ import annotations

from pathlib import Path

from agent.llm.scripted import ScriptedModel
from agent.planner.cassette import replay
from agent.planner.executor import RunResult

__all__ = ["replay_cassette", "ScriptedModel"]


def replay_cassette(path: str | Path, *, check_answer: bool = True) -> RunResult:
    """Replay a recorded run deterministically; raises ``CassetteDivergenceError`` on any drift."""
    return replay(path, check_answer=check_answer)
