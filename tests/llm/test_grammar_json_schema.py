"""JSON Schema -> grammar: every sample validates, invalid texts are rejected, unsupported keywords
reported."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.llm.grammar import (
    Grammar,
    SchemaUnsupportedError,
    TokenTable,
    json_schema_grammar,
    json_value_grammar,
)
from agent.llm.grammar.json_schema import JsonOptions, _render, int_range, yaml_key
from tests import golden

SMALL = JsonOptions(max_string_length=12, max_items=4, max_digits=6)


@pytest.fixture(scope="module")
def vocab() -> TokenTable:
    from agent.llm.formats.files import open_model_file
    from agent.llm.grammar import token_table

    return token_table(open_model_file(golden.model_path("tiny-q4_0.gguf")).vocab)


SCHEMAS = {
    "object": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 2, "maxLength": 8},
            "age": {"type": "integer", "minimum": 0, "maximum": 130},
            "tags": {
                "type": "array",
                "items": {"type": "string", "maxLength": 4},
                "minItems": 1,
                "maxItems": 3,
            },
            "ok": {"type": "boolean"},
            "none": {"type": "null"},
        },
        "required": ["name", "tags"],
        "additionalProperties": False,
    },
    "enum_const": {
        "type": "object",
        "properties": {
            "unit": {"enum": ["celsius", "fahrenheit", 3, None]},
            "v": {"const": {"a": [1, 2.5e-7]}},
        },
        "required": ["unit", "v"],
    },
    "numbers": {
        "type": "object",
        "properties": {
            "x": {"type": "number", "minimum": -2.5, "maximum": 3},
            "y": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
            "z": {"type": "integer", "exclusiveMinimum": -3, "maximum": 12345},
            "w": {"type": "number"},
        },
        "required": ["x", "y", "z", "w"],
    },
    "union": {
        "anyOf": [
            {"type": "string", "maxLength": 3},
            {"type": "integer", "maximum": 5},
            {
                "type": "object",
                "properties": {"k": {"type": ["string", "null"], "maxLength": 2}},
                "required": ["k"],
            },
        ]
    },
    "oneof_nested": {
        "type": "object",
        "properties": {
            "shape": {
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {
                            "kind": {"const": "circle"},
                            "r": {"type": "integer", "minimum": 1},
                        },
                        "required": ["kind", "r"],
                    },
                    {
                        "type": "object",
                        "properties": {"kind": {"const": "square"}, "side": {"type": "integer"}},
                        "required": ["kind", "side"],
                    },
                ]
            }
        },
        "required": ["shape"],
    },
    "refs_formats": {
        "$defs": {"day": {"type": "string", "format": "date"}},
        "type": "object",
        "properties": {
            "when": {"$ref": "#/$defs/day"},
            "id": {"type": "string", "format": "uuid"},
            "mail": {"type": "string", "format": "email"},
            "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{2,4}$"},
        },
        "required": ["when", "id", "mail", "code"],
    },
    "any": {},
    "untyped_keywords": {"properties": {"a": {"maxLength": 3}}, "required": ["a", "b"]},
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@pytest.mark.parametrize("as_yaml", [False, True])
def test_every_sample_validates(name, as_yaml, vocab):
    schema = SCHEMAS[name]
    g = json_schema_grammar(schema, SMALL, yaml=as_yaml)
    checker = jsonschema.FormatChecker()
    for seed in range(12):
        text = g.sample(vocab, seed=seed)
        value = yaml.safe_load(text) if as_yaml else json.loads(text)
        jsonschema.validate(value, schema, format_checker=checker)


@pytest.mark.parametrize(
    "schema,good,bad",
    [
        (
            {"type": "string", "maxLength": 3},
            ['"abc"', '"a\\"b"', '"é€"'],
            ['"abcd"', "abc", '"a\nb"'],
        ),
        (
            {"type": "integer", "minimum": -5, "maximum": 130},
            ["-5", "0", "130", "99"],
            ["-6", "131", "007", "-0", "1.5", "1e2"],
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "integer"}},
                "required": ["a"],
                "additionalProperties": False,
            },
            ['{"a": 1}', '{ "a" :2 }'],
            ["{}", '{"a": 1, "b": 2}', '{"a": "1"}'],
        ),
        (
            {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 2},
            ["[true]", "[true, false]"],
            ["[]", "[true, true, true]", "[1]"],
        ),
        ({"enum": ["a", 1]}, ['"a"', "1"], ['"b"', "2"]),
        (
            {"type": "number", "minimum": 0.5, "maximum": 2},
            ["1", "1.25", "2"],
            ["0", "2.5", "-1", "2.0001"],
        ),
    ],
)
def test_grammar_accepts_valid_and_rejects_invalid_json(schema, good, bad):
    g = json_schema_grammar(schema)
    for text in good:
        assert g.accepts(text), text
        jsonschema.validate(json.loads(text), schema)
    for text in bad:
        assert not g.accepts(text), text


def test_properties_keep_schema_order_and_optional_ones_may_be_skipped():
    g = json_schema_grammar(
        {
            "type": "object",
            "properties": {"a": {"type": "null"}, "b": {"type": "null"}, "c": {"type": "null"}},
            "required": ["c"],
        }
    )
    assert g.accepts('{"a": null, "c": null}') and g.accepts('{"c": null}')
    assert not g.accepts('{"c": null, "a": null}') and not g.accepts('{"a": null}')


def test_keywords_a_grammar_cannot_express_are_listed_for_validation_after():
    schema = {
        "type": "object",
        "properties": {
            "n": {"not": {"type": "null"}},
            "m": {"type": "integer", "multipleOf": 3},
            "s": {"type": "array", "uniqueItems": True},
            "p": {"type": "string", "pattern": "^a+$", "minLength": 2},
            "q": {"type": "string", "pattern": "^a+$", "maxLength": 3},  # exact: repeats capped
            "i": {"if": {"type": "string"}, "then": {"maxLength": 2}},
        },
    }
    g = json_schema_grammar(schema)
    listed = "\n".join(g.unenforced)
    for needle in (
        "/properties/n: not",
        "/properties/m: multipleOf",
        "/properties/s: uniqueItems",
        "/properties/p: minLength/maxLength next to a pattern",
        "/properties/i: if",
    ):
        assert needle in listed, (needle, listed)
    assert "/properties/q" not in listed
    assert json_schema_grammar(SCHEMAS["object"]).unenforced == ()


def test_annotations_and_unknown_keywords_are_ignored_as_validators_do():
    schema = {
        "type": "object",
        "id": "draft4-id",
        "x-vendor": {"anything": [1]},
        "_format": "uri",
        "example": {"a": 1},
        "properties": {"a": {"type": "integer", "javaType": "int", "maximum": 3, "minimum": 0}},
        "required": ["a"],
    }
    g = json_schema_grammar(schema)
    assert g.unenforced == ()
    assert g.accepts('{"a": 3}') and not g.accepts('{"a": 4}')


@pytest.mark.parametrize(
    "schema,what",
    [
        ({"type": "integer", "minimum": 5, "maximum": 4}, "no integer"),
        ({"type": "string", "minLength": 5, "maxLength": 2}, "no value fits"),
        ({"type": "strng"}, "unknown type"),
        ({"enum": []}, "non-empty"),
        ({"anyOf": "x"}, "non-empty list"),
        ({"type": "string", "pattern": "(unclosed"}, "missing ')'"),
        (False, "allows no value"),
        ({"$ref": "#/nope"}, "does not point"),
        ({"type": "number", "exclusiveMinimum": 0.1, "exclusiveMaximum": 0.1}, "no number"),
        ({"type": "object", "required": ["a"], "additionalProperties": False}, "not allowed"),
        ({"type": "string", "enum": ["a", None], "maxLength": 0}, "no value of enum"),
        ({"type": "string", "minLength": 10**9}, "larger than"),
        ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "nothing in common"),
    ],
)
def test_impossible_or_malformed_schemas_raise(schema, what):
    with pytest.raises(SchemaUnsupportedError) as exc:
        json_schema_grammar(schema)
    assert what in str(exc.value)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(10**7), 10**7), st.integers(0, 10**6), st.integers(-(10**7), 10**7))
def test_int_range_accepts_exactly_the_integers_in_range(lo, width, n):
    hi = lo + width
    g = Grammar(int_range(lo, hi))
    assert g.accepts(str(n)) == (lo <= n <= hi)
    assert g.accepts(str(lo)) and g.accepts(str(hi))
    assert not g.accepts("-0") and not g.accepts("0" + str(abs(n)))


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(10**6), 10**6)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=6),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
        ),
        max_leaves=8,
    )
)
def test_literals_read_back_identically_in_json_and_yaml(value):
    assert json.loads(_render(value, yaml=False)) == value
    assert yaml.safe_load(_render(value, yaml=True)) == value
    g = json_schema_grammar({"const": value}, yaml=True)
    assert g.accepts(_render(value, yaml=True))


@given(st.text(min_size=1, max_size=8))
def test_yaml_keys_read_back_as_the_same_string(name):
    assert yaml.safe_load(f"{yaml_key(name)}: 1") == {name: 1}


def test_yaml_numbers_never_read_back_as_strings(vocab):
    g = json_schema_grammar(
        {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
        SMALL,
        yaml=True,
    )
    for seed in range(30):
        values = yaml.safe_load(g.sample(vocab, seed=seed))
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values), values


def test_json_object_mode_is_any_bounded_object(vocab):
    g = json_value_grammar(JsonOptions(max_string_length=6, max_items=3, max_depth=2))
    assert g.accepts('{"a": [1, {"b": null}]}') is False  # depth 3
    assert g.accepts('{"a": [1, "x"]}') and not g.accepts("[1]") and not g.accepts('"x"')
    for seed in range(10):
        assert isinstance(json.loads(g.sample(vocab, seed=seed)), dict)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_never_crashes_the_checker(text):
    g = json_schema_grammar(SCHEMAS["object"])
    if g.accepts(text):
        jsonschema.validate(json.loads(text), SCHEMAS["object"])


_LEAF = st.one_of(
    st.builds(
        lambda lo, n: {"type": "string", "minLength": lo, "maxLength": lo + n},
        st.integers(0, 3),
        st.integers(0, 6),
    ),
    st.builds(
        lambda lo, n: {"type": "integer", "minimum": lo, "maximum": lo + n},
        st.integers(-1000, 1000),
        st.integers(0, 5000),
    ),
    st.builds(
        lambda lo, n: {"type": "number", "minimum": lo, "exclusiveMaximum": lo + n + 1},
        st.integers(-50, 50),
        st.integers(0, 50),
    ),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.just({"type": "number"}),
    st.lists(
        st.one_of(st.none(), st.booleans(), st.integers(-99, 99), st.text(max_size=4)),
        min_size=1,
        max_size=4,
        unique_by=lambda v: json.dumps(v),
    ).map(lambda vs: {"enum": vs}),
    st.sampled_from(
        [
            {"type": "string", "pattern": "^[a-c]{1,3}-\\d$"},
            {"type": "string", "format": "date"},
            {"const": "fixed"},
            {"type": ["integer", "null"], "maximum": 3},
        ]
    ),
)
_SCHEMAS = st.recursive(
    _LEAF,
    lambda inner: st.one_of(
        st.builds(
            lambda props, req, extra: {
                "type": "object",
                "properties": props,
                "required": [k for k in props if req],
                "additionalProperties": extra,
            },
            st.dictionaries(
                st.sampled_from(["a", "b", "on", "key with space", "é"]), inner, max_size=3
            ),
            st.booleans(),
            st.booleans(),
        ),
        st.builds(
            lambda items, lo, n: {
                "type": "array",
                "items": items,
                "minItems": lo,
                "maxItems": lo + n,
            },
            inner,
            st.integers(0, 2),
            st.integers(0, 2),
        ),
        st.lists(inner, min_size=1, max_size=3).map(lambda bs: {"anyOf": bs}),
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(_SCHEMAS, st.booleans(), st.integers(0, 1000))
def test_random_schemas_only_produce_valid_instances(vocab, schema, as_yaml, seed):
    g = json_schema_grammar(schema, SMALL, yaml=as_yaml)
    text = g.sample(vocab, seed=seed)
    value = yaml.safe_load(text) if as_yaml else json.loads(text)
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize(
    "doc",
    [
        {"required": None, "anyOf": [{"type": None, "required": True}]},  # found by the fuzz test
        {"allOf": [{"required": [{}]}, {"required": [{}]}]},
        {"oneOf": [{"required": 7, "properties": {"a": {"const": 1}}}, {"required": ["a"]}]},
    ],
)
def test_a_malformed_required_merged_from_branches_is_an_error_or_ignored_not_a_crash(doc):
    try:
        json_schema_grammar(doc)
    except SchemaUnsupportedError as exc:
        assert exc.problems


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "type",
                        "properties",
                        "items",
                        "enum",
                        "anyOf",
                        "maxLength",
                        "minimum",
                        "required",
                        "pattern",
                        "$ref",
                        "not",
                        "format",
                    ]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=10,
    )
)
def test_arbitrary_schema_documents_compile_or_raise_schema_errors(doc):
    """Garbage in: either a grammar or SchemaUnsupportedError listing the problems, nothing else."""
    try:
        json_schema_grammar(doc)
    except SchemaUnsupportedError as exc:
        assert exc.problems
