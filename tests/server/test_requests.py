"""Request parsing without HTTP: every odd body is a 400 naming the field, never a crash."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.llm.scripted import ScriptedModel
from agent.server.errors import APIError
from agent.server.requests import parse_json_body, prepare_chat, prepare_completion

MODEL = ScriptedModel(["x"], n_ctx=256)
TOOL = {
    "type": "function",
    "function": {
        "name": "f",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}},
            "required": ["a"],
        },
    },
}


def test_a_valid_chat_request_becomes_an_airoboros_prompt():
    prep = prepare_chat(
        {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "stop": "\n"}, MODEL
    )
    assert prep.prompt.endswith("USER: Hi ASSISTANT:") and prep.max_tokens == 5
    assert prep.sampling["stop"] == ["\n"] and prep.grammar is None


def test_tools_turn_the_last_message_into_the_function_prompt():
    prep = prepare_chat(
        {
            "messages": [{"role": "user", "content": "Do it"}],
            "tools": [TOOL],
            "tool_choice": "required",
        },
        MODEL,
    )
    assert "Input: Do it" in prep.prompt and "Available functions:\nf:" in prep.prompt
    assert prep.grammar.accepts('{"function": "f", "params": {"a": 1}}')
    assert not prep.grammar.accepts("plain text")
    auto = prepare_chat(
        {"messages": [{"role": "user", "content": "Do it"}], "tools": [TOOL]}, MODEL
    )
    assert auto.tool_mode == "auto" and auto.grammar.accepts("plain text")


def test_legacy_functions_are_accepted():
    prep = prepare_chat(
        {
            "messages": [{"role": "user", "content": "x"}],
            "functions": [TOOL["function"]],
            "function_call": {"name": "f"},
        },
        MODEL,
    )
    assert prep.tool_mode == "named" and prep.registry.names() == ["f"]


def test_context_overflow_is_reported_before_queuing():
    with pytest.raises(APIError) as exc:
        prepare_completion({"prompt": "word " * 400}, MODEL)
    assert exc.value.status == 400 and exc.value.code == "context_length_exceeded"
    assert prepare_completion({"prompt": "short"}, MODEL).max_tokens == 16  # OpenAI's default


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b"null", b"1", b'"s"', b"[]"])
def test_bodies_that_are_not_json_objects(raw):
    with pytest.raises(APIError) as exc:
        parse_json_body(raw)
    assert exc.value.status == 400


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5000) | st.floats(-3, 3) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "messages": st.one_of(
            _JSON,
            st.lists(
                st.fixed_dictionaries(
                    {"role": st.sampled_from(["user", "assistant", "system", "tool", "x"])},
                    optional={
                        "content": st.one_of(st.text(max_size=8), _JSON),
                        "tool_call_id": _JSON,
                        "tool_calls": st.one_of(
                            _JSON,
                            st.lists(
                                st.fixed_dictionaries(
                                    {},
                                    optional={
                                        "id": _JSON,
                                        "function": st.one_of(
                                            _JSON,
                                            st.fixed_dictionaries(
                                                {}, optional={"name": _JSON, "arguments": _JSON}
                                            ),
                                        ),
                                    },
                                ),
                                max_size=2,
                            ),
                        ),
                    },
                ),
                max_size=4,
            ),
        ),
        "prompt": _JSON,
        "max_tokens": _JSON,
        "temperature": _JSON,
        "top_p": _JSON,
        "seed": _JSON,
        "stop": _JSON,
        "stream": _JSON,
        "n": _JSON,
        "tools": st.one_of(_JSON, st.just([TOOL])),
        "tool_choice": _JSON,
        "response_format": st.one_of(
            _JSON,
            st.fixed_dictionaries(
                {"type": st.sampled_from(["json_object", "json_schema", "text"])},
                optional={"json_schema": _JSON},
            ),
        ),
        "logit_bias": _JSON,
        "presence_penalty": _JSON,
        "stream_options": _JSON,
    },
)


@settings(max_examples=300, deadline=None)
@given(_FIELDS)
def test_any_body_is_prepared_or_refused_with_a_400(body):
    raw = json.dumps(body).encode()
    for prepare in (prepare_chat, prepare_completion):
        try:
            prepare(parse_json_body(raw), MODEL)
        except APIError as exc:
            assert exc.status == 400 and exc.message
