"""Property tests: random text gives only a FunctionCall or a FunctionCallError, and valid calls
survive any wrapping, any YAML quoting and Python-style repr."""

from __future__ import annotations

import json

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from agent.functions import FunctionCall, FunctionCallError, FunctionRegistry, parse_function_call

REG = FunctionRegistry()
REG.add(
    "file_analytics",
    "Ops on a text file.",
    {
        "type": "object",
        "properties": {
            "action": {"type": "string"},
            "filters": {"type": "object", "properties": {"keyword": {"type": "string"}}},
            "count": {"type": "integer"},
            "flag": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "note": {"type": ["string", "null"]},
        },
        "required": ["action"],
    },
)
REG.add("ping", "Ping.")

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKENS = st.sampled_from(
    [
        "{",
        "}",
        "[",
        "]",
        '"',
        "'",
        ":",
        ",",
        " ",
        "\n",
        "  ",
        "function",
        "params",
        '"function"',
        '"params"',
        "file_analytics",
        "ping",
        "action",
        "filters",
        "keyword",
        "True",
        "None",
        "null",
        "```",
        "```json",
        "```yaml",
        "- ",
        "#",
        "&a",
        "*a",
        "!!python/object",
        "\\",
        "NO",
        "1:20",
        "012",
        "---",
        "\t",
        "//",
        "/*",
        "*/",
        "Response:",
        "function:",
        "params:",
        "  action: x",
    ]
)
JSONISH = st.lists(TOKENS, max_size=40).map("".join)


def check(text: str) -> None:
    try:
        result = parse_function_call(text, REG)
    except FunctionCallError as exc:
        assert exc.kind in ("no_call", "invalid_syntax", "unknown_function", "invalid_params")
        assert exc.message and str(exc).startswith(exc.kind)
        return
    assert isinstance(result, FunctionCall)
    assert result.name in REG.names()
    json.dumps(result.params)  # always plain JSON data
    assert Draft202012Validator(REG.schema(result.name)).is_valid(result.params)


@FAST
@given(st.text(max_size=400))
def test_random_text(text):
    check(text)


@FAST
@given(JSONISH)
def test_random_structured_text(text):
    check(text)


@FAST
@given(JSONISH, JSONISH)
def test_random_text_around_a_call(before, after):
    check(before + '{"function": "ping", "params": {}}' + after)


VALID = [
    '{"function": "file_analytics", "params": {"action": "count", "filters": {"keyword": "Py"}}}',
    "function: file_analytics\nparams:\n  action: count\n  count: 012\n  flag: NO\n"
    "  tags: [a, 'b']\n  note: ~",
    "```json\n{'function': 'ping', 'params': {},}\n```",
]


@FAST
@given(
    st.sampled_from(VALID),
    st.lists(
        st.tuples(
            st.integers(0, 200),
            st.sampled_from(
                ["", "{", "}", '"', "'", ":", ",", "\n", " ", "#", "[", "]", "-", "x", "0"]
            ),
        ),
        max_size=4,
    ),
)
def test_mutated_calls(text, edits):
    for offset, insert in edits:  # delete one character at pos, insert another
        pos = offset % (len(text) + 1)
        text = text[:pos] + insert + text[pos + 1 :]
    check(text)


PRINTABLE = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
PARAMS = st.fixed_dictionaries(
    {"action": PRINTABLE},
    optional={
        "filters": st.fixed_dictionaries({}, optional={"keyword": PRINTABLE}),
        "count": st.integers(-(10**12), 10**12),
        "flag": st.booleans(),
        "tags": st.lists(PRINTABLE, max_size=4),
        "note": st.none() | PRINTABLE,
    },
)
PROSE = st.text(
    st.characters(blacklist_characters="{}`:#-\"'", blacklist_categories=("Cs",)), max_size=60
)


@FAST
@given(
    PARAMS, PROSE, PROSE, st.sampled_from(["{}", "```json\n{}\n```", "```\n{}\n```"]), st.booleans()
)
def test_json_calls_round_trip_through_any_wrapping(params, before, after, fence, indent):
    call = json.dumps(
        {"function": "file_analytics", "params": params},
        indent=2 if indent else None,
        ensure_ascii=False,
    )
    text = before + "\n" + fence.replace("{}", call) + "\n" + after
    parsed = parse_function_call(text, REG)
    assert parsed.params == params and parsed.format == "json"


@FAST
@given(PARAMS, st.booleans())
def test_yaml_calls_round_trip_whatever_the_quoting(params, flow):
    text = yaml.safe_dump(
        {"function": "file_analytics", "params": params},
        allow_unicode=True,
        default_flow_style=flow,
        sort_keys=False,
    )
    parsed = parse_function_call(text, REG)
    assert parsed.params == params


@FAST
@given(PARAMS)
def test_python_repr_calls_are_repaired(params):
    safe = json.loads(json.dumps(params))
    if "\\" in repr(safe):  # Python-only escapes (\x00...) are not JSON: out of scope
        return
    parsed = parse_function_call(repr({"function": "file_analytics", "params": safe}), REG)
    assert parsed.params == safe


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["action", "count", "flag", "note", "tags"]),
        st.sampled_from(
            [
                "NO",
                "yes",
                "on",
                "1:20",
                "012",
                "0x1F",
                "1e3",
                "~",
                "null",
                "true",
                "5",
                "-3",
                "1.5",
                ".inf",
                "y",
                "n",
                "",
            ]
        ),
        min_size=1,
    )
)
def test_unquoted_yaml_scalars_follow_the_schema(values):
    values.setdefault("action", "x")
    body = "\n".join(f"  {k}: {v}" for k, v in values.items())
    try:
        call = parse_function_call(f"function: file_analytics\nparams:\n{body}", REG)
    except FunctionCallError as exc:
        assert exc.kind == "invalid_params"
        return
    if "action" in values:
        assert call.params["action"] == values["action"]  # a string stays what was written
    if "count" in call.params:
        assert type(call.params["count"]) is int
    if "flag" in call.params:
        assert type(call.params["flag"]) is bool
    if "note" in call.params:
        assert call.params["note"] is None or call.params["note"] == values["note"]
