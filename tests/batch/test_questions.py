"""Reading questions: JSON Lines and text, bad lines reported with their numbers and skipped."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.batch.errors import BatchError
from agent.batch.questions import parse_lines, read_questions


def test_jsonl_carries_other_fields_through(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"id": "a", "question": " Who? ", "answer": "gold", "tags": [1]}\n'
        '\n{"id": 7, "question": "Why?"}\n',
        encoding="utf-8",
    )
    qs = read_questions(path)
    assert [(q.id, q.text, q.line) for q in qs.questions] == [("a", "Who?", 1), (7, "Why?", 3)]
    assert qs.questions[0].fields == {"answer": "gold", "tags": [1]}
    assert qs.problems == []


def test_text_file_ids_are_line_numbers(tmp_path):
    path = tmp_path / "q.txt"
    path.write_bytes("\ufeffFirst question?\r\n\r\nThird line question?\n".encode())
    qs = read_questions(path)
    assert [(q.id, q.text) for q in qs.questions] == [
        (1, "First question?"),
        (3, "Third line question?"),
    ]


def test_format_is_guessed_from_the_first_line_and_can_be_forced(tmp_path):
    path = tmp_path / "q.data"
    path.write_text('{"id": 1, "question": "Q?"}\n', encoding="utf-8")
    assert read_questions(path).questions[0].text == "Q?"
    assert read_questions(path, "text").questions[0].text == '{"id": 1, "question": "Q?"}'
    with pytest.raises(BatchError, match="unknown questions format"):
        read_questions(path, "csv")


def test_malformed_lines_are_reported_with_line_numbers_and_skipped():
    lines = [
        '{"id": 1, "question": "ok one"}',
        '{"id": 2, "question": "unterminated',
        '{"id": 3}',
        '{"id": 1, "question": "same id again"}',
        '["not", "an", "object"]',
        '{"question": "no id"}',
        '{"id": true, "question": "boolean id"}',
        '{"id": 4, "question": ""}',
        '{"id": "1", "question": "the string 1 is the id 1"}',
        '{"id": 5, "question": "ok two"}',
    ]
    qs = parse_lines(lines, "jsonl")
    assert [q.id for q in qs.questions] == [1, 5]
    by_line = {p.line: p.message for p in qs.problems}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert "not valid JSON" in by_line[2]
    assert '"question" is missing' in by_line[3]
    assert "duplicate id 1 (first on line 1)" in by_line[4]
    assert "JSON object" in by_line[5]
    assert 'no "id"' in by_line[6]
    assert "boolean" in by_line[7]
    assert "empty string" in by_line[8]
    assert "first on line 1" in by_line[9]
    assert str(qs.problems[0]).startswith("line 2: ")


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(BatchError, match="does not exist"):
        read_questions(tmp_path / "missing.jsonl")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9?\n")
    with pytest.raises(BatchError, match="not UTF-8 text"):
        read_questions(bad)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=20), st.sampled_from(["jsonl", "text"]))
@example(["", "\ufeff"], "jsonl")  # a BOM past line 1 is content, not a blank line
def test_any_text_gives_questions_or_line_problems(lines, fmt):
    lines = [ln.replace("\n", " ").replace("\r", " ") for ln in lines]
    qs = parse_lines(lines, fmt)

    def blank(i: int, line: str) -> bool:  # a byte-order mark only counts on the first line
        return not (line.removeprefix("\ufeff") if i == 1 else line).strip()

    nonblank = [i for i, ln in enumerate(lines, 1) if not blank(i, ln)]
    seen = sorted([q.line for q in qs.questions] + [p.line for p in qs.problems])
    assert seen == nonblank  # every non-blank line is either a question or a reported problem
    assert len({q.key for q in qs.questions}) == len(qs.questions)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["id", "question", "x"]),
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(),
                st.text(max_size=5),
                st.lists(st.integers(), max_size=2),
            ),
            max_size=3,
        ),
        max_size=10,
    )
)
def test_any_json_objects_are_questions_or_problems(objs):
    lines = [json.dumps(o) for o in objs]
    qs = parse_lines(lines, "jsonl")
    assert len(qs.questions) + len(qs.problems) == len(lines)
    for q in qs.questions:
        assert isinstance(q.text, str) and q.text
