"""Batches of questions on a local worker pool or a Ray cluster, resumable and exactly-once.

    from agent.batch import EngineSpec, run_batch
    summary = run_batch("questions.jsonl", "answers.jsonl", EngineSpec(model="m.gguf"), workers=2)

Modules: ``questions`` (input), ``writer`` (the output file), ``runner`` (one engine),
``dispatch`` (retries, lost engines), ``pool`` (local processes), ``ray_backend`` (Ray actors),
``limits`` (one search pace for all engines), ``driver`` (``run_batch``), ``cli``.
"""

from __future__ import annotations

from agent.batch.driver import BatchSummary, run_batch
from agent.batch.errors import BatchError, EngineStartError
from agent.batch.questions import InputProblem, Question, QuestionSet, read_questions
from agent.batch.runner import EngineSpec, QuestionRunner
from agent.batch.writer import ResultWriter, read_records

__all__ = [
    "BatchError",
    "BatchSummary",
    "EngineSpec",
    "EngineStartError",
    "InputProblem",
    "Question",
    "QuestionRunner",
    "QuestionSet",
    "ResultWriter",
    "read_questions",
    "read_records",
    "run_batch",
]
