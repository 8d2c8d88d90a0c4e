"""Helpers for tests of apps built on the runtime.

The pytest plugin (``agent.testing.plugin``, active once the package is installed) records the
model's and the tools' answers to a cassette once and replays them in CI:

    @pytest.mark.agent_cassette
    def test_answer(agent_cassette):
        model = agent_cassette.model(lambda: load_model("model.gguf"))  # loaded only to record
        result = ask(model, "Who won?", agent_cassette.tools(my_tools))

A whole run recorded by ``agent ask --record`` replays with ``replay_cassette``:

    from agent.testing import replay_cassette
    result = replay_cassette("examples/nobel-prize.cassette.json")   # no model, no network
    assert result.ok and "Glück" in result.answer

Names are imported on first use, so loading the plugin (every pytest run) stays cheap.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.planner.executor import RunResult

__all__ = [
    "replay_cassette",
    "ScriptedModel",
    "Cassette",
    "CassetteModel",
    "CassetteTool",
    "CassetteMissError",
    "Filters",
    "RECORD_MODES",
]

_LAZY = {
    "ScriptedModel": "agent.llm.scripted",
    "Cassette": "agent.testing.recorder",
    "CassetteMissError": "agent.testing.recorder",
    "RECORD_MODES": "agent.testing.recorder",
    "CassetteModel": "agent.testing.wrappers",
    "CassetteTool": "agent.testing.wrappers",
    "Filters": "agent.testing.filters",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def replay_cassette(path: str | Path, *, check_answer: bool = True) -> RunResult:
    """Replay a recorded run deterministically; raises ``CassetteDivergenceError`` on any drift."""
    from agent.planner.cassette import replay

    return replay(path, check_answer=check_answer)
