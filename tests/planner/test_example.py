"""The bundled example: replays offline, is labelled as scripted, and can be remade identically."""

from __future__ import annotations

import importlib.util
import json
import socket
from pathlib import Path

import pytest

from agent.testing import replay_cassette

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CASSETTE = EXAMPLES / "nobel-prize.cassette.json"


def test_example_replays_offline_to_the_recorded_answer(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("replay touched the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    result = replay_cassette(CASSETTE)
    assert result.ok and "Louise Glück" in result.answer and "The Wild Iris" in result.answer
    assert [s.status for s in result.steps] == ["ok"] * 6
    assert [s.tool for s in result.steps] == [
        "DuckDuckGo",
        "KnowledgeModel",
        "DuckDuckGo",
        "HyperlinkExtractor",
        "TextScraper",
        "KnowledgeModel",
    ]


def test_example_is_labelled_as_a_scripted_offline_recording():
    data = json.loads(CASSETTE.read_text(encoding="utf-8"))
    assert data["models"]["default"]["info"]["format"] == "scripted"
    assert data["note"].startswith("Scripted, offline recording")
    assert data["run"]["question"] == (
        "Who won the Nobel Prize in Literature in 2020 and what is their most famous work?"
    )


def _strip_timings(data: dict) -> dict:
    data = json.loads(json.dumps(data))
    data["run"]["result"].pop("elapsed")
    for item in data["interactions"]:
        item.pop("timing", None)
    return data


def test_remaking_the_example_gives_the_same_cassette(tmp_path):
    spec = importlib.util.spec_from_file_location("make_nobel", EXAMPLES / "make_nobel_cassette.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "remade.json"
    try:
        code = module.main(["--out", str(out)])
    except OSError as exc:  # the fixed fixture port is taken on this machine
        pytest.skip(f"cannot serve the fixture web on port {module.PORT}: {exc}")
    assert code == 0
    remade = json.loads(out.read_text(encoding="utf-8"))
    committed = json.loads(CASSETTE.read_text(encoding="utf-8"))
    assert _strip_timings(remade) == _strip_timings(committed), (
        "the example no longer records the same run (a tool, prompt or parser changed): check the "
        "difference, then remake it with: python examples/make_nobel_cassette.py"
    )
