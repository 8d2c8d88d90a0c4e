"""The pytest plugin, end to end through ``pytester``: an app's test records once, replays in CI."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

# Imported here once: pytester's in-process runs drop the modules they import, and numpy (under
# the grammar and the server) cannot be loaded twice in one process.
import agent.functions  # noqa: F401
import agent.functions.grammar  # noqa: F401
import agent.planner  # noqa: F401
import agent.server.app  # noqa: F401
import agent.tools.knowledge  # noqa: F401

pytest_plugins = ["pytester"]

CONFTEST = '''
import json, os, random, time
import pytest
from agent.llm.scripted import ScriptedModel

SECRET = "sk-live-7f3a9c1e5b"
PLAN = """Plan: look up both facts at once.
:evidence0: = Search[capital of France]
:evidence1: = Search[capital of Italy]
Plan: read each one.
:evidence2: = KnowledgeModel[What is the capital of France, given :evidence0:?]
:evidence3: = KnowledgeModel[What is the capital of Italy, given :evidence1:?]
Answer: :evidence2: and :evidence3:
"""


def answer(prompt):
    log = os.environ.get("PROMPT_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(prompt) + "\\n")
    version = os.environ.get("ANSWER_VERSION", "1")
    if "Here are the tools available" in prompt:
        return PLAN
    if "select the most suitable function" in prompt:
        return '{"function": "lookup", "params": {"key": "tz", "api_key": "%s"}}' % SECRET
    instruction = prompt.rsplit("BEGININSTRUCTION", 1)[-1]
    for country, city in (("France", "Paris"), ("Italy", "Rome")):
        if country in instruction:
            return f"{city} (v{version})"
    return "I don't know."


class Search:
    """Search[query]: finds one fact."""

    name = "Search"
    description = "Find a fact."

    def __call__(self, text):
        if os.environ.get("JITTER"):
            time.sleep(random.random() * 0.02)
        return {"capital of France": "Paris is the capital of France.",
                "capital of Italy": "Rome is the capital of Italy."}.get(text, "nothing")


@pytest.fixture
def agent_model_factory():
    if os.environ.get("NO_MODEL"):
        def refuse():
            raise AssertionError("the model was loaded during a replay")
        return refuse
    return lambda: ScriptedModel(answer, chunk_size=3)
'''

APP_TEST = '''
import pytest
from agent.functions import FunctionRegistry, select_function
from agent.planner import ask
from agent.tools.knowledge import KnowledgeModel
from conftest import Search

QUESTION = "What are the capitals of France and Italy?"


def lookup(key: str, api_key: str = "") -> str:
    """Look up a setting.

    Args:
        key: The setting's name.
        api_key: The service key.
    """
    return f"value of {key}"


@pytest.mark.agent_cassette
def test_app(agent_cassette, agent_model):
    tools = agent_cassette.tools([Search(), KnowledgeModel(agent_model)])
    result = ask(agent_model, QUESTION, tools)
    assert result.ok, result.error
    assert result.answer.startswith("Paris (v")
    registry = FunctionRegistry()
    registry.function(lookup)
    call = select_function(agent_model, "What is the tz setting?", registry, temperature=0.0)
    assert call.name == "lookup" and call.invoke() == "value of tz"
'''


@pytest.fixture
def app(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_app=APP_TEST)
    log = tmp_path / "prompts.log"
    monkeypatch.setenv("PROMPT_LOG", str(log))
    monkeypatch.delenv("CI", raising=False)
    return pytester, log


CASSETTE = Path("cassettes") / "test_app" / "test_app.json"


def _interactions(pytester: pytest.Pytester) -> list[dict]:
    return json.loads((pytester.path / CASSETTE).read_text(encoding="utf-8"))["interactions"]


def _prompts(log: Path) -> list[str]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"network access to {address!r} during a replay")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def test_records_once_then_replays_with_no_model_and_no_network(app, monkeypatch):
    pytester, log = app
    pytester.runpytest("--agent-record-mode=once").assert_outcomes(passed=1)
    kinds = sorted(i["kind"] for i in _interactions(pytester))
    assert kinds == ["generate"] * 4 + ["tool"] * 2  # plan, 2 KnowledgeModel, function call
    assert len(_prompts(log)) == 4

    log.unlink()
    monkeypatch.setenv("NO_MODEL", "1")
    _no_network(monkeypatch)
    before = (pytester.path / CASSETTE).read_bytes()
    pytester.runpytest("--agent-record-mode=none").assert_outcomes(passed=1)
    assert not log.exists()  # the scripted model was never asked
    assert (pytester.path / CASSETTE).read_bytes() == before  # replaying never writes


def test_once_with_an_existing_cassette_only_replays(app, monkeypatch):
    pytester, log = app
    pytester.runpytest("--agent-record-mode=once").assert_outcomes(passed=1)
    log.unlink()
    monkeypatch.setenv("NO_MODEL", "1")
    pytester.runpytest("--agent-record-mode=once").assert_outcomes(passed=1)
    assert not log.exists()


def test_none_mode_shows_the_closest_recorded_prompt_and_the_difference(app, monkeypatch):
    pytester, _ = app
    pytester.runpytest("--agent-record-mode=once").assert_outcomes(passed=1)
    pytester.makepyfile(test_app=APP_TEST.replace("France and Italy?", "Spain and Italy?"))
    monkeypatch.setenv("NO_MODEL", "1")
    result = pytester.runpytest("--agent-record-mode=none")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "CassetteMissError" in out and "closest recorded request" in out
    assert "Question: What are the capitals of France and Italy? ASSISTANT:" in out  # recorded
    assert "Question: What are the capitals of Spain and Italy? ASSISTANT:" in out  # asked
    result.stdout.fnmatch_lines(
        [
            "*text first differs at character *: recorded 'France and Italy?*', asked 'Spain*",
            "*-Question: What are the capitals of France and Italy? ASSISTANT:",
            "*+Question: What are the capitals of Spain and Italy? ASSISTANT:",
            "*--agent-record-mode=new_episodes*",
        ]
    )


def test_a_changed_parameter_is_named_in_the_difference(app, monkeypatch):
    pytester, _ = app
    pytester.runpytest("--agent-record-mode=once").assert_outcomes(passed=1)
    pytester.makepyfile(test_app=APP_TEST.replace("temperature=0.0", "temperature=0.7"))
    monkeypatch.setenv("NO_MODEL", "1")
    result = pytester.runpytest("--agent-record-mode=none")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*params.temperature: recorded 0.0, asked 0.7*"])


def test_new_episodes_adds_only_the_new_request(app, monkeypatch):
    pytester, log = app
    pytester.runpytest("--agent-record-mode=once").assert_outcomes(passed=1)
    old = _interactions(pytester)
    log.unlink()
    extra = (
        "\n    again = select_function(agent_model, 'And the locale?', registry, "
        "temperature=0.0)\n    assert again.name == 'lookup'\n"
    )
    pytester.makepyfile(test_app=APP_TEST + extra)
    pytester.runpytest("--agent-record-mode=new_episodes").assert_outcomes(passed=1)
    new = _interactions(pytester)
    assert len(new) == len(old) + 1
    assert [i for i in new if i in old] == old  # every old entry kept unchanged
    (added,) = [i for i in new if i not in old]
    assert "Input: And the locale?" in added["request"]["prompt"]
    (asked,) = _prompts(log)  # the model was asked the new prompt only
    assert "Input: And the locale?" in asked


def test_all_rewrites_the_cassette(app, monkeypatch):
    pytester, _ = app
    pytester.runpytest("--agent-record-mode=once").assert_outcomes(passed=1)
    assert "Paris (v1)" in (pytester.path / CASSETTE).read_text()
    monkeypatch.setenv("ANSWER_VERSION", "2")
    pytester.makepyfile(test_app=APP_TEST.replace("France and Italy?", "France and Italy, now?"))
    pytester.runpytest("--agent-record-mode=all").assert_outcomes(passed=1)
    text = (pytester.path / CASSETTE).read_text()
    assert "Paris (v2)" in text and "Paris (v1)" not in text
    assert "France and Italy, now?" in text and "France and Italy? ASSISTANT" not in text
    assert len(_interactions(pytester)) == 6  # the stale recordings are gone, not kept


def test_a_scrubbed_secret_never_reaches_the_file_and_still_replays(app, monkeypatch):
    pytester, _ = app
    secret = "sk-live-7f3a9c1e5b"
    pytester.makeconftest(
        CONFTEST
        + "\n\n@pytest.fixture\ndef agent_cassette_config():\n"
        + f"    return {{'filter_secrets': [{secret!r}]}}\n"
    )
    # the secret goes into a prompt, a tool input, a tool output and a function's arguments
    leaky = (
        APP_TEST.replace(
            'QUESTION = "What are', f'QUESTION = "With key {secret}, what are'
        ).replace(
            "[Search(), KnowledgeModel(agent_model)]",
            "[Search(), KnowledgeModel(agent_model), Echo()]",
        )
        + f"""

import json


class Echo:
    name = "Echo"
    description = "Echoes."

    def __call__(self, text):
        return "echo " + text


def vault(user: str) -> str:
    # the user's record, with a password the cassette must not keep
    return json.dumps({{"user": user, "password": "hunter2-hunter2"}})


@pytest.mark.agent_cassette(filter_keys=["password"])
def test_echo(agent_cassette):
    tools = agent_cassette.tools([Echo(), vault])
    assert tools["Echo"]("key {secret}").startswith("echo key ")
    assert json.loads(tools["vault"]("ann"))["user"] == "ann"
"""
    )
    pytester.makepyfile(test_app=leaky)
    pytester.runpytest("--agent-record-mode=once").assert_outcomes(passed=2)
    files = sorted((pytester.path / "cassettes" / "test_app").glob("*.json"))
    assert len(files) == 2
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert secret not in text and "hunter2" not in text, f.name
        assert "[FILTERED]" in text
    monkeypatch.setenv("NO_MODEL", "1")
    # the live requests still carry the secret: they are scrubbed before they are matched
    pytester.runpytest("--agent-record-mode=none").assert_outcomes(passed=2)


PARALLEL_TEST = '''
import json, os
import pytest
from agent.planner import ask
from agent.tools.knowledge import KnowledgeModel
from conftest import Search


class Jitter:
    """Starts a tool after a random pause, so parallel steps finish in a random order."""

    def __init__(self, tool):
        self.tool, self.name, self.description = tool, tool.name, tool.description
        self.model = getattr(tool, "model", None)

    def __call__(self, text):
        import random, time
        time.sleep(random.random() * 0.01)
        return self.tool(text)


@pytest.mark.parametrize("run", range(20))
@pytest.mark.agent_cassette(path="cassettes/parallel.json")
def test_parallel(agent_cassette, agent_model, run):
    tools = [Jitter(t) for t in agent_cassette.tools([Search(), KnowledgeModel(agent_model)])]
    result = ask(agent_model, "What are the capitals of France and Italy?", tools)
    with open(os.environ["RESULTS"], "a") as f:
        steps = [(s.id, s.status, s.input, s.output) for s in result.steps]
        # sorted: the evidence dict is filled in finishing order, which is the jitter's
        f.write(json.dumps([result.answer, result.evidence, steps], sort_keys=True) + "\\n")
'''


def test_parallel_steps_replay_identically_over_20_runs(app, monkeypatch, tmp_path):
    pytester, _ = app
    pytester.makepyfile(test_parallel=PARALLEL_TEST)
    results = tmp_path / "results.jsonl"
    monkeypatch.setenv("RESULTS", str(results))
    monkeypatch.setenv("JITTER", "1")
    record = pytester.runpytest("--agent-record-mode=once", "test_parallel.py::test_parallel[0]")
    record.assert_outcomes(passed=1)
    (recorded,) = results.read_text().splitlines()
    results.unlink()
    monkeypatch.setenv("NO_MODEL", "1")
    pytester.runpytest("--agent-record-mode=none", "test_parallel.py").assert_outcomes(passed=20)
    runs = results.read_text().splitlines()
    assert len(runs) == 20 and set(runs) == {recorded}
    answer = json.loads(recorded)[0]
    assert answer.startswith("Paris (v1)") and "Rome (v1)" in answer


def test_none_mode_without_a_cassette_says_how_to_record_it(app, monkeypatch):
    pytester, _ = app
    monkeypatch.setenv("NO_MODEL", "1")
    result = pytester.runpytest("--agent-record-mode=none")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*does not exist*--agent-record-mode=once*"])
    assert not (pytester.path / CASSETTE).exists()


def test_a_corrupt_cassette_is_a_clear_error_naming_the_file(app):
    pytester, _ = app
    (pytester.path / CASSETTE).parent.mkdir(parents=True)
    (pytester.path / CASSETTE).write_text('{"format": "agent.cassette", "version": 2, "inter')
    result = pytester.runpytest("--agent-record-mode=once")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*CassetteError: cassette *test_app.json is not valid JSON*"])


def test_default_mode_is_none_in_ci_and_once_elsewhere(app, monkeypatch):
    pytester, _ = app
    monkeypatch.setenv("CI", "true")
    pytester.runpytest().assert_outcomes(failed=1)
    assert not (pytester.path / CASSETTE).exists()
    monkeypatch.delenv("CI")
    pytester.runpytest().assert_outcomes(passed=1)
    assert (pytester.path / CASSETTE).exists()


def test_ci_wins_over_the_marker_and_the_command_line_over_both(app, monkeypatch):
    pytester, _ = app
    pytester.makepyfile(
        test_app=APP_TEST.replace(
            "@pytest.mark.agent_cassette", '@pytest.mark.agent_cassette(record_mode="once")'
        )
    )
    monkeypatch.setenv("CI", "1")
    pytester.runpytest().assert_outcomes(failed=1)  # nothing records in CI
    assert not (pytester.path / CASSETTE).exists()
    pytester.runpytest("--agent-record-mode=once").assert_outcomes(passed=1)


def test_command_line_wins_over_the_marker(app):
    pytester, _ = app
    pytester.makepyfile(
        test_app=APP_TEST.replace(
            "@pytest.mark.agent_cassette", '@pytest.mark.agent_cassette(record_mode="none")'
        )
    )
    pytester.runpytest().assert_outcomes(failed=1)  # the marker says none
    pytester.runpytest("--agent-record-mode=once").assert_outcomes(passed=1)


def test_a_miss_the_app_swallows_still_fails_the_test(app):
    pytester, _ = app
    pytester.makepyfile(
        test_swallow="""
import pytest

@pytest.mark.agent_cassette(record_mode="none")
def test_swallow(agent_model):
    try:
        agent_model.complete("never recorded")
    except Exception:
        pass  # an app that hides errors
"""
    )
    result = pytester.runpytest("-k", "swallow")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*CassetteMissError*"])


def test_bad_marker_arguments_are_clear_errors(app):
    pytester, _ = app
    pytester.makepyfile(
        test_bad="""
import pytest

@pytest.mark.agent_cassette(record_mode="sometimes")
def test_mode(agent_cassette):
    pass

@pytest.mark.agent_cassette(filter_secret=["typo"])
def test_option(agent_cassette):
    pass

@pytest.mark.agent_cassette(filter_secrets=["ab"])
def test_short(agent_cassette):
    pass
"""
    )
    result = pytester.runpytest("-k", "test_mode or test_option or test_short")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "*record_mode='sometimes'*use one of none, once, new_episodes, all*",
            "*unknown cassette option 'filter_secret'*",
            "*'ab' is shorter than 4 characters*",
        ],
        consecutive=False,
    )


def test_pytest_help_lists_the_option(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--agent-record-mode=*none,once,new_episodes,all*"])
    pytester.runpytest("--markers").stdout.fnmatch_lines(["*agent_cassette(path=None*"])
