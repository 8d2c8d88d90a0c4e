"""Parser rules: every accepted variant, every problem kind, and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import PlanError
from agent.planner import Plan, parse_plan
from agent.planner.card import CARD_PLAN, CARD_TOOLS
from agent.tools.registry import ToolRegistry


def problems(text: str, tools=None) -> list[tuple[str, int]]:
    with pytest.raises(PlanError) as info:
        parse_plan(text, tools)
    return [(p.kind, p.line) for p in info.value.problems]


# -- the model card's plan ----------------------------------------------------------------------


def test_card_plan_steps_fields():
    plan = parse_plan(CARD_PLAN, CARD_TOOLS)
    assert plan.ids == [f":evidence{i}:" for i in range(6)]
    s1 = plan.steps[1]
    assert (s1.tool, s1.input, s1.refs, s1.line) == (
        "KnowledgeModel",
        "Who won the Nobel Prize in Literature in 2020, given :evidence0:?",
        [":evidence0:"],
        4,
    )
    assert s1.plan.startswith("Utilize the KnowledgeModel")
    assert plan.steps[5].refs == [":evidence1:", ":evidence4:"]
    assert plan.answer == ":evidence5:" and plan.answer_refs == [":evidence5:"]
    assert plan.answer_line == 13


def test_card_plan_graph():
    plan = parse_plan(CARD_PLAN)
    assert plan.dependencies(":evidence5:") == [":evidence1:", ":evidence4:"]
    assert plan.dependencies(":evidence0:") == []
    assert [[s.id for s in layer] for layer in plan.layers()] == [
        [f":evidence{i}:"] for i in range(6)
    ]
    assert plan.ancestors(":evidence3:") == [":evidence0:", ":evidence1:", ":evidence2:"]


def test_layers_group_independent_steps():
    plan = parse_plan(
        "#E1 = A[x]\n#E2 = B[y]\n#E3 = C[#E1 #E2]\n#E4 = A[z]\n#E5 = B[#E3]\nFinal answer: #E5"
    )
    assert [[s.id for s in layer] for layer in plan.layers()] == [
        ["#E1", "#E2", "#E4"],
        ["#E3"],
        ["#E5"],
    ]


# -- accepted variants ---------------------------------------------------------------------------


def test_rewoo_dialect_with_final_answer():
    plan = parse_plan(
        "Plan: Search.\n#E1 = Wikipedia[Colorado orogeny]\n"
        "Plan: Ask.\n#E2 = LLM[What area? Given context: #E1]\nFinal answer: #E2"
    )
    assert plan.ids == ["#E1", "#E2"] and plan.steps[1].refs == ["#E1"]
    assert plan.answer == "#E2"


def test_crlf_blank_lines_and_prose_around():
    text = (
        "Sure! Here is my plan.\r\n\r\nPlan: look it up\r\n\r\n:evidence0: = DuckDuckGo[x]\r\n"
        "\r\nAnswer: :evidence0:\r\nI hope this helps. :evidence9: = Foo[["
    )
    plan = parse_plan(text, CARD_TOOLS)
    assert plan.steps[0].line == 5 and plan.steps[0].input == "x"
    assert plan.steps[0].plan == "look it up"
    assert plan.answer == ":evidence0:"


def test_markdown_bold_around_keywords():
    text = (
        "**Plan:** find it\n**:evidence0:** = DuckDuckGo[q]\n**Plan**: read it\n"
        "__:evidence1:__ = KnowledgeModel[what, given :evidence0:?]\n**Answer:** :evidence1:"
    )
    plan = parse_plan(text, CARD_TOOLS)
    assert plan.ids == [":evidence0:", ":evidence1:"]
    assert plan.steps[1].plan == "read it"
    assert plan.answer == ":evidence1:"


def test_case_insensitive_keywords_and_tools_in_registry_spelling():
    reg = ToolRegistry({"DuckDuckGo": lambda s: s})
    plan = parse_plan("PLAN: go\n:evidence0: = duckduckgo[q]\nfinal ANSWER: :evidence0:", reg)
    assert plan.steps[0].tool == "DuckDuckGo"


def test_extra_spaces_around_equals_and_before_bracket():
    plan = parse_plan(":evidence0:    =    DuckDuckGo   [ q ]\n#E1=LLM[x]\nAnswer: :evidence0:")
    assert (plan.steps[0].tool, plan.steps[0].input) == ("DuckDuckGo", "q")
    assert plan.steps[1].tool == "LLM"


def test_ids_are_whole_tokens_e1_vs_e10():
    lines = [f"#E{i} = T[{i}]" for i in range(1, 11)]
    lines.append("#E11 = T[#E10 and #E1]")
    plan = parse_plan("\n".join(lines) + "\nFinal answer: #E11 #E1")
    assert plan.steps[-1].refs == ["#E10", "#E1"]
    assert plan.answer_refs == ["#E11", "#E1"]


def test_gaps_in_numbering():
    plan = parse_plan(":evidence2: = A[x]\n:evidence7: = B[:evidence2:]\nAnswer: :evidence7:")
    assert plan.dependencies(":evidence7:") == [":evidence2:"]


def test_nested_brackets_kept_and_input_spanning_lines():
    text = (
        "#E1 = Calc[[1, 2] + [3]]\n#E2 = LLM[Summarize\n  the list [a, b]\nusing #E1]\n"
        "Plan: done\nFinal answer: #E2"
    )
    plan = parse_plan(text)
    assert plan.steps[0].input == "[1, 2] + [3]"
    assert plan.steps[1].input == "Summarize\n  the list [a, b]\nusing #E1"
    assert plan.steps[1].line == 2 and plan.steps[1].refs == ["#E1"]


def test_refs_first_appearance_each_once():
    plan = parse_plan("#E1 = A[x]\n#E2 = A[y]\n#E3 = B[#E2 #E1 #E2 #e1]\nFinal answer: #E3")
    assert plan.steps[2].refs == ["#E2", "#E1"]


def test_answer_outer_brackets_removed_and_multiple_refs():
    plan = parse_plan(
        ":evidence0: = A[x]\n:evidence1: = B[y]\nAnswer: [:evidence0: and :evidence1:]"
    )
    assert plan.answer == ":evidence0: and :evidence1:"
    assert plan.answer_refs == [":evidence0:", ":evidence1:"]


def test_answer_on_the_next_line():
    plan = parse_plan(":evidence0: = A[x]\nAnswer:\n\n:evidence0:")
    assert plan.answer == ":evidence0:"


def test_card_template_wrapper_brackets_and_reference_without_closing_colon():
    plan = parse_plan(
        ":evidence0: = [DuckDuckGo[q]]\n"
        ":evidence1: = KnowledgeModel[Given context :evidence0, who?]\n"
        "Answer: [:evidence1:]"
    )
    assert (plan.steps[0].tool, plan.steps[0].input) == ("DuckDuckGo", "q")
    assert plan.steps[1].refs == [":evidence0:"]


def test_plan_text_spanning_lines_and_numbered_plan():
    plan = parse_plan("Plan 1: first search\nfor the winner\n#E1 = S[x]\nFinal answer: #E1")
    assert plan.steps[0].plan == "first search for the winner"


def test_colon_separator_of_the_gentopia_dialect():
    plan = parse_plan("#E1: Search[x]\nFinal answer: #E1")
    assert plan.steps[0].tool == "Search"


def test_indented_and_bulleted_steps():
    plan = parse_plan("  - Plan: a\n  - #E1 = S[x]\n  * Final answer: #E1")
    assert plan.ids == ["#E1"]


def test_text_after_answer_ignored_even_if_it_looks_like_steps():
    plan = parse_plan("#E1 = S[x]\nFinal answer: #E1\n#E1 = S[again]\nAnswer: nonsense")
    assert len(plan) == 1 and plan.answer == "#E1"


def test_trailing_prose_after_the_input_is_ignored():
    plan = parse_plan("#E1 = S[x] (to find the winner)\nFinal answer: #E1")
    assert plan.steps[0].input == "x"


def test_plan_of_the_tools_issue_accepts_any_tool_without_registry():
    plan = parse_plan("#E1 = Anything_Goes[x]\nFinal answer: #E1")
    assert plan.steps[0].tool == "Anything_Goes"


# -- problems -------------------------------------------------------------------------------------


def test_unknown_tool_with_suggestion():
    with pytest.raises(PlanError) as info:
        parse_plan(":evidence0: = DuckDuckGoo[x]\nAnswer: :evidence0:", CARD_TOOLS)
    (p,) = info.value.problems
    assert (p.kind, p.line) == ("unknown_tool", 1)
    assert "did you mean 'DuckDuckGo'" in p.message and "KnowledgeModel" in p.message


def test_undefined_reference():
    assert problems(":evidence0: = A[:evidence3:]\nAnswer: :evidence0:") == [
        ("undefined_reference", 1)
    ]


def test_undefined_reference_in_answer_and_dialect_hint():
    with pytest.raises(PlanError) as info:
        parse_plan("#E1 = A[x]\nAnswer: :evidence1:")
    (p,) = info.value.problems
    assert (p.kind, p.line) == ("undefined_reference", 2)
    assert "did you mean #E1" in p.message


def test_forward_and_self_reference():
    got = problems("#E1 = A[#E2]\n#E2 = B[#E2]\nFinal answer: #E2")
    assert got == [("forward_reference", 1), ("forward_reference", 2)]


def test_duplicate_id():
    with pytest.raises(PlanError) as info:
        parse_plan("#E1 = A[x]\n#E1 = B[y]\nFinal answer: #E1")
    (p,) = info.value.problems
    assert (p.kind, p.line) == ("duplicate_id", 2) and "line 1" in p.message


def test_missing_answer():
    assert problems("#E1 = A[x]\n#E2 = B[#E1]") == [("missing_answer", 2)]


def test_answer_without_text():
    assert [k for k, _ in problems("#E1 = A[x]\nAnswer:\n\n")] == ["missing_answer"]


def test_empty_plan():
    assert [k for k, _ in problems("Answer: 42")] == ["empty_plan"]
    kinds = {k for k, _ in problems("")}
    assert kinds == {"empty_plan", "missing_answer"}


@pytest.mark.parametrize(
    "line",
    [
        ":evidence0: = DuckDuckGo query",  # no brackets
        ":evidence0: = ",  # nothing after '='
        ":evidence0: = DuckDuckGo[a] then B[c]",  # two calls on one line
        ":evidence0: = DuckDuckGo[a]] extra",  # unbalanced closing
    ],
)
def test_syntax_problems(line):
    got = problems(f"Plan: x\n{line}\nAnswer: :evidence0:")
    assert ("syntax", 2) in got


def test_unclosed_bracket_is_reported_and_parsing_resumes():
    got = problems("#E1 = A[x\nPlan: more\n#E2 = B[y]\nFinal answer: #E2")
    assert got == [("syntax", 1)]


def test_tool_call_without_id_in_the_plan_body():
    assert problems("#E1 = A[x]\nB[#E1]\nFinal answer: #E1") == [("syntax", 2)]


def test_every_problem_reported_at_once_sorted_by_line():
    text = (
        "Plan: a\n:evidence0: = Nope[:evidence4:]\n:evidence1: = DuckDuckGo[:evidence2:]\n"
        ":evidence2: = DuckDuckGo[x]\n:evidence2: = DuckDuckGo[y]\n:evidence3: = \n"
    )
    with pytest.raises(PlanError) as info:
        parse_plan(text, CARD_TOOLS)
    got = [(p.kind, p.line) for p in info.value.problems]
    assert got == [
        ("unknown_tool", 2),
        ("undefined_reference", 2),
        ("forward_reference", 3),
        ("duplicate_id", 5),
        ("syntax", 6),
        ("missing_answer", 6),
    ]
    assert "line 2: unknown_tool" in str(info.value)


# -- fuzzing -------------------------------------------------------------------------------------

_pieces = st.sampled_from(
    [
        "Plan:",
        "**Plan:**",
        ":evidence",
        "#E",
        "0",
        "1",
        "10",
        ":",
        "=",
        " ",
        "\n",
        "\r\n",
        "[",
        "]",
        "DuckDuckGo",
        "KnowledgeModel",
        "Answer:",
        "Final answer:",
        "given",
        "*",
        "_",
        "x",
    ]
)
_plan_like = st.lists(_pieces, max_size=80).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), _plan_like))
def test_fuzz_only_plan_or_plan_error(text):
    try:
        plan = parse_plan(text, CARD_TOOLS)
    except PlanError as exc:
        assert exc.problems and all(
            p.kind
            in {
                "syntax",
                "unknown_tool",
                "undefined_reference",
                "forward_reference",
                "duplicate_id",
                "missing_answer",
                "empty_plan",
            }
            for p in exc.problems
        )
    else:
        assert isinstance(plan, Plan) and plan.steps
        seen = set()
        for step in plan.steps:  # a valid plan only references earlier steps
            assert set(step.refs) <= seen
            seen.add(step.id)


@settings(max_examples=20, deadline=2000)
@given(
    st.sampled_from(["[", "#E1", ":evidence", "#E", " ", "=", "1", "a"]),
    st.integers(min_value=2_000, max_value=20_000),
)
def test_fuzz_long_repetitive_inputs_stay_fast(piece, n):
    text = "#E1 = A[" + piece * n + "\n" + ("Plan: " + piece * n) + "\nFinal answer: #E1"
    try:
        parse_plan(text)
    except PlanError:
        pass


def test_numbered_lines():
    plan = parse_plan(
        "1. Plan: search\n2. #E1 = S[x]\n3) Plan: read\n4) #E2 = R[#E1]\n5. Final answer: #E2"
    )
    assert plan.ids == ["#E1", "#E2"] and plan.steps[1].plan == "read"


def test_bracketed_evidence_number_of_the_prompt_notation():
    plan = parse_plan(
        ":evidence[0]: = A[x]\n:evidence1: = B[given :evidence[0]:]\nAnswer: :evidence[1]:"
    )
    # ids come back in one canonical spelling, whatever notation the step was written in
    assert plan.ids == [":evidence0:", ":evidence1:"]
    assert plan.steps[1].refs == [":evidence0:"]
    assert plan.answer_refs == [":evidence1:"]
    assert plan.dependencies(":evidence1:") == [":evidence0:"]


def test_stream_returns_each_step_once_when_its_line_is_complete():
    from agent.planner import PlanStream

    stream = PlanStream(["A", "B"])
    assert stream.feed("Plan: x\r\n#E1 = A[q") == []
    assert stream.feed("]") == []  # the line may still go on
    s1, s2 = stream.feed("\r\n#E2 = B[#E1]\n#E3 = Nope[")
    assert (s1.id, s1.input, s1.line) == ("#E1", "q", 2)
    assert (s2.id, s2.refs, s2.line) == ("#E2", ["#E1"], 3)
    assert [
        s.id for s in stream.feed("#E2]\n#E4 = B[#E3]\n")
    ] == []  # unknown tool, dependents held
    assert not stream.done
    stream.feed("Final answer: #E2\nmore prose")
    assert stream.done
    with pytest.raises(PlanError) as info:
        stream.close()
    assert [(p.kind, p.line) for p in info.value.problems] == [("unknown_tool", 4)]


def test_stream_emits_dependents_as_soon_as_their_line_ends():
    from agent.planner import PlanStream

    stream = PlanStream()
    text = "#E1 = A[x]\n#E2 = B[#E1]\nFinal answer: #E2"
    got = []
    for ch in text:
        got += [s.id for s in stream.feed(ch)]
    assert got == ["#E1", "#E2"]
    assert stream.close().answer == "#E2"


@settings(max_examples=100, deadline=None)
@given(_plan_like, st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=30))
def test_fuzz_streaming_in_any_chunks_agrees_with_parsing_at_once(text, cuts):
    from agent.planner import PlanStream

    def outcome(fn):
        try:
            plan = fn()
            return (
                "plan",
                [(s.id, s.tool, s.input, s.refs, s.plan, s.line) for s in plan.steps],
                plan.answer,
            )
        except PlanError as exc:
            return ("error", [(p.kind, p.line) for p in exc.problems])

    def streamed():
        stream, pos, i = PlanStream(CARD_TOOLS), 0, 0
        while pos < len(text):
            n = cuts[i % len(cuts)]
            stream.feed(text[pos : pos + n])
            pos, i = pos + n, i + 1
        return stream.close()

    assert outcome(streamed) == outcome(lambda: parse_plan(text, CARD_TOOLS))
