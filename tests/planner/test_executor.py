"""Executor: parallelism, failure isolation, timeouts, single-pass substitution, streaming."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from agent.errors import PlanError, ToolError
from agent.llm.scripted import ScriptedModel
from agent.planner import (
    StepTimeoutError,
    ask,
    cap_evidence,
    execute,
    execute_stream,
    parse_plan,
)
from agent.tools.registry import ToolRegistry
from tests.timing import least_cost


def test_six_independent_half_second_steps_and_a_join_take_half_a_second():
    text = "\n".join(f"#E{i} = Sleep[{i}]" for i in range(1, 7))
    text += "\n#E7 = Join[" + " ".join(f"#E{i}" for i in range(1, 7)) + "]\nFinal answer: #E7"

    def sleep(x: str) -> str:
        time.sleep(0.5)
        return f"slept{x}"

    t0 = time.perf_counter()
    result = execute(parse_plan(text), {"Sleep": sleep, "Join": lambda s: s.upper()})
    wall = time.perf_counter() - t0
    assert result.ok and result.answer == "SLEPT1 SLEPT2 SLEPT3 SLEPT4 SLEPT5 SLEPT6"
    assert 0.5 <= wall < 1.2, wall
    join = result.step("#E7")
    assert join.started >= max(result.step(f"#E{i}").finished for i in range(1, 7))


def test_max_workers_limits_concurrency():
    running, peak, lock = [0], [0], threading.Lock()

    def tool(x: str) -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return x

    plan = parse_plan("\n".join(f"#E{i} = T[{i}]" for i in range(1, 7)) + "\nFinal answer: #E6")
    result = execute(plan, {"T": tool}, max_workers=2)
    assert result.ok and peak[0] == 2


def test_failure_isolation_dependents_skipped_independent_run_answer_still_produced():
    def boom(x: str) -> str:
        raise ToolError("the site refused the connection")

    plan = parse_plan(
        "#E1 = Boom[x]\n#E2 = Echo[#E1]\n#E3 = Echo[#E2]\n#E4 = Echo[fine]\n"
        "#E5 = Echo[got #E4]\nFinal answer: #E5"
    )
    result = execute(plan, {"Boom": boom, "Echo": lambda s: s})
    status = {r.id: r.status for r in result.steps}
    assert status == {"#E1": "failed", "#E2": "skipped", "#E3": "skipped", "#E4": "ok", "#E5": "ok"}
    assert result.step("#E1").error == "the site refused the connection"
    assert "#E1 failed" in result.step("#E2").error
    assert "#E2 was skipped" in result.step("#E3").error
    assert result.ok and result.answer == "got fine"


def test_answer_depending_on_a_failure_is_not_produced():
    def crash(x: str) -> str:
        raise RuntimeError("bug")

    result = execute(
        parse_plan("#E1 = Crash[x]\n#E2 = Echo[#E1]\nFinal answer: #E2"),
        {"Crash": crash, "Echo": str},
    )
    assert not result.ok and result.answer is None
    assert result.step("#E1").error == "RuntimeError: bug"
    assert "#E2" in result.error and "skipped" in result.error


def test_step_timeout_does_not_block_the_run():
    release = threading.Event()

    def hang(x: str) -> str:
        release.wait(5)
        return "late"

    plan = parse_plan("#E1 = Hang[x]\n#E2 = Echo[#E1]\n#E3 = Echo[ok]\nFinal answer: #E3")
    t0 = time.perf_counter()
    result = execute(plan, {"Hang": hang, "Echo": str}, step_timeout=0.2)
    release.set()
    assert time.perf_counter() - t0 < 1.0
    assert result.step("#E1").status == "timeout" and "0.2" in result.step("#E1").error
    assert result.step("#E2").status == "skipped"
    assert result.answer == "ok"


def test_tool_raising_step_timeout_error_is_recorded_as_timeout():
    def slow(x: str) -> str:
        raise StepTimeoutError("gave up after 10 s")

    result = execute(parse_plan("#E1 = Slow[x]\nFinal answer: #E1"), {"Slow": slow})
    assert result.step("#E1").status == "timeout" and not result.ok


def test_unknown_tool_at_run_time_fails_that_step_only():
    result = execute(parse_plan("#E1 = Nope[x]\n#E2 = Echo[y]\nFinal answer: #E2"), {"Echo": str})
    assert result.step("#E1").status == "failed" and "Nope" in result.step("#E1").error
    assert result.answer == "y"


def test_substitution_is_single_pass_and_prefix_safe():
    outputs = {"1": "one", "10": "ten :evidence2: #E1"}
    steps = [f"#E{i} = Out[{i}]" for i in range(1, 11)]
    plan = parse_plan("\n".join(steps) + "\n#E11 = Echo[#E10|#E1]\nFinal answer: #E11")
    result = execute(plan, {"Out": lambda s: outputs.get(s, s), "Echo": lambda s: s})
    assert result.answer == "ten :evidence2: #E1|one"


def test_evidence_is_capped_with_a_visible_marker_before_pasting():
    seen = []
    plan = parse_plan("#E1 = Big[x]\n#E2 = Look[#E1]\nFinal answer: #E1")
    result = execute(
        plan,
        {"Big": lambda s: "a" * 100, "Look": lambda s: seen.append(s) or "k"},
        max_evidence_chars=30,
    )
    assert seen == ["a" * 30 + "\n[... truncated 70 characters ...]"]
    assert result.evidence["#E1"] == "a" * 100 and result.answer == "a" * 100
    assert cap_evidence("short", 30) == "short"


def test_answer_text_with_several_references():
    plan = parse_plan(
        ":evidence0: = A[x]\n:evidence1: = A[y]\nAnswer: [:evidence0: and :evidence1:]"
    )
    result = execute(plan, {"A": lambda s: s.upper()})
    assert result.answer == "X and Y"


def test_events_start_and_finish_for_each_step_and_sources():
    events = []
    plan = parse_plan("#E1 = Links[q]\n#E2 = Read[#E1]\n#E3 = Other[z]\nFinal answer: #E2")
    result = execute(
        plan,
        {
            "Links": lambda s: "https://a.example/x\nhttps://b.example/y.",
            "Read": lambda s: "text",
            "Other": lambda s: "see https://c.example",
        },
        on_event=lambda e: events.append((e.kind, e.step.id)),
    )
    assert sorted(events) == sorted(
        [("start", f"#E{i}") for i in (1, 2, 3)] + [("finish", f"#E{i}") for i in (1, 2, 3)]
    )
    assert events.index(("finish", "#E1")) < events.index(("start", "#E2"))
    assert result.sources == ["https://a.example/x", "https://b.example/y"]


def test_works_with_a_tool_registry():
    reg = ToolRegistry()
    reg.add(lambda s: s[::-1], name="Reverse", description="reverses")
    result = execute(parse_plan("#E1 = reverse[abc]\nFinal answer: #E1", reg), reg)
    assert result.answer == "cba"


def _slow_plan_model(delay: float) -> ScriptedModel:
    plan = (
        "Plan: search\n:evidence0: = Search[first]\n"
        "Plan: think about it at length before the next step\n"
        ":evidence1: = Search[second :evidence0:]\nAnswer: :evidence1:\nThat is all."
    )
    return ScriptedModel([plan], chunk_size=4, delay=delay)


def test_first_tool_call_starts_before_the_model_has_finished_the_plan():
    model = _slow_plan_model(0.01)
    calls: list[tuple[str, float]] = []
    written: list[float] = []  # when each piece of the plan was written

    def search(q: str) -> str:
        calls.append((q, time.perf_counter()))
        return f"<{q}>"

    def pieces():
        for piece in model.generate("prompt"):
            written.append(time.perf_counter())
            yield piece

    result = execute_stream(pieces(), {"Search": search})
    assert result.answer == "<second <first>>"
    # ~45 pieces of 10 ms each remain to be written when the first step is complete
    assert calls[0][0] == "first" and calls[0][1] < written[-1] - 0.2


def test_stream_stops_reading_after_the_answer_and_reports_plan_errors():
    with pytest.raises(PlanError) as info:
        execute_stream(
            iter(["#E1 = Search[x]\n", "#E2 = Nope[#E1]\n", "Final answer: #E2"]), {"Search": str}
        )
    assert [p.kind for p in info.value.problems] == ["unknown_tool"]


def test_ask_plans_with_the_model_and_runs_the_tools():
    model = _slow_plan_model(0.0)
    reg = ToolRegistry()
    reg.add(lambda q: q.upper(), name="Search", description="searches")
    result = ask(model, "What?", reg)
    assert result.ok and result.answer == "SECOND FIRST" and result.question == "What?"
    assert model.prompts[0].endswith("Question: What? ASSISTANT:")
    assert "Search[input]: searches" in model.prompts[0]


def test_hand_built_plan_with_a_dangling_reference_does_not_hang():
    from agent.planner import Plan, Step

    plan = Plan(
        steps=[Step("#E1", "Echo", "x", []), Step("#E2", "Echo", "#E9", ["#E9"])],
        answer="#E1",
        answer_refs=["#E1"],
    )
    result = execute(plan, {"Echo": str})
    assert result.answer == "x"
    assert result.step("#E2").status == "skipped" and "#E9" in result.step("#E2").error


def test_ask_holds_tools_that_share_the_model_until_the_plan_is_written():
    plan = (
        "Plan: a\n:evidence0: = Search[x]\nPlan: b\n:evidence1: = Know[given :evidence0:]\n"
        "Plan: padding so that the model is still writing for a while after the steps\n"
        "Answer: :evidence1:\n"
    )
    model = ScriptedModel([plan], chunk_size=4, delay=0.01)
    times: dict[str, float] = {}
    finished: list[float] = []

    class Know:
        name, description = "Know", "answers with the model"

        def __init__(self, model):
            self.model = model

        def __call__(self, text: str) -> str:
            times["know"] = time.perf_counter()
            return "known"

    def search(q: str) -> str:
        times["search"] = time.perf_counter()
        return "found"

    reg = ToolRegistry()
    reg.add(search, name="Search", description="searches")
    reg.add(Know(model))
    original = model.generate

    def generate(prompt, **kw):
        try:
            yield from original(prompt, **kw)
        finally:  # the executor stops reading at the answer line
            finished.append(time.perf_counter())

    model.generate = generate
    result = ask(model, "Q?", reg)
    assert result.answer == "known"
    assert times["search"] < finished[0] - 0.1 < times["know"]
    assert reg.get("Know").__class__ is Know  # the caller's registry is left alone


def test_a_failing_event_handler_is_reported_not_a_hang():
    from agent.errors import AgentError

    def handler(event):
        raise ValueError("printer broke")

    with pytest.raises(AgentError, match="on_event handler raised ValueError: printer broke"):
        execute(
            parse_plan("#E1 = Echo[x]\n#E2 = Echo[#E1]\nFinal answer: #E2"),
            {"Echo": str},
            on_event=handler,
        )


# -- scheduling cost: dependency counts, not rescans (issue 19) ---------------------------------


def _chain(n: int, tool: str = "Echo"):
    from agent.planner import Plan, Step

    steps = [Step("#E1", tool, "go", [])]
    steps += [Step(f"#E{i}", tool, f"#E{i - 1}", [f"#E{i - 1}"]) for i in range(2, n + 1)]
    return Plan(steps=steps, answer=f"#E{n}", answer_refs=[f"#E{n}"])


def _run_chain(n: int) -> Callable[[], None]:
    plan = _chain(n)

    def run() -> None:
        result = execute(plan, {"Echo": lambda s: s[:8]})
        assert result.ok and result.answer == "go"
        assert [r.status for r in result.steps] == ["ok"] * n

    return run


def test_a_ten_thousand_step_chain_runs_in_linear_time():
    # the least of three interleaved runs of each (tests/timing.py): one run of the 2,000-step
    # chain is ~20 ms, short enough for noise to decide the ratio (once 12.7x in CI)
    small, big = least_cost(_run_chain(2_000), _run_chain(10_000))
    assert big.wall <= 3.0, big  # was > 30 s when every finished step rescanned the waiting ones
    # 5x the steps: about 5x the work when linear, 25x when quadratic (same-run ratio, CPU time)
    assert big.cpu / max(small.cpu, 1e-3) < 12, (small, big)


def test_a_failure_at_the_head_of_a_long_chain_skips_the_rest_without_recursion():
    def fail(_: str) -> str:
        raise ToolError("no")

    result = execute(_chain(10_000, "Fail"), {"Fail": fail})
    assert not result.ok
    assert result.steps[0].status == "failed"
    assert all(r.status == "skipped" for r in result.steps[1:])
    assert result.steps[1].error == "skipped because #E1 failed"
    assert result.steps[-1].error == "skipped because #E9999 was skipped"


def test_many_steps_with_an_unknown_tool_fail_without_recursion():
    from agent.planner import Plan, Step

    steps = [Step(f"#E{i}", "Nope", "x", []) for i in range(1, 5_001)]
    result = execute(Plan(steps=steps, answer="#E1", answer_refs=["#E1"]), {"Echo": str})
    assert [r.status for r in result.steps] == ["failed"] * 5_000
    assert result.error == "the answer needs #E1, which failed: unknown tool 'Nope'"


def test_a_step_submitted_before_the_step_it_references_waits_for_it():
    from agent.planner import Plan, Step
    from agent.planner.executor import Scheduler

    order: list[str] = []
    sched = Scheduler({"Echo": lambda s: (order.append(s), s)[1]})
    later = Step(":evidence2:", "Echo", "after :evidence1:", [":evidence1:"])
    first = Step(":evidence1:", "Echo", "first", [])
    sched.submit(later)
    time.sleep(0.05)
    assert order == []  # :evidence1: is not even known yet
    sched.submit(first)
    sched.seal()
    sched.join()
    result = sched.result(Plan([later, first], ":evidence2:", [":evidence2:"]))
    assert order == ["first", "after first"] and result.answer == "after first"


def test_a_step_referencing_a_failed_step_in_two_spellings_is_skipped_once():
    from agent.planner import Plan, Step

    events: list[tuple[str, str]] = []
    plan = Plan(
        steps=[
            Step(":evidence1:", "Fail", "x", []),
            Step(":evidence2:", "Echo", ":evidence1: and :evidence[1]:", [":evidence1:"]),
            Step(":evidence3:", "Echo", ":evidence2:", [":evidence2:"]),
        ],
        answer=":evidence3:",
        answer_refs=[":evidence3:"],
    )

    def fail(_: str) -> str:
        raise ToolError("down")

    result = execute(
        plan,
        {"Fail": fail, "Echo": str},
        on_event=lambda e: events.append((e.kind, e.step.id)),
    )
    finishes = [sid for kind, sid in events if kind == "finish"]
    assert sorted(finishes) == [":evidence1:", ":evidence2:", ":evidence3:"]
    assert result.step(":evidence3:").error == "skipped because :evidence2: was skipped"
