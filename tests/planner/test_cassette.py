"""Record a run to a cassette and replay it: deterministic, offline, divergences named."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.llm.scripted import ScriptedModel
from agent.planner import (
    CassetteDivergenceError,
    CassetteError,
    RecordingModel,
    ask,
    load_cassette,
    make_cassette,
    replay,
    save_cassette,
)
from agent.planner.cassette import check_cassette
from agent.testing import replay_cassette
from agent.tools.registry import ToolRegistry
from tests.planner import cli_tools

PLAN = (
    "Plan: search first\n:evidence0: = Search[meaning of life]\n"
    "Plan: read what was found\n:evidence1: = Reader[:evidence0:]\n"
    "Plan: also try a broken service\n:evidence2: = Broken[x]\n"
    "Answer: :evidence1:\n"
)


def _tools() -> ToolRegistry:
    reg = ToolRegistry()
    for f in (cli_tools.Search, cli_tools.Reader, cli_tools.Broken):
        reg.add(f)
    return reg


def _record(tmp_path: Path) -> tuple[Path, object]:
    model = RecordingModel(ScriptedModel([PLAN], chunk_size=5))
    tools = _tools()
    result = ask(model, "What is the meaning of life?", tools)
    path = tmp_path / "run.cassette.json"
    save_cassette(make_cassette(result, model=model, tools=tools, note="test"), path)
    return path, result


def test_recorded_cassette_holds_prompts_outputs_and_tool_calls(tmp_path):
    path, result = _record(tmp_path)
    data = json.loads(path.read_text())
    assert data["format"] == "agent.cassette" and data["version"] == 2
    run = data["run"]
    assert run["question"] == "What is the meaning of life?"
    assert data["models"]["default"]["info"]["format"] == "scripted"
    (gen,) = [i for i in data["interactions"] if i["kind"] == "generate"]
    assert gen["purpose"] == "plan" and gen["response"]["output"] == PLAN.rstrip("\n") + "\n"
    assert gen["request"]["prompt"].endswith("Question: What is the meaning of life? ASSISTANT:")
    calls = {i["step"]: i for i in data["interactions"] if i["kind"] == "tool"}
    assert calls[":evidence1:"]["request"]["input"] == cli_tools.Search("meaning of life")
    assert calls[":evidence2:"]["response"]["status"] == "failed"
    assert calls[":evidence2:"]["response"]["error"] == "the service is down"
    assert run["result"]["answer"] == result.answer and result.ok


def test_replay_reproduces_the_run_deterministically(tmp_path, monkeypatch):
    path, recorded = _record(tmp_path)

    def no_network(*args, **kwargs):
        raise AssertionError("replay touched the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    first, second = replay_cassette(path), replay(path)
    for r in (first, second):
        assert r.answer == recorded.answer and r.evidence == recorded.evidence
        assert [(s.id, s.status, s.input) for s in r.steps] == [
            (s.id, s.status, s.input) for s in recorded.steps
        ]


def test_divergent_tool_input_is_named_by_step(tmp_path):
    path, _ = _record(tmp_path)
    data = json.loads(path.read_text())
    for item in data["interactions"]:
        if item.get("step") == ":evidence1:":
            item["request"]["input"] = "something else"
    with pytest.raises(CassetteDivergenceError, match=r"step :evidence1: \(Reader\)"):
        replay(data)


def test_changed_prompt_is_a_divergence(tmp_path):
    path, _ = _record(tmp_path)
    data = json.loads(path.read_text())
    data["run"]["tools"][0]["description"] = "A different description."
    with pytest.raises(CassetteDivergenceError, match="first differs .* at character"):
        replay(data)


def test_different_answer_is_a_divergence(tmp_path):
    path, _ = _record(tmp_path)
    data = json.loads(path.read_text())
    data["run"]["result"]["answer"] = "43"
    with pytest.raises(CassetteDivergenceError, match="different answer"):
        replay(data)
    assert replay(data, check_answer=False).answer != "43"


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "not valid JSON"),
        ("[]", "not an agent cassette"),
        ('{"format": "agent.cassette", "version": 99}', "version 99"),
        ('{"format": "agent.cassette", "version": 1, "question": "q"}', "field 'tools'"),
        (
            '{"format": "agent.cassette", "version": 1, "question": "q", "tools": [], '
            '"generations": [], "tool_calls": [{"tool": 1}], "result": {}}',
            r"tool_calls\[0\]",
        ),
    ],
)
def test_malformed_cassettes_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CassetteError, match=message):
        load_cassette(path)


def test_missing_cassette_file(tmp_path):
    with pytest.raises(CassetteError, match="cannot read cassette"):
        load_cassette(tmp_path / "nope.json")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)
_keys = st.sampled_from(
    ["format", "version", "question", "tools", "generations", "tool_calls", "result"]
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_keys, _json, max_size=7) | _json)
def test_fuzz_cassette_check_only_accepts_or_raises_cassette_error(data):
    if isinstance(data, dict) and "format" in data:
        data["format"] = "agent.cassette"
    try:
        check_cassette(data)
    except CassetteError:
        pass


def test_recording_model_logs_even_when_the_consumer_stops_early():
    model = RecordingModel(ScriptedModel(["abcdefgh"], chunk_size=2))
    gen = model.generate("p", max_tokens=5)
    assert next(gen) == "ab"
    gen.close()
    assert model.generations == [
        {"prompt": "p", "params": {"max_tokens": 5, "constrained": False}, "output": "ab"}
    ]
