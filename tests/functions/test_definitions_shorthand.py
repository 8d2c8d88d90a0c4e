"""The shorthand function definitions of the model card and airoboros' agent.txt: they load, and
the answers the training data shows validate; full JSON Schema definitions stay strict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from agent.errors import FunctionCallError
from agent.functions.definitions import iter_definitions, shorthand_leaf, shorthand_schema
from agent.functions.errors import FunctionDefinitionError
from agent.functions.registry import FunctionRegistry

AGENT_TXT = (
    Path(__file__).resolve().parent.parent / "data" / "functions" / "agent_txt_functions.yaml"
)


@pytest.fixture(scope="module")
def reg() -> FunctionRegistry:
    return FunctionRegistry.from_file(AGENT_TXT)


def test_agent_txt_function_list_loads(reg):
    assert reg.names() == ["search", "csv_analytics", "image_resize"]
    search = reg.schema("search")
    # `parameters:` holding descriptions is the shorthand, and the sibling group is a parameter
    assert list(search["properties"]) == ["search_terms", "alternatives", "date_range"]
    assert list(search["properties"]["date_range"]["properties"]) == ["begin", "end"]
    assert "required" not in search and "required" not in search["properties"]["date_range"]
    for name in reg.names():
        Draft202012Validator.check_schema(reg.schema(name))
    # the prompt lists the group with its leaves, as the training data does
    assert "    date_range:\n      begin: Only items dated" in reg.describe()


@pytest.mark.parametrize(
    "answer",
    [
        # agent.txt's own answer: leaves that do not apply are left out
        'function: csv_analytics\nparams:\n  action: "grouped_count"\n  filters:\n'
        '    column: "email_address"',
        '{"function": "csv_analytics", "params": {"action": "grouped_count", '
        '"filters": {"column": "email_address"}}}',
        "function: search\nparams:\n  search_terms: [climate, ocean]\n  date_range:\n"
        "    begin: 2020-01-01",
        '{"function": "search", "params": {"search_terms": "ocean heat", '
        '"date_range": {"end": 2023}}}',
        "function: image_resize\nparams:\n  width: 800\n  keep_ratio: yes",
        '{"function": "image_resize", "params": {"width": 800, "keep_ratio": true}}',
        '{"function": "image_resize", "params": {"width": 800.5}}',
        '{"function": "image_resize", "params": {}}',
    ],
)
def test_training_style_answers_validate(reg, answer):
    call = reg.parse(answer)
    reg.validate(call.name, call.params)


def test_json_numbers_and_yaml_scalars_are_both_accepted_as_written(reg):
    as_json = reg.parse('{"function": "image_resize", "params": {"width": 800}}')
    as_yaml = reg.parse("function: image_resize\nparams:\n  width: 800")
    assert as_json.params == {"width": 800}  # the number the model wrote
    assert as_yaml.params == {"width": "800"}  # YAML text kept as written (no guessing)


def test_shorthand_still_rejects_what_is_not_a_parameter_value(reg):
    with pytest.raises(FunctionCallError) as info:
        reg.parse('{"function": "image_resize", "params": {"width": {"px": 800}}}')
    assert info.value.kind == "invalid_params" and "$.width" in info.value.message
    with pytest.raises(FunctionCallError):  # a group is a group, not a scalar
        reg.parse('{"function": "csv_analytics", "params": {"filters": "email"}}')


def check_strict(tmp_path, definitions: str, name: str, good: dict, bad: list) -> Any:
    """Load ``definitions``; ``good`` validates, every one of ``bad`` is refused."""
    path = tmp_path / "f.yaml"
    path.write_text(definitions)
    reg = FunctionRegistry.from_file(path)
    reg.validate(name, good)
    for params in bad:
        with pytest.raises(FunctionCallError):
            reg.validate(name, params)
    return reg.schema(name)


def test_typed_leaves_and_required_lists_are_honoured(tmp_path):
    schema = check_strict(
        tmp_path,
        "resize:\n  description: Scale.\n  params:\n    width: {type: integer, minimum: 1}\n"
        "    note: Free text.\n    required: [width]\n",
        "resize",
        {"width": 3},
        [{}, {"width": "wide"}, {"width": 0}],
    )
    assert schema["required"] == ["width"] and schema["properties"]["width"]["type"] == "integer"
    assert schema["properties"]["note"] == shorthand_leaf("Free text.")


def test_full_json_schema_definitions_stay_strict(tmp_path):
    check_strict(
        tmp_path,
        "- name: count\n  parameters:\n    type: object\n    properties:\n"
        "      n: {type: integer}\n    required: [n]\n",
        "count",
        {"n": 5},
        [{}, {"n": "5"}, {"n": True}],
    )


@pytest.mark.parametrize(
    "content, words",
    [
        ("f:\n  parameters: {type: string}", "must be an object schema"),
        ("f:\n  params: {a: x}\n  a: {b: y}", "both a parameter and a key next to"),
        ("f:\n  params:\n    a: x\n    required: [b]", r"names \['b'\], which are not parameters"),
        ("f:\n  params:\n    n: 5", "expected a description"),
        ("f:\n  params: [a, b]", "params must map each parameter"),
    ],
)
def test_definition_errors_say_what_and_where(tmp_path, content, words):
    path = tmp_path / "defs.yaml"
    path.write_text(content)
    with pytest.raises(FunctionDefinitionError, match=words) as info:
        FunctionRegistry.from_file(path)
    assert str(path) in str(info.value)


def test_a_parameter_named_like_a_schema_keyword_is_still_shorthand():
    ((_, _, schema),) = iter_definitions(
        {"f": {"params": {"type": "The file type.", "properties": "Which fields to read."}}}
    )
    assert list(schema["properties"]) == ["type", "properties"]


_leaf = st.one_of(st.none(), st.text(max_size=20))
_tree = st.recursive(
    st.dictionaries(st.text(min_size=1, max_size=8), _leaf, max_size=4),
    lambda inner: st.dictionaries(
        st.text(min_size=1, max_size=8), st.one_of(_leaf, inner), max_size=4
    ),
    max_leaves=12,
)
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)
)


@settings(max_examples=150, deadline=None)
@given(_tree, st.data())
def test_fuzz_shorthand_gives_a_valid_schema_that_takes_any_scalar(tree, data):
    try:
        schema = shorthand_schema(tree, "params")
    except FunctionDefinitionError:
        return  # e.g. a 'required' list naming no parameter: refused with a message
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    assert validator.is_valid({})  # every leaf is optional
    leaves = [k for k, v in tree.items() if not isinstance(v, dict)]
    if leaves:
        value = {leaves[0]: data.draw(_scalar)}
        assert validator.is_valid(json.loads(json.dumps(value)))


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_constrained_calls_admit_the_training_answers(reg, fmt):
    from agent.functions.grammar import function_call_grammar

    g = function_call_grammar(reg, fmt)
    if fmt == "json":
        good = '{"function": "image_resize", "params": {"width": 800, "keep_ratio": true}}'
        assert g.accepts(good)
        assert g.accepts('{"function": "csv_analytics", "params": {"action": "grouped_count"}}')
    else:
        assert g.accepts('function: csv_analytics\nparams:\n  action: "grouped_count"')
