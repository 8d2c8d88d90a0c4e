"""The app-test example (examples/app_tests): its committed cassettes replay with no model and
no network, and recording them again gives the same files byte for byte."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import requests  # noqa: F401

# Imported here once: pytester's in-process runs drop the modules they import, and numpy (under
# the grammar and the server) and requests' cookie jar cannot be loaded twice in one process.
import agent.functions  # noqa: F401
import agent.functions.grammar  # noqa: F401
import agent.planner  # noqa: F401
import agent.server.app  # noqa: F401
import agent.tools.knowledge  # noqa: F401

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "app_tests"
CASSETTES = EXAMPLE / "cassettes" / "test_research_app"


@pytest.fixture
def example(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("conftest.py", "research_app.py", "test_research_app.py"):
        shutil.copy(EXAMPLE / name, pytester.path / name)
    shutil.copytree(EXAMPLE / "cassettes", pytester.path / "cassettes")
    monkeypatch.syspath_prepend(str(pytester.path))
    monkeypatch.delenv("CI", raising=False)
    return pytester


def test_committed_cassettes_replay_in_ci_without_model_or_network(example, monkeypatch):
    real_connect = socket.socket.connect

    def loopback_only(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1"):
            raise AssertionError(f"the replay reached for the network: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    monkeypatch.setenv("CI", "1")  # the CI default: replay only
    monkeypatch.setenv("AGENT_TEST_MODEL", str(example.path / "no-such-model.gguf"))
    example.runpytest().assert_outcomes(passed=3)


def test_recording_again_gives_the_same_files(example):
    shutil.rmtree(example.path / "cassettes")
    example.runpytest("--agent-record-mode=once").assert_outcomes(passed=3)
    remade = sorted((example.path / "cassettes" / "test_research_app").glob("*.json"))
    assert [p.name for p in remade] == sorted(p.name for p in CASSETTES.glob("*.json"))
    for path in remade:
        assert path.read_bytes() == (CASSETTES / path.name).read_bytes(), (
            f"{path.name} changed: the app, a prompt or the plugin changed; remake the example "
            "with: pytest examples/app_tests --agent-record-mode=all"
        )
