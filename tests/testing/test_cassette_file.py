"""The cassette file: version 2 on disk (stable, sorted), version 1 migrated, bad files named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.cli import main
from agent.planner import CassetteError
from agent.planner.cassette_file import dumps, load, migrate_v1, upgrade
from agent.testing import replay_cassette

DATA = Path(__file__).resolve().parents[1] / "data" / "cassettes"
V1_EXAMPLE = DATA / "nobel-prize.v1.cassette.json"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _tool(tool: str, text: str, output: str = "out") -> dict:
    return {
        "kind": "tool",
        "request": {"tool": tool, "input": text},
        "response": {"output": output, "error": None, "status": "ok"},
    }


def _cassette(interactions: list) -> dict:
    return {"format": "agent.cassette", "version": 2, "interactions": interactions}


def test_v1_cassette_replays_through_replay_cassette_and_agent_replay(capsys):
    assert json.loads(V1_EXAMPLE.read_text(encoding="utf-8"))["version"] == 1
    result = replay_cassette(V1_EXAMPLE)
    assert result.ok and "The Wild Iris" in result.answer
    assert main(["replay", "-q", str(V1_EXAMPLE)]) == 0
    assert "The Wild Iris" in capsys.readouterr().out


def test_migrating_v1_gives_what_recording_now_writes():
    """The committed v2 example and the migrated v1 copy hold the same requests and answers."""
    old = upgrade(json.loads(V1_EXAMPLE.read_text(encoding="utf-8")))
    new = load(EXAMPLES / "nobel-prize.cassette.json")
    assert old["migrated_from"] == 1 and old["version"] == new["version"] == 2

    def essence(data: dict) -> list:
        return sorted(
            json.dumps([i["kind"], i["request"], i["response"]], sort_keys=True)
            for i in data["interactions"]
        )

    assert essence(old) == essence(new)
    assert old["run"]["question"] == new["run"]["question"]
    assert old["run"]["result"]["answer"] == new["run"]["result"]["answer"]


def test_file_is_the_same_whatever_the_recording_order():
    a, b, c = _tool("Search", "b"), _tool("Search", "a"), _tool("Reader", "z")
    first, second = dumps(_cassette([a, b, c])), dumps(_cassette([c, a, b]))
    assert first == second
    data = json.loads(first)
    assert [i["request"]["input"] for i in data["interactions"]] == ["z", "a", "b"]
    assert list(data) == sorted(data)  # sorted keys: a diff shows only what changed


def test_a_plugin_cassette_is_not_a_run_for_agent_replay(tmp_path, capsys):
    path = tmp_path / "plugin.json"
    path.write_text(dumps(_cassette([_tool("Search", "a")])))
    with pytest.raises(CassetteError, match="no recorded 'agent ask' run.*agent_cassette fixture"):
        replay_cassette(path)
    assert main(["replay", str(path)]) != 0
    assert "agent_cassette fixture" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [
        ("interactions:\n- request: {}\n", "not valid JSON"),  # a vcrpy YAML cassette
        ('{"version": 1, "interactions": []}', "not an agent cassette"),
        ('{"format": "vcrpy", "version": 2}', "not an agent cassette"),
        ('{"format": "agent.cassette", "version": 3}', "version 3.*upgrade agent"),
        ('{"format": "agent.cassette"}', "version None"),
        ('{"format": "agent.cassette", "version": 2}', "'interactions' must be a JSON list"),
        (
            '{"format": "agent.cassette", "version": 2, "interactions": [{"kind": "http"}]}',
            r"interactions\[0\] needs a field 'kind', one of generate, tool, tokenize",
        ),
        (
            '{"format": "agent.cassette", "version": 2, "interactions": '
            '[{"kind": "generate", "request": {"prompt": "p"}, "response": {"output": ""}}]}',
            r"interactions\[0\] \(generate\): field 'request.params'",
        ),
        (
            '{"format": "agent.cassette", "version": 2, "interactions": [{"kind": "tokenize", '
            '"request": {"text": "a", "bos": true}, "response": {"ids": "1 x"}}]}',
            "token ids separated by spaces",
        ),
        (
            '{"format": "agent.cassette", "version": 2, "interactions": [], "run": {}}',
            "'run.question'",
        ),
    ],
)
def test_malformed_or_foreign_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CassetteError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)


def test_migration_keeps_steps_timings_and_purposes():
    old = json.loads(V1_EXAMPLE.read_text(encoding="utf-8"))
    new = migrate_v1(old)
    tools = [i for i in new["interactions"] if i["kind"] == "tool"]
    assert len(tools) == len(old["tool_calls"])
    assert tools[0]["step"] == old["tool_calls"][0]["step"]
    assert tools[0]["timing"]["started"] == old["tool_calls"][0]["started"]
    purposes = [i.get("purpose") for i in new["interactions"] if i["kind"] == "generate"]
    assert purposes == [g["purpose"] for g in old["generations"]]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=16,
)
_interaction = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["generate", "tool", "tokenize", "other"]),
        "request": st.dictionaries(
            st.sampled_from(["prompt", "params", "tool", "input", "text", "bos"]), _json
        ),
        "response": st.dictionaries(st.sampled_from(["output", "error", "ids"]), _json),
    }
)


@settings(max_examples=150, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "format": st.just("agent.cassette"),
            "version": st.sampled_from([1, 2, 3, "2", None]),
            "interactions": st.lists(_interaction, max_size=3) | _json,
        },
        optional={"run": _json, "models": _json, "generations": _json, "tool_calls": _json},
    )
    | _json
)
def test_fuzz_reading_only_accepts_or_raises_cassette_error(data):
    try:
        out = upgrade(data)
    except CassetteError:
        return
    assert out["version"] == 2 and isinstance(out["interactions"], list)
    dumps(out)  # whatever is accepted can be written back
