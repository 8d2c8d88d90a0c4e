"""Tests of research_app that record the model once and replay it in CI.

pytest examples/app_tests                               # records missing cassettes (once)
CI=1 pytest examples/app_tests                          # replays only: no model, no network
pytest examples/app_tests --agent-record-mode=all       # records them all again
"""

from __future__ import annotations

import json

import pytest
import requests
from research_app import handle_request, research, research_tools

from agent.server.app import create_app
from agent.server.runner import ServerThread

# every test here uses cassettes/test_research_app/<test name>.json
pytestmark = pytest.mark.agent_cassette(filter_secrets=["sk-app-test-key-0123456789"])

QUESTION = "Who won the Nobel Prize in Chemistry first, Marie Curie or Linus Pauling?"


def test_research_question_is_answered_from_both_articles(agent_cassette, agent_model):
    tools = agent_cassette.tools(research_tools(agent_model))  # Encyclopedia is recorded
    result = research(agent_model, QUESTION, tools)
    assert result.ok, result.error
    assert "Marie Curie" in result.answer and "1911" in result.answer
    assert [s.status for s in result.steps] == ["ok"] * 5


def test_weather_request_calls_the_weather_function(agent_model):
    assert handle_request(agent_model, "What's the weather in Oslo?") == (
        "Sunny in Oslo, 21 degrees celsius."
    )


def test_server_answers_with_a_tool_call(agent_model):
    tool = {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Today's weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    body = {
        "model": "local",
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
        "tools": [tool],
        "tool_choice": "required",
        "temperature": 0,
    }
    key = "sk-app-test-key-0123456789"  # the API key never reaches the cassette
    with ServerThread(create_app(agent_model, api_key=key)) as server:
        r = requests.post(
            f"{server.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
    assert r.status_code == 200, r.text
    (call,) = r.json()["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
