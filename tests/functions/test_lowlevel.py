"""The building blocks: snippet finder, repairs, YAML loaders, coercion, docstrings."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.functions.coerce import coerce
from agent.functions.docstrings import parse_docstring
from agent.functions.extract import MAX_CANDIDATES, find_snippets
from agent.functions.repair import loads_json, repair_json, repair_yaml
from agent.functions.yamlio import PlainStr, load_core, load_plain, plain_to_str, resolve_core

FAST = settings(max_examples=150, deadline=None)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=10)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


# -- snippets ---------------------------------------------------------------------------------


def test_snippets_in_order_with_fences_first_class():
    text = (
        'intro {"a": 1} then\n```yaml\nfunction: f\nparams:\n  x: 1\n```\n'
        'and {"function": "g", "params": {'
    )
    snippets = find_snippets(text)
    assert [(s.kind, s.text.strip()) for s in snippets] == [
        ("json", '{"a": 1}'),
        ("yaml", "function: f\nparams:\n  x: 1"),
        ("json", '{"function": "g", "params": {'),
        ("json", "{"),  # the inner object of a cut-off answer is a candidate too
    ]
    assert [s.closed for s in snippets] == [True, True, False, False]
    assert snippets[1].lang == "yaml"


def test_yaml_block_stops_at_prose_and_keeps_nested_lines():
    text = "Sure.\nfunction: f\nparams:\n  a: 1\n\n  b: 2\nThat is all.\nfunction: g"
    blocks = [s.text for s in find_snippets(text) if s.kind == "yaml"]
    assert blocks == ["function: f\nparams:\n  a: 1\n\n  b: 2\n", "function: g"]


def test_apostrophes_in_prose_do_not_open_strings():
    text = 'It\'s here: {"function": "f"} and that\'s it'
    assert find_snippets(text)[0].text == '{"function": "f"}'


def test_pathological_braces_are_bounded():
    snippets = find_snippets("{" * 50_000)
    assert len(snippets) <= MAX_CANDIDATES


@FAST
@given(st.text(max_size=300))
def test_snippets_are_parts_of_the_text(text):
    for s in find_snippets(text):
        if s.kind == "json":
            assert text[s.start : s.start + len(s.text)] == s.text


# -- JSON repair -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, fixed, repairs",
    [
        ("{'a': 'b'}", '{"a": "b"}', ["single quotes"]),
        ("{'a': 'say \"x\"'}", '{"a": "say \\"x\\""}', ["single quotes"]),
        ("{'a': 'it\\'s'}", '{"a": "it\'s"}', ["single quotes"]),
        ('{"a": [1, 2, ], }', '{"a": [1, 2 ] }', ["trailing commas"]),
        (
            '{"a": True, "b": None, "c": False}',
            '{"a": true, "b": null, "c": false}',
            ["Python literals"],
        ),
        ('{"Truex": Nonesuch}', '{"Truex": Nonesuch}', []),
        ('{"a": 1} // note', '{"a": 1} ', ["comments"]),
        ('{"a": /* x */ 1}', '{"a":  1}', ["comments"]),
        ('{"a": "/* kept */ // kept"}', '{"a": "/* kept */ // kept"}', []),
        ("{'unterminated", '{"unterminated"', ["single quotes"]),
    ],
)
def test_repair_json(text, fixed, repairs):
    assert repair_json(text) == (fixed, repairs)


@FAST
@given(JSON_VALUES)
def test_repair_leaves_valid_json_alone(value):
    text = json.dumps(value)
    assert repair_json(text) == (text, [])


@FAST
@given(st.text(max_size=200))
def test_repair_json_never_raises(text):
    repaired, repairs = repair_json(text)
    assert isinstance(repaired, str) and all(isinstance(r, str) for r in repairs)


def test_loads_json_refuses_duplicates_and_constants():
    for bad in ('{"a": 1, "a": 2}', '{"a": NaN}', '{"a": -Infinity}', '{"a": "x\ny"}'):
        with pytest.raises(ValueError):
            loads_json(bad)
    assert loads_json('{"a": "x\ny"}', strict=False) == {"a": "x\ny"}


# -- YAML ------------------------------------------------------------------------------------


def test_load_plain_keeps_scalars_as_written():
    data = load_plain("a: NO\nb: 1:20\nc: 012\nd: '5'\ne:\nf: [on, 1.10]\ng: 2024-01-05")
    assert data == {
        "a": "NO",
        "b": "1:20",
        "c": "012",
        "d": "5",
        "e": "",
        "f": ["on", "1.10"],
        "g": "2024-01-05",
    }
    assert isinstance(data["a"], PlainStr) and not isinstance(data["d"], PlainStr)
    assert type(plain_to_str(data)["a"]) is str


@pytest.mark.parametrize(
    "text, words",
    [
        ("a: &x [1]\nb: *x", "aliases"),
        ("a: 1\na: 2", "duplicate key"),
        ("a: !!timestamp 2020-01-01", "not allowed"),
        ("a: !!binary aGk=", "not allowed"),
        ("a: !custom x", "not allowed"),
        ("a: !!python/name:os.system", "not allowed"),
        ("? [a, b]\n: c", "plain text"),
        ("a: [unclosed", "expected"),
        ("a:\tb:\n\t- c", "found"),
        ("--- a\n--- b", "single document"),
    ],
)
def test_load_plain_refuses_malformed_and_unsafe_input(text, words):
    with pytest.raises(yaml.YAMLError, match=words):
        load_plain(text)


def test_load_core_is_yaml_12():
    assert load_core("a: NO\nb: yes\nc: true\nd: 012\ne: 1:20\nf: 1e3\ng: 0o17\nh: ~\ni: 0x1F") == {
        "a": "NO",
        "b": "yes",
        "c": True,
        "d": 12,
        "e": "1:20",
        "f": 1000.0,
        "g": 15,
        "h": None,
        "i": 31,
    }


def test_load_core_is_safe():
    with pytest.raises(yaml.YAMLError, match="constructor"):
        load_core("x: !!python/object/apply:os.system [ls]")


@pytest.mark.parametrize(
    "text, value",
    [
        ("null", None),
        ("~", None),
        ("", None),
        ("True", True),
        ("FALSE", False),
        ("yes", "yes"),
        ("-12", -12),
        ("0o7", 7),
        ("0x1f", 31),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("1:20", "1:20"),
        (".inf", ".inf"),
        ("1_000", "1_000"),
        ("NO", "NO"),
    ],
)
def test_resolve_core(text, value):
    assert resolve_core(text) == value and type(resolve_core(text)) is type(value)


@FAST
@given(st.text(max_size=200))
def test_yaml_loaders_give_data_or_yaml_error(text):
    for load in (load_plain, load_core):
        try:
            load(text)
        except yaml.YAMLError:
            pass


def test_quote_hash_values():
    from agent.functions.repair import quote_hash_values

    assert quote_hash_values("a: x #1\n# comment\nb: 'y #2'\nc: C#") == (
        "a: 'x #1'\n# comment\nb: 'y #2'\nc: C#"
    )
    assert quote_hash_values("a: b") is None


def test_repair_yaml_quotes_only_what_breaks():
    text = "a: Note: x\nb: C# #1\nc: 'kept: x'\nd: http://x.org/#frag\ne: [x: y]\n\tf: tab"
    fixed, repairs = repair_yaml(text)
    assert fixed.split("\n") == [
        "a: 'Note: x'",
        "b: 'C# #1'",
        "c: 'kept: x'",
        "d: http://x.org/#frag",
        "e: [x: y]",
        "    f: tab",
    ]
    assert repairs == ["tab indentation", "unquoted special characters"]


# -- coercion ----------------------------------------------------------------------------------


def test_coerce_follows_refs_combinators_and_items():
    schema = {
        "type": "object",
        "$defs": {"N": {"type": "integer"}},
        "properties": {
            "r": {"$ref": "#/$defs/N"},
            "any": {
                "anyOf": [
                    {"type": "object", "properties": {"k": {"type": "boolean"}}},
                    {"type": "array", "items": {"type": "number"}},
                ]
            },
            "all": {"allOf": [{"type": "integer"}]},
            "pairs": {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "items": {"type": "boolean"},
            },
            "map": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
                "patternProperties": {"^s_": {"type": "string"}},
            },
            "badref": {"$ref": "http://elsewhere/x"},
        },
    }
    data = load_plain(
        "r: '7'\nany: [1, 2.5]\nall: 3\npairs: [1, 012, on, off]\nmap: {a: 1, s_b: 012}\nbadref: 5"
    )
    data["r"] = PlainStr("7")
    out = plain_to_str(coerce(data, schema))
    assert out == {
        "r": 7,
        "any": [1, 2.5],
        "all": 3,
        "pairs": [1, "012", True, False],
        "map": {"a": 1, "s_b": "012"},
        "badref": 5,
    }
    assert plain_to_str(coerce(load_plain("any: {k: yes}"), schema)) == {"any": {"k": True}}


def test_coerce_leaves_unreadable_values_for_validation():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "b": {"type": "boolean"}}}
    assert coerce(load_plain("n: 1:20\nb: maybe"), schema) == {"n": "1:20", "b": "maybe"}


def test_coerce_survives_recursive_refs():
    # a $ref cycle says nothing about the type: the value is read like an untyped one
    schema = {"$ref": "#/$defs/T", "$defs": {"T": {"$ref": "#/$defs/T"}}}
    assert coerce(PlainStr("5"), schema) == 5


@FAST
@given(
    JSON_VALUES,
    st.sampled_from(
        [
            {},
            {"type": "integer"},
            {"type": "object", "properties": {"a": {"type": "string"}}},
            {"anyOf": [{"type": "array"}, {"type": "null"}]},
            {"enum": [1, "a", None]},
            True,
            {"type": "object", "patternProperties": {"(": {}}},
        ]
    ),
)
def test_coerce_never_raises(value, schema):
    coerce(value, schema)


# -- docstrings ------------------------------------------------------------------------------


@FAST
@given(st.text(max_size=300))
def test_docstring_parser_never_raises(text):
    parsed = parse_docstring(text)
    assert "\n" not in parsed.summary
    assert all("\n" not in d for d in parsed.params.values())


def test_docstring_sections_without_params():
    doc = parse_docstring("Summary.\n\nReturns:\n    x: not a param\nRaises:\n    E: no")
    assert doc.summary == "Summary." and doc.params == {}
