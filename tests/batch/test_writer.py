"""The output file: whole lines, each id once, resumable after a kill, one writer at a time."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.batch.errors import BatchError
from agent.batch.writer import ResultWriter, read_records


def test_ids_written_before_are_done_and_never_written_twice(tmp_path):
    out = tmp_path / "a.jsonl"
    with ResultWriter(out) as w:
        w.write({"id": 1, "answer": "x"})
        w.write({"id": "b", "answer": "ü"})
    with ResultWriter(out) as w:
        assert w.done == {"1", "b"}
        with pytest.raises(BatchError, match="already in"):
            w.write({"id": "1", "answer": "again"})
    assert [r["id"] for r in read_records(out)] == [1, "b"]
    assert out.read_text(encoding="utf-8").count("\n") == 2


def test_a_half_written_last_line_is_cut_off_and_its_question_runs_again(tmp_path):
    out = tmp_path / "a.jsonl"
    out.write_bytes(b'{"id": 1, "answer": "x"}\n{"id": 2, "ans')
    with ResultWriter(out) as w:
        assert w.done == {"1"}
        assert w.repaired_bytes == len(b'{"id": 2, "ans')
        w.write({"id": 2, "answer": "y"})
    assert [r["id"] for r in read_records(out)] == [1, 2]
    assert all(json.loads(line) for line in out.read_text().splitlines())


def test_a_second_writer_on_the_same_file_is_refused(tmp_path):
    out = tmp_path / "a.jsonl"
    with ResultWriter(out):
        with pytest.raises(BatchError, match="another 'agent batch'"):
            ResultWriter(out)
    ResultWriter(out).close()  # free again once the first is closed


def test_a_file_that_is_not_batch_output_is_not_appended_to(tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text('{"id": 1}\nmy shopping list\n', encoding="utf-8")
    with pytest.raises(BatchError, match="line 2 is not an 'agent batch' record"):
        ResultWriter(out)
    assert out.read_text(encoding="utf-8") == '{"id": 1}\nmy shopping list\n'
    with pytest.raises(BatchError, match="cannot open output"):
        ResultWriter(tmp_path / "notes.txt" / "x.jsonl")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_any_existing_output_is_resumed_or_refused_clearly(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("w") / "a.jsonl"
    out.write_bytes(data)
    try:
        writer = ResultWriter(out)
    except BatchError as exc:
        assert "is not an 'agent batch' record" in str(exc)
        assert out.read_bytes() == data[: data.rfind(b"\n") + 1] or out.read_bytes() == data
        return
    with writer:
        writer.write({"id": "new-" + str(len(writer.done)), "answer": "x"})
    text = out.read_bytes()
    assert text.endswith(b"\n") and text.startswith(data[: data.rfind(b"\n") + 1])
