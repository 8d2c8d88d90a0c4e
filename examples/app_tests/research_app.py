"""A small app built on the runtime, the subject of the app-test example (test_research_app.py).

It answers research questions with a reWOO plan (its own ``Encyclopedia`` tool and the
KnowledgeModel), turns requests into function calls, and serves the OpenAI-compatible API.
Nothing here knows about cassettes: the tests hand it a recording model and recorded tools.
"""

from __future__ import annotations

from typing import Any

from agent.functions import FunctionRegistry, select_function
from agent.planner import RunResult, ask
from agent.tools.knowledge import KnowledgeModel
from agent.tools.registry import ToolRegistry

ARTICLES = {
    "marie curie": "Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911.",
    "linus pauling": "Linus Pauling won the Nobel Prize in Chemistry in 1954 and Peace in 1962.",
}


class Encyclopedia:
    """Encyclopedia[name]: the article about a person (stands in for a web service)."""

    name = "Encyclopedia"
    description = "Look up the encyclopedia article about a person; input is the person's name."

    def __call__(self, text: str) -> str:
        return ARTICLES.get(text.strip().lower(), f"No article about {text.strip()}.")


def research_tools(model: Any) -> ToolRegistry:
    return ToolRegistry([Encyclopedia(), KnowledgeModel(model)])


def research(model: Any, question: str, tools: ToolRegistry) -> RunResult:
    """Plan ``question`` and run the plan (the two look-ups run in parallel)."""
    return ask(model, question, tools)


def weather(city: str, unit: str = "celsius") -> str:
    """Today's weather in a city.

    Args:
        city: The city's name.
        unit: celsius or fahrenheit.
    """
    return f"Sunny in {city}, 21 degrees {unit}."


def functions() -> FunctionRegistry:
    registry = FunctionRegistry()
    registry.function(weather)
    return registry


def handle_request(model: Any, request: str) -> Any:
    """The model picks a function for ``request``; the app runs it."""
    call = select_function(model, request, functions(), temperature=0.0)
    return call.invoke()
