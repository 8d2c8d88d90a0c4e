"""The model that records this example's cassettes.

With ``AGENT_TEST_MODEL=path/to/model.gguf`` the real model records them; without it a scripted
stand-in does (this repository has no model weights). Replaying needs neither: in CI,
``pytest --agent-record-mode=none`` never calls this factory.
"""

from __future__ import annotations

import os

import pytest

from agent.llm.scripted import ScriptedModel

PLAN = """Plan: Read the article about Marie Curie.
:evidence0: = Encyclopedia[Marie Curie]
Plan: Read the article about Linus Pauling.
:evidence1: = Encyclopedia[Linus Pauling]
Plan: Find when Marie Curie won the Chemistry prize.
:evidence2: = KnowledgeModel[When did Marie Curie win in Chemistry, given :evidence0:?]
Plan: Find when Linus Pauling won the Chemistry prize.
:evidence3: = KnowledgeModel[When did Linus Pauling win in Chemistry, given :evidence1:?]
Plan: Compare the two years.
:evidence4: = KnowledgeModel[Who won in Chemistry first, given :evidence2: and :evidence3:?]
Answer: :evidence4:
"""


def scripted_answer(prompt: str) -> str:
    """A stand-in for the model: the plan, short answers, and the function call."""
    if "Here are the tools available" in prompt:
        return PLAN
    if "select the most suitable function" in prompt:
        return '{"function": "weather", "params": {"city": "Oslo"}}'
    instruction = prompt.rsplit("BEGININSTRUCTION", 1)[-1]
    if "first" in instruction:
        return "Marie Curie won the Nobel Prize in Chemistry first, in 1911 (Pauling in 1954)."
    if "Marie Curie" in instruction:
        return "In 1911."
    if "Linus Pauling" in instruction:
        return "In 1954."
    return "I don't know."


@pytest.fixture
def agent_model_factory():
    path = os.environ.get("AGENT_TEST_MODEL")
    if path:
        from agent.llm import load_model

        return lambda: load_model(path)
    return lambda: ScriptedModel(scripted_answer, name="app-test-stand-in")
