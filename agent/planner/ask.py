"""Question in, answer out: generate the plan and run its steps while it is still being written.

One engine has one KV cache, so a tool that calls the planning model itself (KnowledgeModel: its
``model`` attribute is the planner's model) must not run while the plan is being generated. Such
tools are held until the plan is written; every other tool starts as soon as its line is complete.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from agent.llm.protocol import TextGenerator
from agent.planner.evidence import DEFAULT_MAX_EVIDENCE_CHARS
from agent.planner.executor import EventHandler, RunResult, execute_stream
from agent.planner.prompt import generate_plan_text
from agent.tools.registry import FunctionTool, ToolRegistry, as_tool


def uses_model(tool: Any, model: Any) -> bool:
    """True when ``tool`` generates with ``model`` (or with the model ``model`` wraps)."""
    inner = getattr(tool, "model", None)
    if inner is None:
        return False
    candidates = {id(model), id(getattr(model, "model", model))}
    return id(inner) in candidates or id(getattr(inner, "model", inner)) in candidates


def hold_model_tools(tools: Any, model: Any, released: threading.Event) -> Any:
    """``tools`` with each tool that shares ``model`` waiting for ``released`` before it runs.

    Returns ``tools`` itself when no tool shares the model; never modifies it.
    """
    if isinstance(tools, Mapping) and not isinstance(tools, ToolRegistry):
        items = [as_tool(obj, name=str(name)) for name, obj in tools.items()]
    else:
        items = list(tools)
    if not any(uses_model(t, model) for t in items):
        return tools
    held = ToolRegistry()
    for tool in items:
        if uses_model(tool, model):
            held.add(FunctionTool(tool.name, tool.description, _after(released, tool)))
        else:
            held.add(tool)
    return held


def _after(released: threading.Event, tool: Callable[[str], str]) -> Callable[[str], str]:
    def call(text: str) -> str:
        released.wait()
        return tool(text)

    return call


def ask(
    model: TextGenerator,
    question: str,
    tools: Any,
    *,
    constrained: bool = False,
    temperature: float = 0.0,
    seed: int | None = None,
    max_tokens: int = 768,
    max_workers: int = 8,
    step_timeout: float | None = None,
    max_evidence_chars: int | None = DEFAULT_MAX_EVIDENCE_CHARS,
    on_event: EventHandler | None = None,
    on_text: Callable[[str], None] | None = None,
) -> RunResult:
    """Plan ``question`` with ``model`` and execute the plan with ``tools``.

    Steps start as soon as their lines are written (``execute_stream``), except those whose tool
    uses ``model`` itself, which wait for the plan to be finished. ``on_text`` sees the plan text
    as it streams, ``on_event`` each step's start and finish. Raises ``PlanError`` when the
    model's plan is invalid.
    """
    released = threading.Event()

    def pieces() -> Iterator[str]:
        try:
            yield from generate_plan_text(
                model,
                question,
                tools,
                temperature=temperature,
                seed=seed,
                constrained=constrained,
                stream=True,
                max_tokens=max_tokens,
            )
        finally:
            released.set()  # the model is free for the tools now

    result = execute_stream(
        pieces(),
        hold_model_tools(tools, model, released),
        max_workers=max_workers,
        step_timeout=step_timeout,
        on_event=on_event,
        max_evidence_chars=max_evidence_chars,
        on_text=on_text,
    )
    result.question = question
    return result
