"""select_function: prompt, generate, parse, and retry with the error as a correction turn."""

from __future__ import annotations

import pytest

from agent.errors import AgentError
from agent.functions import FunctionCallError, select_function, selection
from agent.llm.prompts import SYSTEM_PROMPT
from agent.llm.scripted import ScriptedModel

INPUT = "I want to know how many times 'Python' is mentioned in my text file."
GOOD = (
    ' {"function": "file_analytics", '
    '"params": {"action": "count_occurrences", "filters": {"keyword": "Python"}}}'
)
GOOD_YAML = (
    " function: file_analytics\nparams:\n  action: count_occurrences\n  filters:\n"
    "    keyword: Python"
)


def test_right_first_time(card_registry):
    model = ScriptedModel([GOOD])
    call = select_function(model, INPUT, card_registry, temperature=0.0, seed=7, max_tokens=300)
    assert call.name == "file_analytics" and call.params["filters"] == {"keyword": "Python"}
    assert call.attempts == 1
    assert model.prompts == [card_registry.prompt(INPUT)]
    kw = model.calls[0]
    assert (kw["temperature"], kw["seed"], kw["max_tokens"]) == (0.0, 7, 300)
    assert "USER:" in kw["stop"] and "grammar" not in kw


def test_yaml_format(card_registry):
    model = ScriptedModel([GOOD_YAML])
    call = select_function(model, INPUT, card_registry, format="yaml")
    assert call.format == "yaml" and call.params["action"] == "count_occurrences"
    assert "Provide your response in YAML format." in model.prompts[0]


def test_wrong_first_right_second_shows_the_error_to_the_model(card_registry):
    bad = ' {"function": "file_analytic", "params": {}}'
    seen = []
    model = ScriptedModel([bad, GOOD])
    call = select_function(
        model,
        INPUT,
        card_registry,
        seed=1,
        on_attempt=lambda n, answer, err: seen.append((n, err and err.kind)),
    )
    assert call.attempts == 2 and call.params["action"] == "count_occurrences"
    assert seen == [(1, "unknown_function"), (2, None)]
    first, second = model.prompts
    body = card_registry.prompt_body(INPUT)
    # the correction is a second chat turn after the model's own bad answer
    assert second.startswith(f"{SYSTEM_PROMPT} USER: {body} ASSISTANT: {bad.strip()} USER: ")
    assert "'file_analytic' is not an available function" in second
    assert "did you mean 'file_analytics'" in second
    assert second.endswith("ASSISTANT:")
    assert [c["seed"] for c in model.calls] == [1, 2]


def test_invalid_params_feedback_lists_paths(card_registry):
    bad = '{"function": "file_analytics", "params": {"action": 3, "filters": {}}}'
    model = ScriptedModel([bad, GOOD])
    select_function(model, INPUT, card_registry)
    assert "$.action: 3 is not of type 'string'" in model.prompts[1]
    assert "$.filters: 'keyword' is a required property" in model.prompts[1]


def test_gives_up_after_retries_with_every_attempt(card_registry):
    answers = ["I don't know.", '{"function": "file_analytics", "params": {', "nothing"]
    model = ScriptedModel(list(answers))
    with pytest.raises(FunctionCallError) as info:
        select_function(model, INPUT, card_registry, retries=2)
    err = info.value
    assert err.kind == "no_call" and "after 3 attempts" in err.message
    assert [a for a, _ in err.attempts] == answers
    assert [e.kind for _, e in err.attempts] == ["no_call", "invalid_syntax", "no_call"]
    assert err.to_dict()["attempts"][1]["error"].startswith("invalid_syntax:")
    assert len(model.prompts) == 3


def test_no_retries(card_registry):
    model = ScriptedModel(["nope", GOOD])
    with pytest.raises(FunctionCallError) as info:
        select_function(model, INPUT, card_registry, retries=0)
    assert "after 1 attempt;" in info.value.message and len(model.prompts) == 1
    with pytest.raises(ValueError):
        select_function(model, INPUT, card_registry, retries=-1)


def test_constrained_passes_the_grammar_to_generate(card_registry, monkeypatch):
    built = []

    def function_call_grammar(registry, fmt):
        built.append((registry, fmt))
        return f"GRAMMAR<{fmt}:{','.join(registry.names())}>"

    monkeypatch.setattr(selection, "function_call_grammar", function_call_grammar)
    model = ScriptedModel(["bad", GOOD_YAML])
    select_function(model, INPUT, card_registry, format="yaml", constrained=True)
    assert built == [(card_registry, "yaml")]  # built once, used for every attempt
    assert [c["grammar"] for c in model.calls] == ["GRAMMAR<yaml:file_analytics>"] * 2


def test_answer_budget_fits_the_context(card_registry):
    prompt_tokens = len(card_registry.prompt(INPUT)) * 2 // 7 + 1
    model = ScriptedModel([GOOD], n_ctx=prompt_tokens + 100)
    select_function(model, INPUT, card_registry, max_tokens=512)
    assert 16 <= model.calls[0]["max_tokens"] < 100
    tiny = ScriptedModel([GOOD], n_ctx=50)
    with pytest.raises(AgentError, match="context holds 50"):
        select_function(tiny, INPUT, card_registry)


def test_correction_that_does_not_fit_falls_back_to_the_first_prompt(card_registry):
    first = card_registry.prompt(INPUT)
    n_ctx = (len(first) * 2 + 6) // 7 + 60  # room for the first prompt, not for a long retry
    model = ScriptedModel(["x" * 3000, GOOD], n_ctx=n_ctx)
    call = select_function(model, INPUT, card_registry)
    assert call.attempts == 2 and model.prompts == [first, first]


def test_generators_that_use_the_token_counter():
    from agent.functions import FunctionRegistry

    class Tokenizing(ScriptedModel):
        def tokenize(self, text, bos=True):
            return text.split()

    reg = FunctionRegistry()
    reg.add("ping", "Ping.")
    model = Tokenizing(['{"function": "ping"}'], n_ctx=200)
    select_function(model, "ping it", reg, max_tokens=1000)
    assert model.calls[0]["max_tokens"] == 200 - len(model.prompts[0].split()) - 1


def test_constrained_uses_the_real_grammar_for_this_registry(card_registry):
    grammar_module = pytest.importorskip("agent.functions.grammar")
    model = ScriptedModel([GOOD])
    select_function(model, INPUT, card_registry, constrained=True)
    grammar = model.calls[0]["grammar"]
    assert grammar is grammar_module.function_call_grammar(card_registry, "json")


def test_constrained_golden_model_answers_a_valid_call():
    # random weights, but the grammar only lets through calls of the registry's functions
    pytest.importorskip("agent.llm.model")
    pytest.importorskip("agent.functions.grammar")
    from agent.functions import FunctionRegistry
    from agent.llm import load_model
    from tests.golden import model_paths

    paths = [p for p in model_paths() if p.name.endswith(".gguf")]
    if not paths:
        pytest.skip("no golden GGUF model")
    reg = FunctionRegistry()
    reg.add(
        "ping",
        "Checks a host.",
        {
            "type": "object",
            "properties": {"count": {"type": "integer", "minimum": 1, "maximum": 9}},
            "required": ["count"],
        },
    )
    call = select_function(
        load_model(str(paths[0])),
        "ping it",
        reg,
        format="yaml",
        retries=0,
        seed=1,
        constrained=True,
        max_tokens=64,
    )
    assert call.name == "ping" and 1 <= call.params["count"] <= 9
