"""Streaming tool calls: pieces of a constrained answer -> OpenAI's deltas, however it is split."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.server.toolstream import ToolCallStreamer

NAMES = ["get_weather", "search"]


def run(pieces: list[str], message: dict) -> tuple[list[dict], ToolCallStreamer]:
    s = ToolCallStreamer(NAMES)
    deltas = [d for p in pieces for d in s.feed(p)]
    return deltas + s.finish(message), s


def split(text: str, cuts: list[int]) -> list[str]:
    cuts = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def assemble(deltas: list[dict]) -> tuple[str, str, str]:
    """(content, name, arguments) as a client rebuilds them."""
    content = "".join(d.get("content", "") for d in deltas)
    calls = [c for d in deltas for c in d.get("tool_calls", [])]
    name = "".join(c["function"].get("name", "") for c in calls)
    args = "".join(c["function"].get("arguments", "") for c in calls)
    return content, name, args


PARAMS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    params=st.dictionaries(st.text(max_size=6), PARAMS, max_size=4),
    indent=st.sampled_from([None, 2]),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_a_call_streams_its_name_first_then_arguments_that_add_up(name, params, indent, cuts):
    text = json.dumps({"function": name, "params": params}, indent=indent)
    message = {"tool_calls": [{"function": {"name": name}}]}
    deltas, s = run(split(text, cuts), message)
    first = deltas[0]["tool_calls"][0]
    assert first["id"].startswith("call_") and first["function"]["name"] == name
    assert all("id" not in c for d in deltas[1:] for c in d["tool_calls"])
    content, got_name, args = assemble(deltas)
    assert content == "" and got_name == name
    assert json.loads(args) == params


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=1, max_size=60), cuts=st.lists(st.integers(0, 100), max_size=8))
def test_text_streams_as_content_and_anything_else_is_never_lost(text, cuts):
    """Any answer at all: content adds up to the text, or a held answer comes whole at the end."""
    message = {"role": "assistant", "content": text.lstrip()}
    deltas, s = run(split(text, cuts), message)
    content, name, args = assemble(deltas)
    if s.mode == "call":  # only a real call head switches to call mode
        assert name in NAMES
    else:
        assert content.lstrip() == text.lstrip()


def test_text_is_streamed_before_the_answer_ends():
    s = ToolCallStreamer(NAMES)
    assert s.feed("  ") == []
    assert s.feed("Hello") == [{"content": "Hello"}]
    assert s.feed(" there") == [{"content": " there"}]


def test_keys_in_another_order_are_held_and_sent_whole():
    text = json.dumps({"params": {"q": "x" * 80}, "function": "search"})
    message = {"tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "search"}}]}
    deltas, s = run(split(text, [5, 50, 100]), message)
    assert s.mode == "held"
    assert deltas == [{"tool_calls": [{"index": 0, **message["tool_calls"][0]}]}]


def test_unknown_function_name_is_held():
    deltas, s = run(['{"function": "rm_rf", "params": {}}'], {"content": "x"})
    assert s.mode == "held" and deltas == [{"content": "x"}]
