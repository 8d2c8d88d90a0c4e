"""Reading a batch's questions: JSON Lines (``{"id": ..., "question": ...}``) or plain text.

A text file holds one question per line and each question's id is its line number. A JSON Lines
file may carry any other fields; they travel with the question into its output record. Bad lines
(invalid JSON, no question, an id seen before) are reported with their line numbers and skipped,
so one typo never stops a batch of thousands.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.batch.errors import BatchError

RESERVED = ("id", "question")


@dataclass(frozen=True)
class Question:
    id: str | int
    text: str
    line: int  # 1-based line of the input file
    fields: dict[str, Any] = field(default_factory=dict)  # the input's other fields

    @property
    def key(self) -> str:
        """What resuming and duplicate detection compare: ``1`` and ``"1"`` are the same id."""
        return id_key(self.id)


@dataclass(frozen=True)
class InputProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class QuestionSet:
    questions: list[Question]
    problems: list[InputProblem]


def id_key(value: Any) -> str:
    return str(value)


def detect_format(path: Path, first_line: str) -> str:
    """``jsonl`` for .jsonl/.ndjson/.json files or a first line that starts with ``{``."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "jsonl" if first_line.lstrip().startswith("{") else "text"


def read_questions(path: str | Path, fmt: str | None = None) -> QuestionSet:
    """The questions of ``path`` (``fmt``: "jsonl", "text" or None to detect), and the bad lines."""
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8", newline=None) as fh:
            lines = fh.read().split("\n")
    except FileNotFoundError:
        raise BatchError(f"questions file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise BatchError(
            f"questions file {path} is not UTF-8 text (byte {exc.start}): save it as UTF-8"
        ) from None
    except OSError as exc:
        raise BatchError(f"cannot read questions file {path}: {exc.strerror or exc}") from None
    fmt = fmt or detect_format(path, next((ln for ln in lines if ln.strip()), ""))
    if fmt not in ("jsonl", "text"):
        raise BatchError(f"unknown questions format {fmt!r}: use 'jsonl' or 'text'")
    return parse_lines(lines, fmt)


def parse_lines(lines: Iterable[str], fmt: str) -> QuestionSet:
    """Questions from ``lines`` (without their newlines); blank lines are ignored."""
    questions: list[Question] = []
    problems: list[InputProblem] = []
    seen: dict[str, int] = {}
    parse = _parse_json_line if fmt == "jsonl" else _parse_text_line
    for number, line in enumerate(lines, 1):
        line = line.removeprefix("\ufeff") if number == 1 else line  # noqa: PLW2901 - a BOM
        if not line.strip():
            continue
        try:
            q = parse(line, number)
        except _LineError as exc:
            problems.append(InputProblem(number, str(exc)))
            continue
        first = seen.get(q.key)
        if first is not None:
            problems.append(
                InputProblem(number, f"duplicate id {q.id!r} (first on line {first}); skipped")
            )
            continue
        seen[q.key] = number
        questions.append(q)
    return QuestionSet(questions, problems)


class _LineError(ValueError):
    pass


def _parse_text_line(line: str, number: int) -> Question:
    return Question(id=number, text=line.strip(), line=number)


def _parse_json_line(line: str, number: int) -> Question:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise _LineError(f"not valid JSON ({exc}); fix or remove the line") from None
    if not isinstance(obj, dict):
        raise _LineError(
            f'expected a JSON object like {{"id": 1, "question": "..."}}, got {_kind(obj)}'
        )
    if "id" not in obj:
        raise _LineError('no "id": give each question a unique string or integer id')
    qid = obj["id"]
    if isinstance(qid, bool) or not isinstance(qid, (str, int)) or qid == "":
        raise _LineError(f'"id" must be a non-empty string or an integer, got {_kind(qid)}')
    text = obj.get("question")
    if not isinstance(text, str) or not text.strip():
        what = "missing" if text is None else f"not a non-empty string ({_kind(text)})"
        raise _LineError(f'"question" is {what}')
    fields = {k: v for k, v in obj.items() if k not in RESERVED}
    return Question(id=qid, text=text.strip(), line=number, fields=fields)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    return {int: "a number", float: "a number", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )
