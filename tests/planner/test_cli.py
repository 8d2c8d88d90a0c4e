"""agent ask / plan / run / replay, driven in-process with a scripted model and local tools."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.cli import main

PLAN = (
    "Plan: search\n:evidence0: = Search[meaning of life]\n"
    "Plan: read\n:evidence1: = Reader[:evidence0:]\nAnswer: :evidence1:\n"
)
TOOLS = [
    "--no-default-tools",
    "--tool",
    "tests.planner.cli_tools:Search",
    "--tool",
    "tests.planner.cli_tools:Reader",
]


def _script(tmp_path: Path, *outputs: str) -> str:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(list(outputs)))
    return str(path)


def test_ask_prints_answer_and_sources_and_live_progress(tmp_path, capsys):
    code = main(["ask", "--script", _script(tmp_path, PLAN), *TOOLS, "What is it?"])
    out, err = capsys.readouterr()
    assert code == 0
    assert out.startswith("Page text of 2 link(s): the answer is 42.\n")
    assert "Sources:\n- https://pages.example/meaning-of-life" in out
    assert "planned  :evidence0: = Search[meaning of life]" in err
    assert "start    :evidence1: Reader[" in err and "done     :evidence1: Reader in" in err


def test_ask_json_and_quiet(tmp_path, capsys):
    code = main(["ask", "--script", _script(tmp_path, PLAN), *TOOLS, "--json", "What is it?"])
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert code == 0 and err == ""
    assert data["ok"] and data["question"] == "What is it?"
    assert [s["status"] for s in data["steps"]] == ["ok", "ok"]
    assert data["plan"]["layers"] == [[":evidence0:"], [":evidence1:"]]


def test_ask_with_an_invalid_plan_lists_problems(tmp_path, capsys):
    bad = ":evidence0: = Serch[x]\nAnswer: :evidence3:"
    code = main(["ask", "--script", _script(tmp_path, bad), *TOOLS, "-q", "Q?"])
    err = capsys.readouterr().err
    assert code == 1
    assert "line 1: unknown_tool" in err and "did you mean 'Search'" in err
    assert "line 2: undefined_reference" in err and "  1| :evidence0: = Serch[x]" in err


def test_ask_failed_answer_exits_1(tmp_path, capsys):
    plan = ":evidence0: = Broken[x]\nAnswer: :evidence0:"
    code = main(
        [
            "ask",
            "--script",
            _script(tmp_path, plan),
            *TOOLS,
            "--tool",
            "tests.planner.cli_tools:Broken",
            "-q",
            "Q?",
        ]
    )
    assert code == 1 and "the service is down" in capsys.readouterr().err


def test_record_then_replay(tmp_path, capsys):
    cassette = tmp_path / "run.json"
    assert (
        main(
            [
                "ask",
                "--script",
                _script(tmp_path, PLAN),
                *TOOLS,
                "-q",
                "--record",
                str(cassette),
                "What is it?",
            ]
        )
        == 0
    )
    asked = capsys.readouterr().out
    assert main(["replay", str(cassette)]) == 0
    out, err = capsys.readouterr()
    assert out == asked and "replaying" in err and "done     :evidence0: Search" in err


def test_replay_divergence_is_an_error_naming_the_step(tmp_path, capsys):
    cassette = tmp_path / "run.json"
    main(
        [
            "ask",
            "--script",
            _script(tmp_path, PLAN),
            *TOOLS,
            "-q",
            "--record",
            str(cassette),
            "What is it?",
        ]
    )
    data = json.loads(cassette.read_text())
    (first,) = [i for i in data["interactions"] if i.get("step") == ":evidence0:"]
    first["request"]["input"] = "meaning of death"
    cassette.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["replay", "-q", str(cassette)]) == 1
    err = capsys.readouterr().err
    assert "agent replay: error:" in err and "step :evidence0: (Search)" in err


def test_replay_of_a_missing_file(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "none.json")]) == 1
    assert "cannot read cassette" in capsys.readouterr().err


def test_plan_prints_plan_and_graph(tmp_path, capsys):
    assert main(["plan", "--script", _script(tmp_path, PLAN), *TOOLS, "Q?"]) == 0
    out = capsys.readouterr().out
    assert ":evidence1: = Reader[:evidence0:]" in out
    assert "layer 1: :evidence0: Search  needs: -" in out
    assert "layer 2: :evidence1: Reader  needs: :evidence0:" in out


def test_plan_json_with_problems(tmp_path, capsys):
    assert (
        main(["plan", "--script", _script(tmp_path, "nothing useful"), *TOOLS, "--json", "Q?"]) == 1
    )
    data = json.loads(capsys.readouterr().out)
    assert {p["kind"] for p in data["problems"]} == {"empty_plan", "missing_answer"}


def test_run_executes_a_plan_file_and_stdin(tmp_path, capsys, monkeypatch):
    plan = tmp_path / "plan.txt"
    plan.write_text("#E1 = Search[cats]\n#E2 = Search[dogs]\nFinal answer: #E1 and #E2\n")
    assert main(["run", str(plan), *TOOLS, "-q"]) == 0
    assert capsys.readouterr().out.startswith("Result about cats\nhttps://pages.example/cats and ")
    monkeypatch.setattr(sys, "stdin", io.StringIO("#E1 = Reader[x]\nFinal answer: #E1"))
    assert main(["run", "-", *TOOLS, "-q"]) == 0
    assert "the answer is 42" in capsys.readouterr().out


def test_run_reports_plan_problems_and_unreadable_files(tmp_path, capsys):
    plan = tmp_path / "plan.txt"
    plan.write_text("#E1 = Nope[x]\n")
    assert main(["run", str(plan), *TOOLS]) == 1
    assert "unknown_tool" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.txt"), *TOOLS]) == 1
    assert "cannot read plan file" in capsys.readouterr().err


def test_no_tools_is_an_error(tmp_path, capsys):
    assert main(["ask", "--script", _script(tmp_path, PLAN), "--no-default-tools", "Q?"]) == 1
    assert "no tools" in capsys.readouterr().err


def test_help_says_plans_are_constrained_by_default(capsys):
    with pytest.raises(SystemExit):
        main(["ask", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--no-constrain" in help_text and "By default decoding is constrained" in help_text


# -- agent run on strange input (issue 19) ---------------------------------------------------------


@pytest.mark.parametrize(
    "data, pattern",
    [
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "is binary (a NUL byte at offset 8)"),
        (
            b"#E1 = Search[caf\xe9]\nFinal answer: #E1\n",
            "is not UTF-8 text (byte 0xe9 at offset 16)",
        ),
        (b"\xff\xfe#\0E\x001\0", "is binary"),  # UTF-16
        (bytes(range(256)) * 64, "is binary (a NUL byte at offset 0)"),
    ],
)
def test_run_refuses_binary_and_non_utf8_files_in_one_line(tmp_path, capsys, data, pattern):
    plan = tmp_path / "plan.bin"
    plan.write_bytes(data)
    assert main(["run", str(plan), *TOOLS, "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"agent run: error: the plan in {plan} {pattern}")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_run_reads_binary_stdin_as_bytes(tmp_path, capsys, monkeypatch):
    class Stdin:
        buffer = io.BytesIO(b"#E1 = Search[\xc3\x28]\n")

    monkeypatch.setattr(sys, "stdin", Stdin())
    assert main(["run", "-", *TOOLS, "-q"]) == 1
    err = capsys.readouterr().err
    assert "the plan on stdin is not UTF-8 text (byte 0xc3 at offset 13)" in err


def test_run_accepts_a_utf8_bom_and_a_directory_is_unreadable(tmp_path, capsys):
    plan = tmp_path / "plan.txt"
    plan.write_bytes(b"\xef\xbb\xbf#E1 = Search[cats]\nFinal answer: #E1\n")
    assert main(["run", str(plan), *TOOLS, "-q"]) == 0
    assert "Result about cats" in capsys.readouterr().out
    assert main(["run", str(tmp_path), *TOOLS, "-q"]) == 1
    assert f"cannot read plan file {tmp_path}" in capsys.readouterr().err


def test_run_speaks_of_the_plan_in_the_file_not_of_the_model(tmp_path, capsys):
    plan = tmp_path / "mine.txt"
    plan.write_text("#E1 = Nope[x]\nFinal answer: #E1\n")
    assert main(["run", str(plan), *TOOLS]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"the plan in {plan} could not be used: ")
    assert "model" not in err and "line 1: unknown_tool" in err


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode)))
def test_fuzz_plan_file_bytes_give_text_or_a_one_line_error(data):
    import tempfile

    from agent.errors import AgentError
    from agent.planner.cli import read_plan_file

    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        f.write(data)
        f.flush()
        try:
            text = read_plan_file(f.name)
        except AgentError as exc:
            assert "\n" not in str(exc) and f.name in str(exc)
            assert b"\0" in data or "UTF-8" in str(exc)
        else:
            assert "\0" not in text and text.encode() == data.removeprefix(b"\xef\xbb\xbf")
