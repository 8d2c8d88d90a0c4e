"""Registry: definitions from code, OpenAI tools and files; lookup; dispatch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum

import pytest
from jsonschema import Draft202012Validator

from agent.functions import (
    CallError,
    FunctionCall,
    FunctionCallError,
    FunctionDefinitionError,
    FunctionRegistry,
    parse_function_call,
)
from agent.functions.definitions import shorthand_leaf

OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name."},
                    "unit": {"type": "string", "enum": ["c", "f"]},
                },
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "ping", "description": "Liveness check."}},
]


def test_add_checks_names_and_schemas():
    reg = FunctionRegistry()
    for bad in ("", "has space", "x" * 65, None):
        with pytest.raises(FunctionDefinitionError, match="function name"):
            reg.add(bad, "d", {"type": "object"})  # type: ignore[arg-type]
    with pytest.raises(FunctionDefinitionError, match="object schema"):
        reg.add("f", "d", {"type": "string"})
    with pytest.raises(FunctionDefinitionError, match="not valid JSON Schema at properties/a"):
        reg.add("f", "d", {"type": "object", "properties": {"a": {"type": "strin"}}})
    with pytest.raises(FunctionDefinitionError, match="JSON Schema object"):
        reg.add("f", "d", ["a"])  # type: ignore[arg-type]
    with pytest.raises(FunctionDefinitionError, match="not callable"):
        reg.add("f", "d", None, handler="print")  # type: ignore[arg-type]
    assert len(reg) == 0


def test_add_defaults_and_copies():
    reg = FunctionRegistry()
    schema = {"properties": {"a": {"type": "string"}}}
    reg.add("f", "  Does\n f. ", schema)
    schema["properties"]["a"]["type"] = "integer"  # later edits do not leak in
    assert reg.schema("f") == {"type": "object", "properties": {"a": {"type": "string"}}}
    assert reg["f"].description == "Does f."
    reg.add("g")
    assert reg.schema("g") == {"type": "object", "properties": {}}
    returned = reg.schema("f")
    returned["properties"].clear()
    assert reg.schema("f")["properties"]  # schema() hands out copies


def test_lookup_names_order_and_replacement(card_registry):
    reg = card_registry
    reg.add("b", "B.")
    reg.add("a", "A.")
    assert reg.names() == ["file_analytics", "b", "a"]
    assert [s.name for s in reg] == reg.names()
    assert "FILE_ANALYTICS" in reg and reg.get("File_Analytics").name == "file_analytics"
    assert reg.get("nope") is None and 5 not in reg
    reg.add("b", "B again.")
    assert reg.names() == ["file_analytics", "b", "a"] and reg["b"].description == "B again."
    with pytest.raises(FunctionCallError) as info:
        reg.schema("file_analytic")
    assert info.value.kind == "unknown_function"


def test_subset_keeps_handlers_and_refuses_unknown_names():
    reg = FunctionRegistry.from_openai_tools(OPENAI_TOOLS, handlers={"ping": lambda: "pong"})
    only = reg.subset(["PING"])
    assert only.names() == ["ping"] and only.dispatch(FunctionCall("ping", {})) == "pong"
    with pytest.raises(FunctionCallError) as info:
        reg.subset(["pong"])
    assert info.value.kind == "unknown_function"


def test_ambiguous_case_insensitive_lookup_finds_nothing():
    reg = FunctionRegistry()
    reg.add("Run", "R.")
    reg.add("run", "r.")
    assert reg.get("RUN") is None and reg.get("run").description == "r."


def test_from_openai_tools():
    reg = FunctionRegistry.from_openai_tools(OPENAI_TOOLS)
    assert reg.names() == ["get_weather", "ping"]
    assert reg.schema("ping") == {"type": "object", "properties": {}}
    assert reg.to_openai_tools()[0] == OPENAI_TOOLS[0]
    call = parse_function_call('{"function": "get_weather", "params": {"city": "Oslo"}}', reg)
    assert call.to_openai("call_1") == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    }
    legacy = FunctionRegistry.from_openai_tools([t["function"] for t in OPENAI_TOOLS])
    assert legacy.names() == reg.names()


@pytest.mark.parametrize(
    "tools, words",
    [
        ("get_weather", "must be a list"),
        ([{"type": "function"}], "needs a 'function' object"),
        ([{"type": "function", "function": {"description": "x"}}], "missing function name"),
        ([{"type": "function", "function": {"name": "a b"}}], "function name"),
        ([OPENAI_TOOLS[0], OPENAI_TOOLS[0]], "defined twice"),
        ([{"name": "f", "description": 5}], "description must be text"),
        (
            [{"name": "f", "parameters": {"type": "object", "required": "x"}}],
            "not valid JSON Schema",
        ),
        ([7], "must be a mapping"),
    ],
)
def test_from_openai_tools_errors(tools, words):
    with pytest.raises(FunctionDefinitionError, match=words):
        FunctionRegistry.from_openai_tools(tools)


def test_handlers_must_match_definitions():
    reg = FunctionRegistry.from_openai_tools(OPENAI_TOOLS, handlers={"ping": lambda: "pong"})
    assert reg.dispatch(FunctionCall("ping", {})) == "pong"
    with pytest.raises(FunctionDefinitionError, match="undefined functions: nope"):
        FunctionRegistry.from_openai_tools(OPENAI_TOOLS, handlers={"nope": print})


def test_from_yaml_file_all_entry_styles(tmp_path):
    path = tmp_path / "functions.yaml"
    path.write_text("""
functions:
  - type: function
    function:
      name: get_weather
      description: Weather.
      parameters:
        type: object
        properties:
          city: {type: string}
          days: {type: integer, enum: [1, 2, 3]}
          flag: {enum: [yes, no, on]}
  - name: card_style
    description: Card style.
    params:
      action: What to do.
      filters:
        keyword: The word.
  - name: schema_in_params
    params: {type: object, properties: {n: {type: number, maximum: 1e3}}}
  - name: bare
""")
    reg = FunctionRegistry.from_file(path)
    assert reg.names() == ["get_weather", "card_style", "schema_in_params", "bare"]
    # YAML 1.2 typing in definitions: yes/no/on stay strings, 1e3 is a number
    assert reg.schema("get_weather")["properties"]["flag"]["enum"] == ["yes", "no", "on"]
    assert reg.schema("get_weather")["properties"]["days"]["enum"] == [1, 2, 3]
    assert reg.schema("schema_in_params")["properties"]["n"]["maximum"] == 1000.0
    # the shorthand: optional leaves taking any scalar (see test_definitions_shorthand.py)
    leaf = shorthand_leaf
    assert reg.schema("card_style") == {
        "type": "object",
        "properties": {
            "action": leaf("What to do."),
            "filters": {"type": "object", "properties": {"keyword": leaf("The word.")}},
        },
    }
    assert reg.schema("bare") == {"type": "object", "properties": {}}


def test_from_file_mapping_form_and_json(tmp_path):
    y = tmp_path / "f.yml"
    y.write_text("file_analytics:\n  description: Ops.\n  params:\n    action: What.\n")
    schema = FunctionRegistry.from_file(y).schema("file_analytics")
    assert list(schema["properties"]) == ["action"] and "required" not in schema
    j = tmp_path / "f.json"
    j.write_text(json.dumps({"tools": OPENAI_TOOLS}))
    assert FunctionRegistry.from_file(j).names() == ["get_weather", "ping"]


def test_example_definitions_file_loads():
    from tests.golden import REPO

    reg = FunctionRegistry.from_file(REPO / "examples" / "functions.yaml")
    assert reg.names() == ["file_analytics", "weather_forecast", "send_email"]
    for name in reg.names():
        Draft202012Validator.check_schema(reg.schema(name))


@pytest.mark.parametrize(
    "content, suffix, words",
    [
        ("functions: [unclosed", ".yaml", "not valid YAML"),
        ("{", ".json", "not valid JSON"),
        ("42", ".yaml", "expected a list of functions"),
        ("- name: f\n  params: [a, b]", ".yaml", "params must map each parameter"),
        ("- name: f\n  params:\n    n: 5", ".yaml", "use 'parameters:' with a JSON Schema"),
        ("f: just text", ".yaml", "must be a mapping"),
        ("- description: no name", ".yaml", "missing function name"),
    ],
)
def test_definition_file_errors_name_the_file(tmp_path, content, suffix, words):
    path = tmp_path / f"defs{suffix}"
    path.write_text(content)
    with pytest.raises(FunctionDefinitionError, match=words) as info:
        FunctionRegistry.from_file(path)
    assert str(path) in str(info.value)


def test_missing_file():
    with pytest.raises(FunctionDefinitionError, match="cannot read"):
        FunctionRegistry.from_file("/nonexistent/functions.yaml")


def test_response_schema_accepts_exactly_valid_calls(card_registry):
    card_registry.add("ping", "P.")
    schema = card_registry.response_schema()
    Draft202012Validator.check_schema(schema)
    v = Draft202012Validator(schema)
    assert v.is_valid({"function": "ping", "params": {}})
    assert v.is_valid(
        {"function": "file_analytics", "params": {"action": "a", "filters": {"keyword": "k"}}}
    )
    assert not v.is_valid({"function": "file_analytics", "params": {}})
    assert not v.is_valid({"function": "other", "params": {}})


# -- dispatch -------------------------------------------------------------------------------


class Unit(Enum):
    C = "celsius"
    F = "fahrenheit"


@dataclass
class Filters:
    keyword: str
    case: bool = False


def make_registry(log: list) -> FunctionRegistry:
    reg = FunctionRegistry()

    @reg.function
    def file_analytics(action: str, filters: Filters, unit: Unit = Unit.C) -> str:
        """Operations on a text file."""
        log.append((action, filters, unit))
        return f"{action}:{filters.keyword}"

    @reg.function
    def explode(reason: str) -> None:
        """Always fails."""
        raise ValueError(reason)

    reg.add("no_handler", "Defined only.", {"type": "object", "properties": {}})
    reg.add(
        "raw",
        "Raw schema handler.",
        {"type": "object", "properties": {"max-results": {"type": "integer"}}},
        handler=lambda **kw: kw,
    )
    return reg


def test_dispatch_runs_the_handler_with_converted_arguments():
    log: list = []
    reg = make_registry(log)
    call = parse_function_call(
        '{"function": "file_analytics", "params": {"action": "count", '
        '"filters": {"keyword": "Python"}, "unit": "fahrenheit"}}',
        reg,
    )
    assert call.invoke() == "count:Python"
    assert log == [("count", Filters("Python"), Unit.F)]
    assert reg.dispatch(call) == "count:Python"
    assert reg.dispatch(FunctionCall("raw", {"max-results": 3})) == {"max-results": 3}


def test_handler_exceptions_come_back_with_the_function_name():
    reg = make_registry([])
    call = parse_function_call("function: explode\nparams:\n  reason: boom", reg)
    with pytest.raises(FunctionCallError) as info:
        call.invoke()
    err = info.value
    assert err.kind == "handler_error" and isinstance(err, CallError)
    assert "'explode'" in err.message and "ValueError: boom" in err.message
    assert isinstance(err.__cause__, ValueError)


def test_only_registered_handlers_run():
    reg = make_registry([])
    ran = []
    foreign = FunctionRegistry()
    foreign.add("evil", "Not in reg.", None, handler=lambda: ran.append(1))
    call = parse_function_call('{"function": "evil"}', foreign)
    with pytest.raises(FunctionCallError) as info:
        reg.dispatch(call)
    assert info.value.kind == "unknown_function" and ran == []
    with pytest.raises(FunctionCallError) as info:
        reg.dispatch(FunctionCall("no_handler", {}))
    assert info.value.kind == "handler_error" and "has no handler" in info.value.message
    with pytest.raises(FunctionCallError) as info:
        FunctionCall("file_analytics", {}).invoke()
    assert info.value.kind == "handler_error" and "not bound" in info.value.message


def test_dispatch_revalidates_hand_made_calls():
    log: list = []
    reg = make_registry(log)
    with pytest.raises(FunctionCallError) as info:
        reg.dispatch(FunctionCall("file_analytics", {"action": 5, "filters": {}}))
    assert info.value.kind == "invalid_params"
    assert ("$.action", "5 is not of type 'string'") in info.value.errors
    assert ("$.filters", "'keyword' is a required property") in info.value.errors
    assert log == []
