"""Plans as other tools write them (LangGraph, ReWOO, airoboros' plan.txt), placeholder answers,
canonical ids, and what a PlanError carries."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import PlanError
from agent.planner import parse_plan
from agent.planner.plan import MAX_LISTED_PROBLEMS
from tests.timing import least_cost

PLANS = Path(__file__).resolve().parent.parent / "data" / "plans"


def plan_error(text: str, tools=None) -> PlanError:
    with pytest.raises(PlanError) as info:
        parse_plan(text, tools)
    return info.value


def kinds(text: str, tools=None) -> list[tuple[str, int]]:
    return [(p.kind, p.line) for p in plan_error(text, tools).problems]


# -- the same-line form (LangGraph) ----------------------------------------------------------------


def test_langgraph_same_line_plan_parses_to_its_steps_with_their_reasoning():
    text = (PLANS / "langgraph_same_line.txt").read_text() + "\nFinal answer: #E4\n"
    plan = parse_plan(text, ["Google", "LLM"])
    assert plan.ids == ["#E1", "#E2", "#E3", "#E4"]
    assert [s.tool for s in plan.steps] == ["Google", "LLM", "Google", "LLM"]
    assert plan.steps[0].input == "1992 Summer Olympics host city"
    assert (
        plan.steps[0].plan
        == "Look up which city hosted the 1992 Summer Olympics with a web search."
    )
    # reasoning wrapped onto a second line stays with its step, the step is split off that line
    assert plan.steps[2].plan == (
        "Since the host city is now known, search for the river or sea it lies on, and "
        "for its population."
    )
    assert (plan.steps[2].input, plan.steps[2].line) == ("#E2 population and coastline", 6)
    assert plan.steps[3].refs == ["#E2", "#E3"]
    assert plan.layers()[0][0].id == "#E1"


def test_langgraph_plan_without_answer_is_diagnosed_as_such_and_keeps_its_steps():
    err = plan_error((PLANS / "langgraph_same_line.txt").read_text())
    assert [p.kind for p in err.problems] == ["missing_answer"]  # not "the plan has no steps"
    assert [s.id for s in err.steps] == ["#E1", "#E2", "#E3", "#E4"]
    assert "Final answer: #E4" in str(err)  # the hint speaks the plan's dialect, names its last id


def test_several_steps_on_one_line():
    plan = parse_plan(
        "Plan: search. #E1 = S[a] Plan: read it. #E2 = R[#E1] Final answer: #E2", ["S", "R"]
    )
    assert [(s.id, s.plan, s.input, s.line) for s in plan.steps] == [
        ("#E1", "search.", "a", 1),
        ("#E2", "read it.", "#E1", 1),
    ]
    assert plan.answer_refs == ["#E2"]


def test_same_line_step_in_the_evidence_dialect_and_after_a_multi_line_input():
    plan = parse_plan(
        "Plan: look. :evidence0: = S[a\nb] Plan: ask. :evidence1: = K[:evidence0:]\n"
        "Answer: :evidence1:"
    )
    assert plan.ids == [":evidence0:", ":evidence1:"]
    assert plan.steps[0].input == "a\nb" and plan.steps[1].plan == "ask."
    assert plan.steps[1].line == 2


def test_a_reference_in_reasoning_is_not_a_step():
    plan = parse_plan("Plan: reuse #E1 = the winner, later\n#E1 = S[x]\nFinal answer: #E1")
    assert plan.ids == ["#E1"] and plan.steps[0].plan == "reuse #E1 = the winner, later"


@pytest.mark.parametrize(
    "text",
    [
        "Plan: look it up :evidence1: [S[x]]\nAnswer: :evidence1:",
        "Plan: look it up\n:evidence1: [S[x]]\nAnswer: :evidence1:",
        "Plan: look it up :evidence1:[S[x]]\nAnswer: :evidence1:",
        ":evidence1: [S[x]]\nAnswer: :evidence1:",
    ],
)
def test_an_evidence_id_whose_own_colon_separates_it_from_a_wrapped_call_is_a_step(text):
    """The card's template without its '=': the same-line splitter took it for a step, the line
    parser did not and handed it back as reasoning, and parsing looped for ever."""
    plan = parse_plan(text, ["S"])
    assert [(s.id, s.tool, s.input) for s in plan.steps] == [(":evidence1:", "S", "x")]


def test_prose_after_a_step_on_its_line_is_still_an_error_when_it_is_a_call():
    assert ("syntax", 1) in kinds("Plan: x #E1 = S[a] then R[b]\nFinal answer: #E1")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(alphabet="abc xyz,.", min_size=1, max_size=12).filter(str.strip),
            st.sampled_from(["S", "R"]),
            st.text(alphabet="abc xyz?", max_size=10),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_same_line_and_separate_lines_give_the_same_steps(steps):
    """Writing each step after its reasoning on one line changes nothing but the line numbers."""
    separate, same = [], []
    for i, (why, tool, arg) in enumerate(steps, 1):
        ref = f" #E{i - 1}" if i > 1 else ""
        separate += [f"Plan: {why}", f"#E{i} = {tool}[{arg}{ref}]"]
        same.append(f"Plan: {why} #E{i} = {tool}[{arg}{ref}]")
    answer = f"Final answer: #E{len(steps)}"
    a = parse_plan("\n".join(separate + [answer]), ["S", "R"])
    b = parse_plan("\n".join(same + [answer]), ["S", "R"])
    assert [(s.id, s.tool, s.input, s.refs, s.plan) for s in a.steps] == [
        (s.id, s.tool, s.input, s.refs, s.plan) for s in b.steps
    ]


# -- ReWOO and airoboros' own formats --------------------------------------------------------------


def test_rewoo_few_shot_plan_steps():
    err = plan_error((PLANS / "rewoo_fewshot.txt").read_text())  # ReWOO writes no answer line
    assert [p.kind for p in err.problems] == ["missing_answer"]
    assert [(s.id, s.tool) for s in err.steps] == [
        ("#E1", "Wikipedia"),
        ("#E2", "LLM"),
        ("#E3", "Wikipedia"),
        ("#E4", "LLM"),
        ("#E5", "Calculator"),
    ]
    assert err.steps[4].input == "#E4 * 3.28084" and err.steps[3].refs == ["#E2", "#E3"]
    assert err.steps[1].plan == "Name the country from that article."
    text = (PLANS / "rewoo_fewshot.txt").read_text() + "Final answer: #E5\n"
    assert parse_plan(text).answer_dependencies() == ["#E1", "#E2", "#E3", "#E4", "#E5"]


@pytest.mark.parametrize(
    "name,tools,answer",
    [
        ("airoboros_plan_e.txt", ["Wikipedia", "QA"], ["#E2"]),
        (
            "airoboros_plan_evidence.txt",
            ["Google", "Scraper", "LinkExtractor", "LLM"],
            [":evidence3:"],
        ),
    ],
)
def test_airoboros_training_dialects(name, tools, answer):
    plan = parse_plan((PLANS / name).read_text(), tools)
    assert plan.answer_refs == answer and all(s.plan for s in plan.steps)


def test_step_labels_keep_their_reasoning():
    plan = parse_plan(
        "Step 1: Search for the tower.\n#E1 = S[Eiffel tower]\n"
        "Step 2: Ask for its height.\n#E2 = Q[How tall, given #E1]\nFinal answer: #E2"
    )
    assert [s.plan for s in plan.steps] == ["Search for the tower.", "Ask for its height."]
    plan = parse_plan("#Plan1: look\n#E1 = S[x]\nStep 2: ask #E2 = Q[#E1]\nFinal answer: #E2")
    assert [s.plan for s in plan.steps] == ["look", "ask"]
    plan = parse_plan("Step 1: Plan: look it up\n#E1 = S[x]\nFinal answer: #E1")
    assert plan.steps[0].plan == "look it up"


# -- placeholders ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        "Answer: [:evidence[n]: containing the final answer.]",
        "Answer: :evidence[n]:",
        "Answer: :evidenceN:",
        "Final answer: #E[n]",
        "Final answer: #E[index]",
        "Final answer: #En",
    ],
)
def test_placeholder_answers_are_rejected(answer):
    step = "#E1 = S[x]" if "#E" in answer else ":evidence0: = S[x]"
    err = plan_error(f"Plan: go\n{step}\n{answer}")
    (p,) = err.problems
    assert (p.kind, p.line) == ("undefined_reference", 3)
    assert "placeholder" in p.message
    assert ("#E1" if "#E" in answer else ":evidence0:") in p.message  # names the real id to use


def test_answer_naming_no_evidence_is_rejected():
    err = plan_error(":evidence0: = S[x]\nAnswer: the final answer.")
    assert [(p.kind, p.line) for p in err.problems] == [("missing_answer", 2)]
    assert "Answer: :evidence0:" in err.problems[0].message


def test_placeholders_in_inputs_and_ids_are_rejected():
    got = kinds(":evidence0: = S[x]\n:evidence1: = K[given :evidence[n]:]\nAnswer: :evidence1:")
    assert got == [("undefined_reference", 2)]
    assert ("syntax", 2) in kinds("#E1 = S[x]\n#E[n] = K[#E1]\nFinal answer: #E1")


def test_placeholder_plan_does_not_execute():
    """The issue's case: the prompt's template answer must never run as a successful plan."""
    from agent.planner import execute

    text = "Plan: look\n:evidence0: = S[x]\nAnswer: [:evidence[n]: containing the final answer.]"
    with pytest.raises(PlanError):
        execute(parse_plan(text, ["S"]), {"S": lambda s: s})


# -- canonical ids, hints, the error ---------------------------------------------------------------


@pytest.mark.parametrize(
    "line,expected",
    [
        (":evidence0:=DuckDuckGo[q]", ":evidence0:"),
        (":evidence0:= DuckDuckGo[q]", ":evidence0:"),
        (":evidence0 = DuckDuckGo[q]", ":evidence0:"),
        (":EVIDENCE0: DuckDuckGo[q]", ":evidence0:"),
        (":evidence[0]: = DuckDuckGo[q]", ":evidence0:"),
        ("**:evidence0:**=DuckDuckGo[q]", ":evidence0:"),
    ],
)
def test_ids_are_canonical_whatever_the_spacing(line, expected):
    plan = parse_plan(f"{line}\nAnswer: :evidence0:")
    assert plan.ids == [expected]
    assert plan.to_dict()["steps"][0]["id"] == expected
    assert plan.to_dict()["layers"] == [[expected]]


def test_e_dialect_ids_are_canonical_too():
    plan = parse_plan("#e1=S[x]\n#E2 : S[#e1]\nFinal answer: #e2")
    assert plan.ids == ["#E1", "#E2"] and plan.steps[1].refs == ["#E1"]
    assert plan.answer_refs == ["#E2"]


def test_hints_speak_the_plans_dialect():
    e = str(plan_error("Plan: x\n#E1 = S[a]\n#E2 = S[#E1]"))
    assert "Final answer: #E2" in e and ":evidence" not in e
    ev = str(plan_error("Plan: x\n:evidence0: = S[a]"))
    assert "Answer: :evidence0:" in ev and "#E" not in ev
    empty = str(plan_error("Plan: nothing yet\nFinal answer: #E3"))
    assert "#EN = Tool[input]" in empty
    stray = str(plan_error("#E1 = S[a]\nR[#E1]\nFinal answer: #E1"))
    assert "'#EN = Tool[input]'" in stray


def test_plan_error_carries_the_steps_that_parsed():
    err = plan_error("Plan: a\n#E1 = S[x]\n#E2 = Nope[#E1]\n#E3 = S[\nFinal answer: #E2", ["S"])
    assert [(s.id, s.tool) for s in err.steps] == [("#E1", "S"), ("#E2", "Nope")]
    assert {p.kind for p in err.problems} == {"unknown_tool", "syntax"}


def test_plan_error_message_lists_at_most_twenty_problems():
    lines = [f"#E{i} = Nope[x]" for i in range(1, 31)]
    err = plan_error("\n".join(lines) + "\nFinal answer: #E30", ["S"])
    assert len(err.problems) == 30
    message = str(err)
    assert message.count("unknown_tool") == MAX_LISTED_PROBLEMS
    assert "and 10 more" in message and "line 20:" in message and "line 21:" not in message


def test_thousands_of_steps_on_one_line_parse_without_recursion():
    n = 3000
    line = " ".join(f"Plan: p{i}. #E{i} = S[{i}]" for i in range(1, n + 1))
    plan = parse_plan(line + f" Final answer: #E{n}", ["S"])
    assert len(plan) == n and plan.steps[-1].plan == f"p{n}." and plan.answer_refs == [f"#E{n}"]


def test_same_line_parsing_cost_grows_linearly():
    """A generous bound: 4x the text may take at most 10x the time (quadratic would be 16x)."""

    def parse(n: int) -> Callable[[], object]:
        text = " ".join(f"Plan: why {i}. #E{i + 1} = S[x #E{i}]" for i in range(1, n + 1))
        text = "#E1 = S[x] " + text + f"\nFinal answer: #E{n + 1}"
        return lambda: parse_plan(text)

    parse(200)()  # warm up
    # CPU time, the least of three interleaved runs of each size (tests/timing.py): one run can
    # lose the core to another process mid-measurement
    small, big = least_cost(parse(1600), parse(6400))
    assert big.cpu < 10 * max(small.cpu, 1e-3), (small, big)


_pieces = st.sampled_from(
    [
        "Plan:",
        "Step 1:",
        "#Plan2:",
        " #E1 = S[",
        " :evidence0: = S[",
        "#E[n]",
        ":evidence[n]:",
        ":evidence0:",
        "#E2",
        "=",
        "[",
        "]",
        " ",
        "\n",
        "Final answer:",
        "Answer:",
        "x",
        "[S[",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, max_size=60).map("".join))
def test_fuzz_same_line_and_placeholder_text_gives_a_plan_or_a_plan_error(text):
    try:
        plan = parse_plan(text, ["S"])
    except PlanError as exc:
        assert exc.problems
        steps = exc.steps
    else:
        assert plan.steps and plan.answer_refs
        steps = plan.steps
    for step in steps:  # ids always in their one canonical spelling
        assert step.id in (f"#E{step.key[1]}", f":evidence{step.key[1]}:")
