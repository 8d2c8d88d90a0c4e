"""parse_function_call: finding, repairing, typing and validating the model's call."""

from __future__ import annotations

import pytest

from agent.errors import AgentError
from agent.functions import CallError, FunctionCall, FunctionCallError, parse_function_call

CARD_RESPONSE = """{
  "function": "file_analytics",
  "params": {
    "action": "count_occurrences",
    "filters": {
      "keyword": "Python"
    }
  }
}"""
CARD_RESPONSE_YAML = """function: file_analytics
params:
  action: count_occurrences
  filters:
    keyword: Python"""
CARD_PARAMS = {"action": "count_occurrences", "filters": {"keyword": "Python"}}


def fail(text, registry, **kw) -> CallError:
    with pytest.raises(FunctionCallError) as info:
        parse_function_call(text, registry, **kw)
    assert isinstance(info.value, AgentError)
    return info.value


# -- the card's example ---------------------------------------------------------------------


def test_card_response_json(card_registry):
    call = parse_function_call(CARD_RESPONSE, card_registry)
    assert call == FunctionCall("file_analytics", CARD_PARAMS, format="json", raw=CARD_RESPONSE)
    assert call.repairs == ()
    assert call.to_dict() == {"function": "file_analytics", "params": CARD_PARAMS}


def test_card_response_yaml(card_registry):
    call = parse_function_call(CARD_RESPONSE_YAML, card_registry)
    assert (call.name, call.params, call.format) == ("file_analytics", CARD_PARAMS, "yaml")
    assert type(call.params["action"]) is str  # no loader marks leak out


def test_model_text_starts_with_the_space_after_assistant_colon(card_registry):
    assert parse_function_call(" " + CARD_RESPONSE, card_registry).params == CARD_PARAMS
    assert parse_function_call(" " + CARD_RESPONSE_YAML, card_registry).params == CARD_PARAMS


# -- finding the call ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrap",
    [
        "```json\n{}\n```",
        "```\n{}\n```",
        "```JSON\n{}\n```\n",
        "~~~\n{}\n~~~",
        "Here is the function call:\n\n{}\n\nThis counts how often Python appears.",
        "Response: {}",
        "Sure! ```json\n{}\n``` Let me know if you need anything else.",
        "```json\n{}",  # fence never closed
        "{} {{not json}}",
    ],
)
def test_json_call_found_in_fences_and_prose(card_registry, wrap):
    text = wrap.replace("{}", CARD_RESPONSE, 1)
    call = parse_function_call(text, card_registry)
    assert call.params == CARD_PARAMS and call.format == "json" and call.raw == text


@pytest.mark.parametrize(
    "wrap",
    [
        "```yaml\n{}\n```",
        "```yml\n{}\n```\nThat should do it.",
        "Response:\n{}",
        "The best function is below.\n\n{}\n\nIt counts the keyword.",
        "Response:\n  {}",
    ],
)
def test_yaml_call_found_in_fences_and_prose(card_registry, wrap):
    body = CARD_RESPONSE_YAML
    if wrap.endswith("  {}"):
        body = body.replace("\n", "\n  ")
    call = parse_function_call(wrap.replace("{}", body), card_registry)
    assert call.params == CARD_PARAMS and call.format == "yaml"


def test_yaml_with_params_before_function(card_registry):
    text = (
        "params:\n  action: count_occurrences\n  filters:\n    keyword: Python\n"
        "function: file_analytics"
    )
    assert parse_function_call(text, card_registry).params == CARD_PARAMS


def test_prose_that_looks_like_a_key_before_the_yaml_call(card_registry):
    text = "The best option: {something odd]\n" + CARD_RESPONSE_YAML
    assert parse_function_call(text, card_registry).params == CARD_PARAMS


def test_braces_inside_strings_do_not_confuse_the_scanner(card_registry):
    text = (
        '{"function": "file_analytics", "params": {"action": "find } {", '
        '"filters": {"keyword": "a \\"quoted\\" }"}}} trailing'
    )
    call = parse_function_call(text, card_registry)
    assert call.params["action"] == "find } {"
    assert call.params["filters"]["keyword"] == 'a "quoted" }'


def test_first_valid_candidate_wins_over_earlier_invalid_ones(card_registry):
    text = (
        'Example: {"function": "file_analytics"} is incomplete, so:\n'
        '{"function": "file_analytics", "params": {"action": "a", "filters": {"keyword": "b"}}}\n'
        '{"function": "file_analytics", '
        '"params": {"action": "second", "filters": {"keyword": "c"}}}'
    )
    assert parse_function_call(text, card_registry).params["action"] == "a"


def test_format_hint_breaks_ties_between_formats(card_registry):
    text = (
        CARD_RESPONSE_YAML.replace("Python", "yaml-one")
        + "\n\n"
        + CARD_RESPONSE.replace("Python", "json-one")
    )
    assert parse_function_call(text, card_registry).params["filters"]["keyword"] == "yaml-one"
    assert (
        parse_function_call(text, card_registry, format="json").params["filters"]["keyword"]
        == "json-one"
    )


def test_openai_shapes_and_alias_keys(card_registry):
    args = '{\\"action\\": \\"x\\", \\"filters\\": {\\"keyword\\": \\"y\\"}}'
    nested = '{"function": {"name": "file_analytics", "arguments": "' + args + '"}}'
    assert parse_function_call(nested, card_registry).params == {
        "action": "x",
        "filters": {"keyword": "y"},
    }
    for key in ("parameters", "arguments", "args"):
        text = (
            f'{{"function": "file_analytics", "{key}": '
            '{"action": "x", "filters": {"keyword": "y"}}}'
        )
        assert parse_function_call(text, card_registry).params["action"] == "x"


@pytest.mark.parametrize(
    "text",
    [
        '{"Function": "file_analytics", "Params": {"action": "a", "filters": {"keyword": "k"}}}',
        "Function: file_analytics\nParams:\n  action: a\n  filters:\n    keyword: k",
        '{"name": "file_analytics", "arguments": {"action": "a", "filters": {"keyword": "k"}}}',
        '{"function": "file_analytics()", "params": {"action": "a", "filters": {"keyword": "k"}}}',
        "- function: file_analytics\n  params:\n    action: a\n    filters:\n      keyword: k",
        "\u201cfunction\u201d: x {\u201cfunction\u201d: \u201cfile_analytics\u201d, "
        "\u201cparams\u201d: {\u201caction\u201d: \u201ca\u201d, "
        "\u201cfilters\u201d: {\u201ckeyword\u201d: \u201ck\u201d}}}",
    ],
)
def test_key_spelling_drift(card_registry, text):
    call = parse_function_call(text, card_registry)
    assert (call.name, call.params) == (
        "file_analytics",
        {"action": "a", "filters": {"keyword": "k"}},
    )


def test_name_key_alone_is_not_a_call(card_registry):
    assert fail('{"name": "John", "age": 3}', card_registry).kind == "no_call"


def test_function_name_matched_case_insensitively(card_registry):
    call = parse_function_call(
        '{"function": "File_Analytics", "params": {"action": "a", "filters": {"keyword": "k"}}}',
        card_registry,
    )
    assert call.name == "file_analytics"


def test_missing_params_means_no_params(registry):
    registry.add("ping", "Checks the service.", {"type": "object", "properties": {}})
    assert parse_function_call('{"function": "ping"}', registry).params == {}
    assert parse_function_call("function: ping\nparams:\n", registry).params == {}


# -- repairs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, repair",
    [
        (
            '{"function": "file_analytics", '
            '"params": {"action": "a", "filters": {"keyword": "k",},},}',
            "trailing commas",
        ),
        (
            '{"function": "file_analytics", '
            '"params": {"action": "a", "filters": {"keyword": "k"}, }\n}',
            "trailing commas",
        ),
        (
            "{'function': 'file_analytics', "
            "'params': {'action': 'a', 'filters': {'keyword': 'k'}}}",
            "single quotes",
        ),
        (
            '{"function": "file_analytics", // the best fit\n "params": {"action": "a", '
            '/* why */ "filters": {"keyword": "k"}}}',
            "comments",
        ),
        (
            "{function: file_analytics, /* pick */ params: {action: a, filters: {keyword: k}}}",
            "unquoted keys or values",
        ),
        (
            '{"function": "file_analytics", '
            '"params": {"action": "a\nb", "filters": {"keyword": "k"}}}',
            "control characters in strings",
        ),
    ],
)
def test_common_json_slips_are_repaired(card_registry, text, repair):
    call = parse_function_call(text, card_registry)
    assert call.params["filters"] == {"keyword": "k"}
    assert repair in call.repairs


def test_yaml_flow_style_is_yaml(registry):
    call = parse_function_call(
        "{function: set_country, params: {country: NO, notify: on}}", registry
    )
    assert (call.format, call.repairs) == ("yaml", ())
    assert call.params == {"country": "NO", "notify": True}


def test_long_shot_yaml_reading_is_only_used_when_it_gives_a_valid_call(registry):
    # leading zeros are not JSON; read as YAML the schema decides what 012 meant
    call = parse_function_call(
        '{"function": "set_country", "params": {"country": "SE", "count": 012}}', registry
    )
    assert call.params["count"] == 12 and call.format == "yaml"
    call = parse_function_call('{"function": set_country, "params": {"country": SE}}', registry)
    assert call.params == {"country": "SE"}
    # ... but a reading that fails anyway does not hide the JSON error
    err = fail('{"function": "set_country", "params": {"country": }}', registry)
    assert err.kind == "invalid_syntax" and "not valid JSON" in err.message


@pytest.mark.parametrize(
    "text",
    [
        '{"function_call": {"name": "set_country", "arguments": "{\\"country\\": \\"SE\\"}"}}',
        '{"tool_calls": [{"id": "1", "type": "function", "function": {"name": "set_country", '
        '"arguments": {"country": "SE"}}}]}',
        '{"tool_call": {"function": "set_country", "params": {"country": "SE"}}}',
    ],
)
def test_openai_wrappers_are_unwrapped(registry, text):
    call = parse_function_call(text, registry)
    assert (call.name, call.params) == ("set_country", {"country": "SE"})


def test_python_literals_become_json(registry):
    text = (
        "{'function': 'set_country', 'params': {'country': 'NO', 'notify': True, "
        "'note': None, 'extra': False}}"
    )
    call = parse_function_call(text, registry)
    assert call.params == {"country": "NO", "notify": True, "note": None, "extra": False}
    assert set(call.repairs) == {"Python literals", "single quotes"}


def test_repairs_never_touch_string_contents(registry):
    text = (
        "{'function': 'set_country', 'params': {'country': \"it's True, None // x,}\", "
        "'note': 'say \"hi\" /* not a comment */', }}"
    )
    call = parse_function_call(text, registry)
    assert call.params == {
        "country": "it's True, None // x,}",
        "note": 'say "hi" /* not a comment */',
    }


def test_yaml_values_with_colon_space_or_hash_are_quoted(registry):
    text = (
        "function: set_country\nparams:\n  country: Note: this is Norway\n"
        "  postcode: C# tutorial #1\n"
    )
    call = parse_function_call(text, registry)
    assert call.params == {"country": "Note: this is Norway", "postcode": "C# tutorial #1"}
    assert call.repairs == ("unquoted special characters",)


def test_yaml_hash_in_a_value_is_text_unless_only_a_comment_fits(registry):
    call = parse_function_call(
        "function: file_analytics\nparams:\n  action: find issue #42\n"
        "  filters:\n    keyword: room #5 # really",
        registry,
    )
    assert call.params == {"action": "find issue #42", "filters": {"keyword": "room #5 # really"}}
    registry.add(
        "units",
        "U.",
        {
            "type": "object",
            "properties": {"unit": {"enum": ["metric", "imperial"]}},
            "required": ["unit"],
        },
    )
    call = parse_function_call("function: units\nparams:\n  unit: metric  # the default", registry)
    assert call.params == {"unit": "metric"} and call.repairs == ()


# -- YAML typing traps -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written, expected",
    [
        ("NO", "NO"),
        ("no", "no"),
        ("on", "on"),
        ("Yes", "Yes"),
        ("1:20", "1:20"),
        ("012", "012"),
        ("1.10", "1.10"),
        ("1e3", "1e3"),
        ("2024-01-05", "2024-01-05"),
        ("null", "null"),
        ("~", "~"),
        ("true", "true"),
        ("0x1F", "0x1F"),
        ("'quoted'", "quoted"),
    ],
)
def test_yaml_scalars_stay_strings_where_the_schema_says_string(registry, written, expected):
    text = f"function: set_country\nparams:\n  country: {written}\n  postcode: {written}"
    call = parse_function_call(text, registry)
    assert call.params == {"country": expected, "postcode": expected}


def test_departure_time_is_not_sexagesimal(registry):
    call = parse_function_call(
        "function: set_country\nparams:\n  country: FR\n  departure: 1:20", registry
    )
    assert call.params["departure"] == "1:20"


@pytest.mark.parametrize(
    "field, written, expected",
    [
        ("notify", "on", True),
        ("notify", "NO", False),
        ("notify", "true", True),
        ("notify", "False", False),
        ("count", "012", 12),
        ("count", "5", 5),
        ("count", "0x10", 16),
        ("count", "5.0", 5),
        ("ratio", "1e3", 1000.0),
        ("ratio", "1.10", 1.1),
        ("ratio", "7", 7),
        ("note", "~", None),
        ("note", "null", None),
        ("note", "", None),
        ("note", "NO", "NO"),
        ("note", "''", ""),
        ("note", "'null'", "null"),
        ("extra", "NO", "NO"),
        ("extra", "5", 5),
        ("extra", "1.5", 1.5),
        ("extra", "true", True),
        ("extra", "null", None),
        ("extra", "1:20", "1:20"),
        ("extra", "012", 12),
    ],
)
def test_yaml_scalars_are_typed_by_the_schema(registry, field, written, expected):
    call = parse_function_call(
        f"function: set_country\nparams:\n  country: SE\n  {field}: {written}", registry
    )
    assert call.params[field] == expected
    assert type(call.params[field]) is type(expected)


def test_quoted_yaml_number_is_not_an_integer(registry):
    err = fail('function: set_country\nparams:\n  country: SE\n  count: "5"', registry)
    assert err.kind == "invalid_params"
    assert err.errors == [("$.count", "'5' is not of type 'integer'")]


def test_yaml_enum_of_numbers(registry):
    call = parse_function_call(
        "function: send_email\nparams:\n  to: [a@b.org]\n  subject: Hi\n  priority: 2", registry
    )
    assert call.params == {"to": ["a@b.org"], "subject": "Hi", "priority": 2}


def test_json_integral_float_becomes_int_where_schema_wants_integer(registry):
    call = parse_function_call(
        '{"function": "set_country", "params": {"country": "SE", "count": 3.0, "ratio": 2.0}}',
        registry,
    )
    assert call.params["count"] == 3 and type(call.params["count"]) is int
    assert type(call.params["ratio"]) is float


def test_json_values_are_not_coerced(registry):
    err = fail('{"function": "set_country", "params": {"country": 47, "notify": "yes"}}', registry)
    assert err.kind == "invalid_params"
    assert [p for p, _ in err.errors] == ["$.country", "$.notify"]


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n",
        "I'm sorry, I can't find a suitable function.",
        "The answer is {42}.",
        "We could use a {curly} approach.",
        "[1, 2, 3]",
    ],
)
def test_no_call(card_registry, text):
    err = fail(text, card_registry)
    assert err.kind == "no_call"
    assert "function" in err.message


def test_an_object_without_function_or_params_is_no_call(card_registry):
    assert fail('{"answer": 42}', card_registry).kind == "no_call"


def test_nan_is_not_json(registry):
    err = fail('{"function": "set_country", "params": {"country": "SE", "ratio": NaN}}', registry)
    assert err.kind == "invalid_syntax" and "NaN is not valid JSON" in err.message


def test_no_call_message_quotes_the_answer(card_registry):
    assert "'Nothing to do here.'" in fail("Nothing to do here.", card_registry).message


@pytest.mark.parametrize(
    "text, words",
    [
        (
            '{"function": "file_analytics", "params": {"action": "count_occurrences", "filters": {',
            "never closed",
        ),
        ('{"function": "file_analytics", "params": {"action" "x"}}', "not valid JSON"),
        ('{"function": "file_analytics", "params": {"action": "x", "action": "y"}}', "duplicate"),
        (
            '{"function": "file_analytics", "params": {"action": "x" "filters": {}}}',
            "not valid JSON",
        ),
        ("function: file_analytics\nparams:\n  action: [unclosed\n", "cannot be read"),
        ("function: file_analytics\nfunction: other", "cannot be read"),
        ("function: file_analytics\nparams: &a\n  x: *a", "cannot be read"),
        (
            "function: file_analytics\nparams: !!python/object/apply:os.system [ls]",
            "cannot be read",
        ),
        ('{"function": 42, "params": {}}', "must be a function's name"),
        ('{"function": ["a"], "params": {}}', "must be a function's name"),
        ('{"params": {"action": "x"}}', 'no "function" key'),
    ],
)
def test_invalid_syntax(card_registry, text, words):
    err = fail(text, card_registry)
    assert err.kind == "invalid_syntax", err
    assert words in err.message
    assert "line 1" in err.message or "line" not in err.message


def test_invalid_syntax_names_the_line(card_registry):
    err = fail(
        'Let me think.\nOk:\n{"function": "file_analytics", "params": {"a": }}', card_registry
    )
    assert err.kind == "invalid_syntax" and "line 3" in err.message


def test_unknown_function_suggests_closest_names(registry):
    err = fail('{"function": "file_analytic", "params": {}}', registry)
    assert err.kind == "unknown_function"
    assert err.suggestions[0] == "file_analytics"
    assert err.function == "file_analytic"
    assert "did you mean 'file_analytics'" in err.message
    assert "file_analytics, set_country, send_email" in err.message


def test_unknown_function_without_close_names(registry):
    err = fail("function: launch_rocket\nparams:\n  target: moon", registry)
    assert err.kind == "unknown_function" and err.suggestions == []
    assert "did you mean" not in err.message


def test_invalid_params_lists_every_violation_with_its_json_path(registry):
    text = (
        '{"function": "send_email", "params": {"to": ["bob@example.com", "not-an-email"], '
        '"subject": "' + "x" * 60 + '", "when": "2024-13-45", "priority": 7, "cc": "x"}}'
    )
    err = fail(text, registry)
    assert err.kind == "invalid_params" and err.function == "send_email"
    paths = [p for p, _ in err.errors]
    assert paths == ["$", "$.priority", "$.subject", "$.when", "$.to[1]"]
    messages = dict(err.errors)
    assert "'cc' was unexpected" in messages["$"]
    assert "is not a 'email'" in messages["$.to[1]"]
    assert "is not a 'date'" in messages["$.when"]
    assert "is too long" in messages["$.subject"]
    assert "7 is not one of [1, 2, 3]" in messages["$.priority"]
    for path, _ in err.errors:
        assert path in err.message


def test_invalid_params_missing_required_nested(card_registry):
    err = fail(
        '{"function": "file_analytics", "params": {"action": "x", "filters": {}}}', card_registry
    )
    assert err.errors == [("$.filters", "'keyword' is a required property")]


def test_params_that_are_not_an_object(card_registry):
    for params in ('"Python"', "[1, 2]", "5"):
        err = fail(f'{{"function": "file_analytics", "params": {params}}}', card_registry)
        assert err.kind == "invalid_params"
        assert err.errors[0][0] == "$"


def test_furthest_failure_is_reported(registry):
    text = (
        '{"function": "nope"}\n'
        '{"function": "set_country", "params": {"country": 1}}\n'
        '{"function": "broken", '
    )
    err = fail(text, registry)
    assert err.kind == "invalid_params"


def test_error_string_leads_with_the_kind(card_registry):
    assert str(fail("hello", card_registry)).startswith("no_call: ")


def test_to_dict_is_json_ready(registry):
    err = fail('{"function": "send_email", "params": {"to": []}}', registry)
    d = err.to_dict()
    assert d["kind"] == "invalid_params" and d["function"] == "send_email"
    assert {"path": "$", "message": "'subject' is a required property"} in d["errors"]


def test_non_text_input_is_no_call(card_registry):
    assert fail(None, card_registry).kind == "no_call"  # type: ignore[arg-type]


def test_deep_nesting_is_an_error_not_a_crash(card_registry):
    text = '{"function": "file_analytics", "params": ' + "[" * 5000 + "]" * 5000 + "}"
    assert fail(text, card_registry).kind in ("invalid_syntax", "invalid_params")
