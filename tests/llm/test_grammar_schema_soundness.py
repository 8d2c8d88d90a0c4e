"""JSON Schema grammars are sound: whatever they admit validates (issue 16).

Intersections (allOf, anyOf/oneOf/$ref next to other keywords), recursive references, real-world
keywords, bounded compile cost for schemas that are bombs, and random schemas walked at random.
"""

from __future__ import annotations

import json
import time

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.llm.grammar import (
    SchemaUnsupportedError,
    TokenTable,
    json_schema_grammar,
    token_table,
)
from agent.llm.grammar.errors import SchemaTooLargeError
from agent.llm.grammar.json_schema import FORMATS, JsonOptions
from tests import golden
from tests.schema_bombs import fanout, nested

SMALL = JsonOptions(max_string_length=12, max_items=4, max_digits=6)


@pytest.fixture(scope="module")
def vocab() -> TokenTable:
    from agent.llm.formats.files import open_model_file

    return token_table(open_model_file(golden.model_path("tiny-q4_0.gguf")).vocab)


def _valid(schema, value) -> bool:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER).is_valid(value)


def _samples_validate(schema, vocab, n=8, options=SMALL):
    g = json_schema_grammar(schema, options)
    for seed in range(n):
        text = g.sample(vocab, seed=seed)
        assert _valid(schema, json.loads(text)), (text, schema)
    return g


# -- the soundness examples of the issue --
def test_anyof_next_to_properties_means_both():
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "anyOf": [{"required": ["b"]}],
    }
    g = json_schema_grammar(schema)
    assert not g.accepts('{"b": 1}')
    assert g.accepts('{"a": 1, "b": 1}') and not g.accepts('{"a": 1}')


def test_required_names_not_listed_take_additional_properties():
    schema = {"required": ["a"], "additionalProperties": {"type": "integer"}}
    g = json_schema_grammar(schema)
    assert not g.accepts('{"a": "x"}')
    assert g.accepts('{"a": 5}')


def test_enum_values_must_satisfy_the_type_too():
    g = json_schema_grammar({"type": "string", "enum": ["a", None]})
    assert not g.accepts("null") and g.accepts('"a"')


def test_ref_with_siblings_is_an_intersection():
    schema = {
        "$defs": {"n": {"type": "integer", "minimum": 0, "maximum": 100}},
        "$ref": "#/$defs/n",
        "maximum": 5,
    }
    g = json_schema_grammar(schema)
    assert g.accepts("5") and not g.accepts("6") and not g.accepts("-1")


def test_several_allof_parts_merge_properties_and_bounds(vocab):
    schema = {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "integer", "maximum": 9}}},
            {"properties": {"a": {"minimum": 3}, "b": {"type": "string"}}, "required": ["a"]},
            {"properties": {"a": {}, "b": {}}, "required": ["b"], "additionalProperties": False},
        ]
    }
    g = _samples_validate(schema, vocab)
    assert g.accepts('{"a": 3, "b": "x"}')
    assert not g.accepts('{"a": 2, "b": "x"}') and not g.accepts('{"a": 3}')


def test_additional_properties_false_in_one_part_limits_the_other():
    schema = {
        "allOf": [
            {"properties": {"a": {"type": "integer"}}, "additionalProperties": False},
            {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
        ]
    }
    with pytest.raises(SchemaUnsupportedError, match="'b' is not allowed"):
        json_schema_grammar(schema)


def test_oneof_with_overlapping_branches_is_listed_for_a_check():
    overlapping = {"oneOf": [{"type": "integer"}, {"type": "number", "maximum": 3}]}
    assert any("oneOf" in u for u in json_schema_grammar(overlapping).unenforced)
    tagged = {
        "oneOf": [
            {"properties": {"k": {"const": "a"}}, "required": ["k"], "type": "object"},
            {"properties": {"k": {"const": "b"}}, "required": ["k"], "type": "object"},
        ]
    }
    assert json_schema_grammar(tagged).unenforced == ()


# -- coverage --
def test_recursive_references_compile_and_generate_valid_trees(vocab):
    schema = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "v": {"type": "integer", "minimum": 0, "maximum": 9},
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2},
                },
                "required": ["v"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/node",
    }
    g = _samples_validate(schema, vocab)
    assert g.accepts('{"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}]}]}')


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_generates_valid_strings(fmt, vocab):
    _samples_validate({"type": "string", "format": fmt}, vocab, n=6)


def test_pattern_properties_and_property_names_constrain_listed_properties(vocab):
    schema = {
        "type": "object",
        "properties": {"x_a": {"type": "integer"}, "b": {"type": "string"}},
        "patternProperties": {"^x_": {"maximum": 5}},
        "propertyNames": {"maxLength": 3},
        "required": ["x_a"],
    }
    g = _samples_validate(schema, vocab)
    assert not g.accepts('{"x_a": 6}') and g.accepts('{"x_a": 5, "b": "q"}')


def test_unique_items_of_enum_values_are_enforced(vocab):
    schema = {"type": "array", "items": {"enum": ["a", "b", "c"]}, "uniqueItems": True}
    g = _samples_validate(schema, vocab)
    assert g.unenforced == ()
    assert not g.accepts('["a", "a"]') and g.accepts('["a", "c"]')


def test_tuple_items_and_prefix_items(vocab):
    old = {
        "type": "array",
        "items": [{"type": "integer"}, {"type": "string"}],
        "additionalItems": False,
        "minItems": 1,
    }
    new = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "array",
        "prefixItems": [{"type": "boolean"}],
        "items": {"type": "null"},
        "maxItems": 3,
    }
    g = _samples_validate(old, vocab)
    assert g.accepts('[1, "a"]') and g.accepts("[1]") and not g.accepts('[1, "a", 2]')
    g = _samples_validate(new, vocab)
    assert g.accepts("[true, null, null]") and not g.accepts("[null]")


# -- bounded cost --


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "maxLength": 10**9},
        {"type": "array", "maxItems": 10**9, "items": {"type": "string", "maxLength": 10**9}},
        {"type": "integer", "minimum": -1e308, "maximum": 1e308},
        {"type": "number", "minimum": 1e300},
        fanout(20),
        {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(400)}},
    ],
    ids=["maxLength", "maxItems", "huge-int-bounds", "huge-number", "ref-fanout-20", "400-props"],
)
def test_numbers_and_fanout_do_not_drive_compile_cost(schema, vocab):
    t0 = time.monotonic()  # with the bomb limits off: the compiler itself stays linear
    g = json_schema_grammar(schema, JsonOptions(max_bound=None, max_expansion=None))
    text = g.sample(vocab, seed=1)
    assert time.monotonic() - t0 < 10  # generous: the machine is shared; unbounded took minutes
    assert _valid(schema, json.loads(text))


def test_compile_work_grows_linearly_with_fanout_depth():
    def work(depth: int) -> int:
        from agent.llm.grammar.json_schema import SchemaBuilder

        b = SchemaBuilder(fanout(depth), JsonOptions(max_expansion=None), False)
        b.value(b.root, "")
        return b.work

    assert work(40) < 2.5 * work(20)  # doubled per level before memoized references


@pytest.mark.parametrize(
    "schema,what",
    [
        (nested(300), "nest more than"),
        ({"type": "string", "minLength": 10**9}, "larger than"),
        ({"type": "array", "minItems": 10**9}, "larger than"),
        ({"type": "string", "maxLength": 10**9}, "maxLength 1,000,000,000 is above"),
        ({"type": "array", "maxItems": 1e9}, "maxItems 1,000,000,000 is above"),
        (
            {"properties": {"a": {"type": "object", "maxProperties": 10**7}}, "required": ["a"]},
            "/properties/a",
        ),
        ({"anyOf": [{"maxLength": 2**63}, {"maxItems": 2**63}]}, "maxLength 9,223"),
        (fanout(20), "at #/$defs/d0: its references written out make more than 1,000,000"),
        (fanout(200), "written out"),
    ],
)
def test_schemas_too_large_are_refused_quickly_with_the_place(schema, what):
    t0 = time.monotonic()
    with pytest.raises(SchemaUnsupportedError) as exc:
        json_schema_grammar(schema)
    assert time.monotonic() - t0 < 5 and what in str(exc.value)


def test_bomb_limits_leave_real_and_recursive_schemas_alone(vocab):
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"l": {"$ref": "#/$defs/node"}, "r": {"$ref": "#/$defs/node"}},
            }
        },
        "$ref": "#/$defs/node",
    }  # recursive fan-out: one rule, however deep the output goes
    text = json_schema_grammar(tree).sample(vocab, seed=3)
    assert _valid(tree, json.loads(text))
    assert json_schema_grammar(fanout(16))  # about 590,000 nodes written out: under the limit
    assert json_schema_grammar({"type": "string", "maxLength": 10**6})
    with pytest.raises(SchemaTooLargeError):
        json_schema_grammar(fanout(16), JsonOptions(max_expansion=100_000))


def test_the_budget_stops_an_exponential_schema_and_names_where():
    branches = [
        {"anyOf": [{"properties": {f"a{i}": {"type": "integer"}}}, {"required": [f"b{i}"]}]}
        for i in range(30)
    ]
    with pytest.raises(SchemaTooLargeError) as exc:
        json_schema_grammar({"allOf": branches}, JsonOptions(max_work=20_000))
    assert "allOf" in str(exc.value) or "anyOf" in str(exc.value)


def test_error_messages_list_only_the_first_problems():
    schema = {"type": "object", "properties": {f"p{i}": False for i in range(500)}}
    schema["required"] = list(schema["properties"])
    with pytest.raises(SchemaUnsupportedError) as exc:
        json_schema_grammar(schema)
    assert len(str(exc.value)) < 2000


# -- random schemas, random walks --
_LEAF = st.one_of(
    st.builds(
        lambda lo, n: {"type": "string", "minLength": lo, "maxLength": lo + n},
        st.integers(0, 3),
        st.integers(0, 5),
    ),
    st.builds(
        lambda lo, n: {"type": "integer", "minimum": lo, "maximum": lo + n},
        st.integers(-100, 100),
        st.integers(0, 500),
    ),
    st.builds(lambda lo: {"type": "number", "exclusiveMinimum": lo}, st.integers(-5, 5)),
    st.builds(lambda hi: {"maximum": hi}, st.integers(-5, 5)),
    st.sampled_from(
        [
            {"type": "boolean"},
            {"type": "null"},
            {"type": ["string", "null"], "maxLength": 2},
            {"enum": ["a", 1, None, True]},
            {"const": "k"},
            {"type": "string", "format": "date-time"},
            {"type": "string", "pattern": "^[a-c]{1,3}$"},
            {"type": "array", "items": {"enum": ["x", "y"]}, "uniqueItems": True},
            {"$ref": "#/$defs/small"},
            {},
        ]
    ),
)


def _object(props, req, extra, with_any):
    schema = {
        "type": "object",
        "properties": props,
        "required": [k for k in props if req],
        "additionalProperties": extra,
    }
    if with_any and props:
        schema["anyOf"] = [{"required": [next(iter(props))]}, {"properties": with_any}]
    return schema


_SCHEMAS = st.recursive(
    _LEAF,
    lambda inner: st.one_of(
        st.builds(
            _object,
            st.dictionaries(st.sampled_from(["a", "b", "c", "on"]), inner, max_size=3),
            st.booleans(),
            st.one_of(st.booleans(), inner),
            st.one_of(st.just({}), st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=1)),
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
        st.lists(inner, min_size=2, max_size=3).map(lambda bs: {"allOf": bs}),
        st.builds(lambda a, b: {**a, "anyOf": [b]}, inner, inner),
    ),
    max_leaves=6,
)


_UNSATISFIABLE = (
    "no value",
    "no integer",
    "no number",
    "nothing in common",
    "not allowed",
    "no branch",
    "allows no",
    "needs more",
)


@settings(max_examples=150, deadline=None)
@given(_SCHEMAS, st.integers(0, 1000))
def test_random_schemas_only_admit_valid_instances(vocab, schema, seed):
    schema = {**schema, "$defs": {"small": {"type": "integer", "minimum": 0, "maximum": 3}}}
    try:
        g = json_schema_grammar(schema, SMALL)
    except SchemaUnsupportedError as exc:  # only for schemas that allow no value at all
        assert any(w in str(exc) for w in _UNSATISFIABLE), exc
        return
    text = g.sample(vocab, seed=seed, max_tokens=4000)
    assert g.accepts(text)
    # every keyword drawn here is enforced, except a minLength above a pattern's shortest match
    assert all("next to a pattern" in u for u in g.unenforced), g.unenforced
    assert _valid(schema, json.loads(text)) or g.unenforced, (text, schema)


def test_open_strings_share_one_state_and_stay_sound(vocab):
    schema = {"type": "object", "properties": {"s": {"type": "string"}, "t": {"maxLength": 3}}}
    g = json_schema_grammar(schema, JsonOptions(open_strings=True))
    assert g.accepts('{"s": "' + "x" * 1000 + '"}') and not g.accepts('{"t": "abcd"}')
    m = g.matcher(vocab)
    assert m.accept_bytes(b'{"s": "ab')
    state = m.state
    assert m.accept_bytes(b"cdefgh") and m.state == state  # no counter in the state


def test_bomb_limits_refuse_none_of_the_real_schemas():
    """JSONSchemaBench's schemas (../shared, when present) stay under both bomb limits."""
    from pathlib import Path

    from agent.llm.grammar.json_schema import SchemaBuilder

    folder = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "jsonschemabench"
    files = sorted(folder.rglob("*.json"))
    if not files:
        pytest.skip(f"no schemas in {folder}")
    limits = JsonOptions()
    assert limits.max_bound is not None
    for f in files:
        schema = json.loads(f.read_text())
        SchemaBuilder(schema, limits, False)  # raises past max_expansion
        bounds = [
            v
            for k, v in _keyword_values(schema)
            if k in ("maxLength", "maxItems", "maxProperties") and isinstance(v, (int, float))
        ]
        assert max(bounds, default=0) <= limits.max_bound, f


def _keyword_values(node):
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from _keyword_values(v)
    elif isinstance(node, list):
        for v in node:
            yield from _keyword_values(v)


@pytest.mark.parametrize(
    "schema",
    [
        # found by the fuzz test: "a" gets additionalProperties' array of numbers and the
        # branch's unique array of strings; no item fits both, so "a" is left out, uniqueItems too
        {
            "type": "object",
            "properties": {"b": {"type": "number", "exclusiveMinimum": 0}},
            "additionalProperties": {
                "type": "array",
                "items": {"type": "number", "exclusiveMinimum": 0},
                "minItems": 1,
            },
            "anyOf": [
                {"required": ["b"]},
                {
                    "properties": {
                        "a": {"type": "array", "items": {"enum": ["x", "y"]}, "uniqueItems": True}
                    }
                },
            ],
        },
        # the same for an optional property, and for a union branch, that cannot be generated
        {
            "type": "object",
            "properties": {
                "a": {
                    "type": "array",
                    "items": {"allOf": [{"type": "number"}, {"enum": ["x"]}]},
                    "minItems": 1,
                    "uniqueItems": True,
                },
            },
        },
        {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {"allOf": [{"type": "number"}, {"enum": ["x"]}]},
                    "minItems": 1,
                    "uniqueItems": True,
                },
            ]
        },
    ],
)
def test_a_part_left_out_leaves_no_unenforced_note(schema: dict) -> None:
    g = json_schema_grammar(schema, SMALL)
    assert g.unenforced == ()
