"""Constrained plans end in time: the plan grammar knows the tokens left and closes the plan.

The guarantee is tested three ways: the distances it rests on satisfy the shortest-path equations;
a sampler choosing uniformly among the allowed tokens (the worst-behaved model there is) always
finishes within its budget, where the unbudgeted grammar does not; and the golden tiny model
(random weights) at temperature 1 writes plans that parse with 1024 and 2048 tokens of context.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ContextLengthError
from agent.llm.grammar import Grammar, alt, rep, seq
from agent.llm.grammar.automaton import DEAD
from agent.llm.grammar.budget import BudgetGrammar, distances, within_budget
from agent.llm.grammar.tokens import TokenTable
from agent.planner.card import CARD_TOOLS as TOOLS
from agent.planner.grammar import plan_grammar
from agent.planner.parser import parse_plan
from tests import golden

SMALL = dict(max_steps=3, max_input_chars=12, max_plan_chars=12)
EOS = 0


def byte_vocab() -> TokenTable:
    """Every single byte, some longer pieces the plan grammar likes, and EOS (id 0)."""
    pieces = [b""] + [bytes([b]) for b in range(256)]
    pieces += [b"Plan: ", b"Answer:", b" :evidence", b"DuckDuckGo[", b" the", b"]\n", b"abc"]
    return TokenTable.from_pieces(pieces, EOS)


VOCAB = byte_vocab()


def shortest_completion(grammar: Grammar, text: str) -> int:
    d = distances(grammar)
    return d.of(grammar.automaton.run(grammar.automaton.start, text.encode()))


def test_distance_of_the_start_is_the_shortest_plan():
    g = plan_grammar(["T"], **SMALL)
    shortest = "Plan: a\n:evidence0: = T[a]\nAnswer: :evidence0:"
    assert g.accepts(shortest)
    assert shortest_completion(g, "") == len(shortest)
    assert shortest_completion(g, shortest) == 0
    # inside an input: close it, then the answer line
    assert shortest_completion(g, "Plan: a\n:evidence0: = T[xy") == len("]\nAnswer: :evidence0:")


def _states_along(grammar: Grammar, rng: np.random.Generator, n: int) -> list[int]:
    """States met by random walks through the grammar (bytes chosen among the live ones)."""
    auto = grammar.automaton
    out = []
    for _ in range(n):
        sid = auto.start
        for _ in range(int(rng.integers(0, 120))):
            live = [b for b in range(256) if auto.step(sid, b) != DEAD]
            if not live:
                break
            sid = auto.step(sid, int(rng.choice(live)))
            out.append(sid)
    return out


@pytest.mark.parametrize(
    "grammar",
    [
        plan_grammar(["T", "Kn"], **SMALL),
        Grammar(seq(rep(alt("ab", "c"), 0, 3), alt("x", seq("yy", rep("z", 1, 4))))),
    ],
)
def test_distances_solve_the_shortest_path_equations(grammar):
    """d(s) = 0 when s accepts, else 1 + min over bytes of d(next): the exact fewest bytes."""
    auto, d = grammar.automaton, distances(grammar)
    for sid in _states_along(grammar, np.random.default_rng(0), 40):
        nxt = [d.of(auto.step(sid, b)) for b in range(256) if auto.step(sid, b) != DEAD]
        assert d.of(sid) <= d.upper  # the bound that lets a loose budget skip all checks
        if auto.accepting[sid]:
            assert d.of(sid) == 0
        else:
            assert nxt and d.of(sid) == 1 + min(nxt)


def _random_run(grammar, budget: int, seed: int) -> tuple[str, int, bool]:
    """Uniform choice among allowed tokens, EOS never chosen while anything else is allowed."""
    rng = np.random.default_rng(seed)
    m = grammar.matcher(VOCAB)
    for used in range(budget):
        if m.is_complete():
            return bytes(m.text).decode(errors="replace"), used, True
        mask = m.allowed_mask()
        ids = [i for i in np.nonzero(mask)[0] if i != EOS]
        if not ids:
            return bytes(m.text).decode(errors="replace"), used, bool(mask[EOS])
        m.accept(int(rng.choice(ids)))
    return bytes(m.text).decode(errors="replace"), budget, m.can_end()


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=48, max_value=400), st.integers(0, 10_000))
def test_a_worst_case_sampler_always_finishes_within_the_budget(budget, seed):
    g = plan_grammar(["DuckDuckGo", "K"], **SMALL, max_tokens=budget)
    assert isinstance(g, BudgetGrammar)
    text, used, complete = _random_run(g, budget, seed)
    assert complete and used <= budget
    plan = parse_plan(text, ["DuckDuckGo", "K"])
    assert 1 <= len(plan.steps) <= SMALL["max_steps"]


def test_without_the_budget_the_same_sampler_runs_out():
    """The oracle can fail: the bounded grammar alone is cut by a short budget."""
    g = plan_grammar(["DuckDuckGo", "K"], **SMALL)
    results = [_random_run(g, 60, seed)[2] for seed in range(20)]
    assert not all(results)
    budgeted = within_budget(g, 60)
    assert all(_random_run(budgeted, 60, seed)[2] for seed in range(20))


def test_a_budget_below_the_shortest_plan_is_a_clear_error():
    with pytest.raises(ContextLengthError, match="only 10 are left"):
        plan_grammar(TOOLS, max_tokens=10)
    assert within_budget(plan_grammar(["T"], **SMALL), 0).fits() is False


def test_generate_plan_text_budgets_the_context_left():
    from agent.llm.protocol import count_tokens
    from agent.llm.scripted import ScriptedModel
    from agent.planner.prompt import build_plan_prompt, generate_plan_text

    model = ScriptedModel(["Plan: x\n:evidence0: = A[b]\nAnswer: :evidence0:"], n_ctx=1024)
    generate_plan_text(model, "q?", ["A"], constrained=True, max_tokens=100)
    call = model.calls[0]
    prompt_tokens = count_tokens(model, build_plan_prompt("q?", ["A"])) + 1  # and BOS
    assert call["grammar"].max_tokens == call["max_tokens"] == 1024 - prompt_tokens


@pytest.fixture(scope="module")
def tiny_models():
    from agent.llm import load_model

    path = golden.model_path("tiny-q4_0.gguf")
    return {n: load_model(path, n_ctx=n, threads=1) for n in (1024, 2048)}


def _plans_parse(model, seeds) -> list[int]:
    """Seeds whose constrained plan (the real planner prompt, temperature 1) fails to parse."""
    from agent.errors import PlanError
    from agent.planner.prompt import generate_plan_text

    failed = []
    for seed in seeds:
        text = generate_plan_text(
            model, "Who wrote Hamlet?", TOOLS, temperature=1.0, seed=seed, constrained=True
        )
        try:
            plan = parse_plan(text, TOOLS)
        except PlanError:
            failed.append(seed)
            continue
        assert model.last_stats.stop_reason == "grammar"
        assert all(s.tool in TOOLS for s in plan.steps)
    return failed


def test_the_plan_grammar_alone_knows_the_context_left():
    """No budget given: generate() with plan_grammar(tools) still ends before n_ctx is full."""
    from agent.llm import load_model

    tiny = load_model(golden.model_path("tiny-q4_0.gguf"), n_ctx=160, threads=1)
    g = plan_grammar(TOOLS)
    for seed in range(3):
        text = tiny.complete(
            "USER: make a plan ASSISTANT:", grammar=g, temperature=1.0, seed=seed, max_tokens=999
        )
        assert tiny.last_stats.stop_reason == "grammar", text
        parse_plan(text, TOOLS)


def test_random_model_plans_parse_with_a_short_context(tiny_models):
    assert _plans_parse(tiny_models[1024], range(3)) == []


@pytest.mark.slow
@pytest.mark.parametrize("n_ctx", [1024, 2048])
def test_random_model_writes_20_of_20_plans_that_parse(tiny_models, n_ctx):
    assert _plans_parse(tiny_models[n_ctx], range(20)) == []
