"""The function-call grammar: JSON and YAML calls that always parse and validate."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from agent.errors import FunctionCallError
from agent.functions.grammar import function_call_grammar
from agent.functions.parse import parse_function_call
from agent.functions.registry import FunctionRegistry
from agent.llm.grammar import JsonOptions, SchemaUnsupportedError
from tests import golden

SEARCH = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "maxLength": 24},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50},
        "filters": {
            "type": "object",
            "properties": {
                "safe": {"type": "boolean"},
                "lang": {"enum": ["en", "de", "no"]},
                "since": {"type": "string", "format": "date"},
            },
            "required": ["lang"],
        },
        "sites": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 2},
    },
    "required": ["query", "filters"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 16},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "days": {"type": "number", "minimum": 0, "maximum": 7},
    },
    "required": ["city", "unit"],
}
NOTHING = {"type": "object", "properties": {}}


@pytest.fixture(scope="module")
def registry() -> FunctionRegistry:
    r = FunctionRegistry()
    r.add("search", "Search the web.", SEARCH)
    r.add("get_weather", "Weather forecast for a city.", WEATHER)
    r.add("on", "A function whose name YAML would read as a boolean.", NOTHING)
    return r


def _calls(registry):
    return {"search": SEARCH, "get_weather": WEATHER, "on": NOTHING}


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_known_good_calls_are_in_the_language(registry, fmt):
    g = function_call_grammar(registry, fmt)
    if fmt == "json":
        text = (
            '{\n  "function": "get_weather",\n  "params": {\n    "city": "Oslo",\n'
            '    "unit": "celsius"\n  }\n}'
        )
        bad = [
            '{"function": "get_wether", "params": {"city": "Oslo", "unit": "celsius"}}',
            '{"function": "get_weather", "params": {"city": "Oslo"}}',
            '{"function": "get_weather", "params": {"city": "Oslo", "unit": "kelvin"}}',
            '{"function": "get_weather", "params": {"city": "Oslo", "unit": "celsius", "days": 8}}',
        ]
    else:
        text = (
            'function: search\nparams:\n  query: "cats"\n  filters:\n    lang: "no"\n'
            '  sites: ["a.org"]'
        )
        bad = [
            # an unquoted string
            'function: search\nparams:\n  query: cats\n  filters:\n    lang: "no"',
            # the Norway problem
            'function: search\nparams:\n  query: "cats"\n  filters:\n    lang: no',
            'function: search\nparams:\n  query: "cats"',  # filters is required
            'function: "on"\nparams: {}',
        ]  # the name is written as the card does, plain... and quoted
    assert g.accepts(text), text
    for b in bad[:-1] if fmt == "yaml" else bad:
        assert not g.accepts(b), b
    if fmt == "yaml":
        assert g.accepts('function: "on"\nparams: {}')  # quoted: yaml would read a plain on as True
        assert yaml.safe_load('function: "on"\nparams: {}') == {"function": "on", "params": {}}


def test_unsupported_parameter_keywords_are_reported(registry):
    r = FunctionRegistry()
    r.add(
        "f",
        "",
        {
            "type": "object",
            "properties": {"u": {"type": "string"}},
            "required": ["u", "v"],
            "additionalProperties": False,
        },
    )
    with pytest.raises(SchemaUnsupportedError, match="required property 'v' is not allowed"):
        function_call_grammar(r, "json")
    with pytest.raises(ValueError, match="json' or 'yaml"):
        function_call_grammar(registry, "toml")


def test_grammars_are_cached_per_registry_content(registry):
    assert function_call_grammar(registry, "json") is function_call_grammar(registry, "json")
    assert function_call_grammar(registry, "json") is not function_call_grammar(registry, "yaml")


@pytest.fixture(scope="module")
def tiny():
    from agent.llm import load_model

    return load_model(golden.model_path("tiny-q4_0.gguf"), n_ctx=2048, threads=1)


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_random_model_calls_always_validate_when_constrained(tiny, registry, fmt):
    """Golden tiny model, temperature 1, several seeds: every call parses and validates."""
    g = function_call_grammar(registry, fmt, options=JsonOptions(max_string_length=16, max_items=3))
    prompt = registry.prompt("What is the weather in Oslo?", fmt)
    seen = set()
    for seed in range(6):
        text = tiny.complete(prompt, grammar=g, temperature=1.0, seed=seed, max_tokens=600)
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
        jsonschema.validate(
            data["params"],
            _calls(registry)[data["function"]],
            format_checker=jsonschema.FormatChecker(),
        )
        call = parse_function_call(text, registry, format=fmt)
        assert call.name == data["function"] and call.params == data["params"]
        seen.add(call.name)
    assert len(seen) >= 2  # the grammar does not force one function


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_random_model_calls_fail_without_constraints(tiny, registry, fmt):
    prompt = registry.prompt("What is the weather in Oslo?", fmt)
    for seed in range(3):
        text = tiny.complete(prompt, temperature=1.0, seed=seed, max_tokens=80)
        with pytest.raises(FunctionCallError):
            parse_function_call(text, registry, format=fmt)


def test_select_function_constrained_succeeds_first_try(tiny, registry):
    from agent.functions import select_function

    for fmt in ("json", "yaml"):
        call = select_function(
            tiny,
            "Search for cats",
            registry,
            fmt,
            temperature=1.0,
            seed=11,
            constrained=True,
            retries=0,
            max_tokens=1500,
        )
        assert call.attempts == 1 and call.name in registry.names()
