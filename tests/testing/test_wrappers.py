"""The cassette's model and tools outside pytest: what they record and how they replay."""

from __future__ import annotations

import pytest

from agent.errors import AgentError, ToolError
from agent.functions import FunctionRegistry, select_function
from agent.llm import load_model
from agent.llm.protocol import count_tokens
from agent.llm.scripted import ScriptedModel
from agent.planner import StepTimeoutError
from agent.testing import Cassette, CassetteMissError
from agent.tools.knowledge import KnowledgeModel
from tests import golden


def _session(path, mode):
    return Cassette(path, mode)


def test_real_engine_records_tokens_and_stats_then_replays_without_it(tmp_path):
    path = tmp_path / "engine.json"
    real = load_model(golden.model_path("tiny-q4_0.gguf"), n_ctx=512, threads=1)
    rec = _session(path, "once")
    model = rec.model(lambda: real)
    knowledge = KnowledgeModel(model, max_tokens=6, temperature=0.0)
    text = knowledge("What is it, given the sky is blue?")
    n = count_tokens(model, "hello world")
    stats = model.last_stats
    assert rec.save()

    replay = _session(path, "none").model(None)  # no model at all
    assert replay.n_ctx == 512 and count_tokens(replay, "hello world") == n
    assert (
        KnowledgeModel(replay, max_tokens=6, temperature=0.0)("What is it, given the sky is blue?")
        == text
    )
    assert count_tokens(replay, "hello world") == n
    assert "tokenize" in {i["kind"] for i in Cassette(path, "none").interactions}
    # the server reads the stop reason and token count of the last generation
    knowledge_prompt = [i for i in Cassette(path, "none").interactions if i["kind"] == "generate"]
    assert knowledge_prompt[0]["response"]["stop_reason"] == stats.stop_reason


def test_a_scripted_model_has_no_tokenizer_on_replay_either(tmp_path):
    path = tmp_path / "c.json"
    rec = _session(path, "all")
    model = rec.model(ScriptedModel(["x"]))
    assert not hasattr(model, "tokenize") and model.complete("p") == "x"
    rec.save()
    replay = _session(path, "none").model()
    assert not hasattr(replay, "tokenize") and replay.complete("p") == "x"
    assert replay.last_stats.stop_reason == ""


def test_a_generation_stopped_early_replays_to_the_same_point(tmp_path):
    path = tmp_path / "c.json"
    rec = _session(path, "all")
    gen = rec.model(ScriptedModel(["abcdefgh"], chunk_size=2)).generate("p", max_tokens=5)
    assert next(gen) == "ab"
    gen.close()
    rec.save()
    assert _session(path, "none").model().complete("p", max_tokens=5) == "ab"


def test_tool_failures_replay_as_the_executor_reported_them(tmp_path):
    path = tmp_path / "tools.json"

    def broken(text: str) -> str:
        raise ValueError("bad input")

    def refused(text: str) -> str:
        raise ToolError("refused")

    def slow(text: str) -> str:
        raise StepTimeoutError("timed out after 1 s")

    def ok(text: str) -> str:
        return text.upper()

    rec = _session(path, "all")
    tools = rec.tools([broken, refused, slow, ok])
    with pytest.raises(ValueError):
        tools["broken"]("x")
    with pytest.raises(ToolError):
        tools["refused"]("x")
    with pytest.raises(StepTimeoutError):
        tools["slow"]("x")
    assert tools["ok"]("x") == "X"
    rec.save()

    again = _session(path, "none").tools({"broken": broken, "refused": refused, "slow": slow})
    with pytest.raises(ToolError, match="^ValueError: bad input$"):
        again["broken"]("x")
    with pytest.raises(ToolError, match="^refused$"):
        again["refused"]("x")
    with pytest.raises(StepTimeoutError, match="timed out after 1 s"):
        again["slow"]("x")


def test_repeated_requests_replay_in_order_then_repeat_the_last(tmp_path):
    path = tmp_path / "c.json"
    rec = _session(path, "all")
    model = rec.model(ScriptedModel(["one", "two"]))
    assert [model.complete("p"), model.complete("p")] == ["one", "two"]
    rec.save()
    replay = _session(path, "none").model()
    assert [replay.complete("p") for _ in range(3)] == ["one", "two", "two"]


def test_recording_without_a_model_says_how_to_give_one(tmp_path):
    model = _session(tmp_path / "c.json", "once").model()
    with pytest.raises(AgentError, match="agent_model_factory fixture"):
        model.complete("p")


def test_function_calling_records_and_replays(tmp_path):
    path = tmp_path / "c.json"
    registry = FunctionRegistry()

    @registry.function
    def weather(city: str) -> str:
        """Weather in a city.

        Args:
            city: The city.
        """
        return f"sun in {city}"

    answer = '{"function": "weather", "params": {"city": "Oslo"}}'
    rec = _session(path, "once")
    call = select_function(rec.model(ScriptedModel([answer])), "Oslo?", registry)
    rec.save()
    replay = _session(path, "none").model()
    assert select_function(replay, "Oslo?", registry).invoke() == call.invoke() == "sun in Oslo"
    with pytest.raises(CassetteMissError, match="closest recorded request"):
        select_function(replay, "Bergen?", registry)


def test_unknown_record_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="one of none, once, new_episodes, all"):
        Cassette(tmp_path / "c.json", "sometimes")


def test_execute_runs_a_written_plan_on_recorded_tools(tmp_path):
    from agent.planner import execute, parse_plan

    path = tmp_path / "c.json"
    calls = []

    def search(text: str) -> str:
        calls.append(text)
        return f"found {text}"

    plan_text = "Plan: a\n#E1 = search[x]\nPlan: b\n#E2 = search[#E1 again]\nAnswer: #E2\n"
    rec = _session(path, "once")
    tools = rec.tools([search])
    recorded = execute(parse_plan(plan_text, tools), tools)
    rec.save()
    again = _session(path, "none").tools([search])
    replayed = execute(parse_plan(plan_text, again), again)
    assert replayed.answer == recorded.answer == "found found x again"
    assert calls == ["x", "found x again"]  # the real tool ran only while recording


def test_a_failed_generation_replays_as_the_same_failure(tmp_path):
    from agent.errors import ContextLengthError

    class Overflowing(ScriptedModel):
        def generate(self, prompt, **kwargs):
            yield "par"
            raise ContextLengthError("the prompt is 5000 tokens but the context holds 4096")

    path = tmp_path / "c.json"
    rec = _session(path, "all")
    with pytest.raises(ContextLengthError):
        rec.model(Overflowing([])).complete("long prompt")
    rec.save()
    replay = _session(path, "none").model()
    pieces = []
    with pytest.raises(ContextLengthError, match="5000 tokens"):
        for piece in replay.generate("long prompt"):
            pieces.append(piece)
    assert pieces == ["par"]
