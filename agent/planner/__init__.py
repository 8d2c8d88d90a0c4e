"""reWOO planning: the plan prompt, a hardened streaming parser into a dependency graph, a parallel
executor with evidence substitution, and record/replay of whole runs.

    from agent.planner import parse_plan, execute, PlanError
    plan = parse_plan(text, tools=registry)   # PlanError lists every problem with its line
    result = execute(plan, registry)          # RunResult(ok, answer, evidence, steps, error)
"""

from __future__ import annotations

from agent.errors import PlanError
from agent.planner.ask import ask
from agent.planner.cassette import (
    CassetteDivergenceError,
    CassetteError,
    RecordingModel,
    load_cassette,
    make_cassette,
    replay,
    save_cassette,
)
from agent.planner.evidence import DEFAULT_MAX_EVIDENCE_CHARS, cap_evidence, substitute
from agent.planner.executor import (
    RunResult,
    Scheduler,
    StepEvent,
    StepResult,
    StepTimeoutError,
    execute,
    execute_stream,
)
from agent.planner.parser import PlanStream, parse_plan
from agent.planner.plan import Plan, Problem, Step
from agent.planner.prompt import build_plan_prompt, generate_plan_text, plan_user_message

__all__ = [
    "PlanError",
    "Plan",
    "Problem",
    "Step",
    "PlanStream",
    "parse_plan",
    "execute",
    "execute_stream",
    "Scheduler",
    "RunResult",
    "StepResult",
    "StepEvent",
    "StepTimeoutError",
    "DEFAULT_MAX_EVIDENCE_CHARS",
    "cap_evidence",
    "substitute",
    "build_plan_prompt",
    "plan_user_message",
    "generate_plan_text",
    "ask",
    "RecordingModel",
    "make_cassette",
    "save_cassette",
    "load_cassette",
    "replay",
    "CassetteError",
    "CassetteDivergenceError",
]
