"""The plan grammar: the card's plan fits, broken plans do not, and constrained plans always
parse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import AgentError, PlanError
from agent.planner.card import CARD_PLAN
from agent.planner.card import CARD_TOOLS as TOOLS
from agent.planner.grammar import plan_grammar
from agent.planner.parser import parse_plan
from tests import golden


def test_the_model_cards_plan_is_in_the_language():
    g = plan_grammar(TOOLS)
    assert g.accepts(CARD_PLAN) and g.accepts(" " + CARD_PLAN)


@pytest.mark.parametrize(
    "edit,why",
    [
        (("DuckDuckGo[Nobel", "Google[Nobel"), "unknown tool"),
        ((":evidence1: = KnowledgeModel", ":evidence2: = KnowledgeModel"), "ids out of order"),
        (
            ("Most famous work of :evidence1:", "Most famous work of :evidence4:"),
            "forward reference",
        ),
        (("Answer: :evidence5:", "Answer: :evidence6:"), "answer names no step"),
        (
            ("DuckDuckGo[Nobel Prize in Literature 2020 winner]", "DuckDuckGo[Nobel [Prize]]"),
            "nested brackets",
        ),
        (("Answer: :evidence5:", ""), "no answer"),
        (("winner]\n", "winner]\n\n"), "blank line"),
    ],
)
def test_broken_plans_are_not_in_the_language(edit, why):
    old, new = edit
    assert old in CARD_PLAN
    assert not plan_grammar(TOOLS).accepts(CARD_PLAN.replace(old, new, 1)), why


def test_bounds_make_every_plan_finite():
    g = plan_grammar(["T"], max_steps=2, max_input_chars=3, max_plan_chars=2)
    one = "Plan: ab\n:evidence0: = T[xyz]\n"
    assert g.accepts(one + "Answer: :evidence0:")
    assert not g.accepts("Plan: abc\n:evidence0: = T[x]\nAnswer: :evidence0:")  # plan text too long
    assert not g.accepts("Plan: a\n:evidence0: = T[wxyz]\nAnswer: :evidence0:")  # input too long
    two = one + "Plan: c\n:evidence1: = T[:evidence0:]\n"  # a reference counts as one character
    assert g.accepts(two + "Answer: :evidence1:")
    assert not g.accepts_prefix(two + "Plan:")  # a third step exceeds max_steps


def test_bad_arguments_are_explained():
    with pytest.raises(AgentError, match="at least one tool"):
        plan_grammar([])
    with pytest.raises(AgentError, match="brackets"):
        plan_grammar(["Bad[name]"])
    with pytest.raises(AgentError, match="at least 1"):
        plan_grammar(["T"], max_steps=0)


def test_grammars_are_cached_per_arguments():
    assert plan_grammar(TOOLS) is plan_grammar(list(TOOLS))
    assert plan_grammar(TOOLS, max_steps=3) is not plan_grammar(TOOLS)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="Plan:evidence0123 =[]TK\n?", max_size=60))
def test_whatever_the_grammar_accepts_the_parser_accepts(text):
    g = plan_grammar(["T", "K"], max_steps=3, max_input_chars=10, max_plan_chars=10)
    if g.accepts(text):
        plan = parse_plan(text, ["T", "K"])
        assert plan.steps


@pytest.fixture(scope="module")
def tiny():
    from agent.llm import load_model

    return load_model(golden.model_path("tiny-q4_0.gguf"), n_ctx=2048, threads=1)


SMALL = dict(max_steps=4, max_input_chars=24, max_plan_chars=24)


def test_random_model_plans_always_parse_when_constrained(tiny):
    """Golden tiny model (random weights), temperature 1: every constrained plan parses with its
    tools."""
    g = plan_grammar(TOOLS, **SMALL)
    for seed in range(8):
        text = tiny.complete(
            "USER: make a plan ASSISTANT:", grammar=g, temperature=1.0, seed=seed, max_tokens=1000
        )
        plan = parse_plan(text, TOOLS)
        assert 1 <= len(plan.steps) <= SMALL["max_steps"]
        assert all(step.tool in TOOLS for step in plan.steps)
        assert tiny.last_stats.stop_reason == "grammar"


def test_random_model_plans_fail_without_constraints(tiny):
    failures = 0
    for seed in range(4):
        text = tiny.complete(
            "USER: make a plan ASSISTANT:", temperature=1.0, seed=seed, max_tokens=120
        )
        try:
            parse_plan(text, TOOLS)
        except PlanError:
            failures += 1
    assert failures == 4


def test_generate_plan_text_uses_the_grammar(tiny):
    from agent.planner.prompt import generate_plan_text

    text = generate_plan_text(
        tiny, "Who wrote Hamlet?", TOOLS, temperature=1.0, seed=3, constrained=True, max_tokens=1500
    )
    assert plan_grammar(TOOLS).accepts(text)
    parse_plan(text, TOOLS)
