"""`agent call` end to end: definitions file, scripted or real model, printed call or clear
error."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from agent.cli import main
from tests.golden import REPO, model_paths

EXAMPLE = str(REPO / "examples" / "functions.yaml")
INPUT = "How many times is 'Python' in my notes?"
GOOD = (
    ' {"function": "file_analytics", '
    '"params": {"action": "count_occurrences", "filters": {"keyword": "Python"},}}'
)


def script(tmp_path, *outputs: str) -> str:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(list(outputs)))
    return str(path)


def test_prints_the_validated_call(tmp_path, capsys):
    assert main(["call", "--script", script(tmp_path, GOOD), "--functions", EXAMPLE, INPUT]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {
        "function": "file_analytics",
        "params": {"action": "count_occurrences", "filters": {"keyword": "Python"}},
    }
    assert "repaired: trailing commas" in err


def test_yaml_format_prints_yaml(tmp_path, capsys):
    answer = "function: weather_forecast\nparams:\n  location: NO\n  days: 012\n"
    assert (
        main(
            [
                "call",
                "--script",
                script(tmp_path, answer),
                "-f",
                EXAMPLE,
                "--format",
                "yaml",
                "-q",
                "weather in Norway for 12 days",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert yaml.safe_load(out) == {
        "function": "weather_forecast",
        "params": {"location": "NO", "days": 12},
    }
    assert err == ""


def test_json_output_for_scripts(tmp_path, capsys):
    path = script(tmp_path, "no idea", GOOD)
    assert main(["call", "--script", path, "-f", EXAMPLE, "--json", INPUT]) == 0
    out, _ = capsys.readouterr()
    data = json.loads(out)
    assert data["function"] == "file_analytics" and data["attempts"] == 2
    assert data["format"] == "json" and data["repairs"] == ["trailing commas"]


def test_json_error_output(tmp_path, capsys):
    path = script(tmp_path, '{"function": "wether"}')
    assert main(["call", "--script", path, "-f", EXAMPLE, "--json", "--retries", "0", INPUT]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["error"]["kind"] == "unknown_function"
    assert data["error"]["suggestions"] == ["weather_forecast"]


def test_failure_is_a_clear_error_with_exit_code_1(tmp_path, capsys):
    path = script(tmp_path, "nope", '{"function": "send_email", "params": {"to": ["x"]}}')
    assert main(["call", "--script", path, "-f", EXAMPLE, "--retries", "1", INPUT]) == 1
    err = capsys.readouterr().err
    assert "attempt 1: no_call" in err and "asking again" in err
    assert "agent call: error: invalid_params: no valid call after 2 attempts" in err
    assert "$.to[0]: 'x' is not a 'email'" in err
    assert "'subject' is a required property" in err


def test_print_prompt_needs_no_model(capsys):
    assert main(["call", "-f", EXAMPLE, "--print-prompt", "--format", "yaml", INPUT]) == 0
    out = capsys.readouterr().out
    assert "Provide your response in YAML format.\n\nInput: " + INPUT in out
    assert out.rstrip("\n").endswith("ASSISTANT:")


@pytest.mark.parametrize(
    "argv, words",
    [
        (["call", "-f", EXAMPLE, INPUT], "a model is needed"),
        (["call", "--script", "/nonexistent.json", "-f", EXAMPLE, INPUT], "cannot read script"),
        (
            ["call", "--script", "SCRIPT", "-f", "/nonexistent.yaml", INPUT],
            "cannot read function definitions",
        ),
        (["call", "--script", "SCRIPT", "-f", EXAMPLE, "--retries", "-1", INPUT], "--retries"),
    ],
)
def test_usage_errors(tmp_path, capsys, argv, words):
    argv = [script(tmp_path, GOOD) if a == "SCRIPT" else a for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("agent call: error: ") and words in err


def test_console_script_runs(tmp_path):
    path = script(tmp_path, GOOD)
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "call", "--script", path, "-f", EXAMPLE, "-q", INPUT],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["function"] == "file_analytics"


def _tiny_model():
    pytest.importorskip("agent.llm.model")
    paths = [p for p in model_paths() if p.suffix in (".gguf", ".bin")]
    if not paths:
        pytest.skip("no golden tiny model")
    return str(paths[0])


def test_golden_tiny_model_gives_a_call_or_a_clear_error(capsys):
    # random weights: the answer is almost surely not a call; either way the outcome is clear
    model = _tiny_model()
    code = main(
        [
            "call",
            "-m",
            model,
            "-f",
            EXAMPLE,
            "--retries",
            "0",
            "-n",
            "16",
            "--seed",
            "1",
            "-q",
            INPUT,
        ]
    )
    out, err = capsys.readouterr()
    if code == 0:
        assert json.loads(out)["function"] in ("file_analytics", "weather_forecast", "send_email")
    else:
        assert code == 1
        assert err.startswith("agent call: error: ")
        assert any(
            k in err
            for k in (
                "no_call",
                "invalid_syntax",
                "unknown_function",
                "invalid_params",
                "context holds",
            )
        )


@pytest.mark.parametrize("flags, constrained", [([], True), (["--no-constrain"], False)])
def test_decoding_is_constrained_unless_asked_not_to(monkeypatch, capsys, flags, constrained):
    import agent.functions.cli as call_cli
    from agent.llm.scripted import ScriptedModel

    model = ScriptedModel([GOOD])
    monkeypatch.setattr(call_cli, "open_model", lambda args, quiet=False: model)
    assert main(["call", "--script", "unused.json", "-f", EXAMPLE, "-q", *flags, INPUT]) == 0
    assert (model.calls[0].get("grammar") is not None) is constrained
