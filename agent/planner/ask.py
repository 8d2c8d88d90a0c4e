"""Question in, answer out: generate the plan and run its steps while it is still being written."""

from __future__ import annotations

from typing import Any, Callable

from agent.planner.evidence import DEFAULT_MAX_EVIDENCE_CHARS
from agent.planner.executor import EventHandler, RunResult, execute_stream
from agent.planner.prompt import generate_plan_text


def ask(model: Any, question: str, tools: Any, *, constrained: bool = False,
        temperature: float = 0.0, seed: int | None = None, max_tokens: int = 768,
        max_workers: int = 8, step_timeout: float | None = None,
        max_evidence_chars: int | None = DEFAULT_MAX_EVIDENCE_CHARS,
        on_event: EventHandler | None = None,
        on_text: Callable[[str], None] | None = None) -> RunResult:
    """Plan ``question`` with ``model`` and execute the plan with ``tools``.

    Steps start as soon as their lines are written (``execute_stream``); ``on_text`` sees the plan
    text as it streams, ``on_event`` each step's start and finish. Raises ``PlanError`` when the
    model's plan is invalid.
    """
    pieces = generate_plan_text(model, question, tools, temperature=temperature, seed=seed,
                                constrained=constrained, stream=True, max_tokens=max_tokens)
    result = execute_stream(pieces, tools, max_workers=max_workers, step_timeout=step_timeout,
                            on_event=on_event, max_evidence_chars=max_evidence_chars,
                            on_text=on_text)
    result.question = question
    return result
