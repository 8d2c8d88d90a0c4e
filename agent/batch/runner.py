"""One engine answering one question at a time: what every worker process and Ray actor runs.

``EngineSpec`` is the picklable recipe (model, tools, generation settings) sent to each worker;
the worker builds the engine from it once and then turns questions into output records.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import socket
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.batch.errors import EngineStartError
from agent.batch.questions import Question, id_key
from agent.errors import AgentError
from agent.llm import llama2


class Limiter(Protocol):
    def wait(self) -> float: ...


# The options of ``agent.llm.cli.add_model_args`` that an EngineSpec carries to each worker.
MODEL_OPTIONS = (
    "model",
    "script",
    "n_ctx",
    "threads",
    "n_gqa",
    "rms_norm_eps",
    "rope_freq_base",
    "rope_freq_scale",
)


@dataclass(frozen=True)
class EngineSpec:
    """How a worker builds its engine and tools, and how it answers (the ``ask`` options)."""

    model: str | None = None  # GGML v3 / GGUF path, readable on every node
    script: str | None = None  # JSON list of outputs, replayed from the start for each question
    model_factory: str | None = None  # "module:callable" returning a text generator
    n_ctx: int = llama2.CONTEXT_LENGTH
    threads: int | None = None
    n_gqa: int | None = None
    rms_norm_eps: float | None = None
    rope_freq_base: float | None = None
    rope_freq_scale: float | None = None
    tools: tuple[str, ...] = ()  # extra "module:callable" tools
    no_default_tools: bool = False
    allow_private: bool = False
    tools_factory: str | None = None  # "module:callable" taking the model, returning tools
    search_interval: float = 1.0  # seconds between web searches, across all workers
    temperature: float = 0.0
    seed: int | None = None
    max_tokens: int = 768
    constrained: bool = True
    max_workers: int = 8  # plan steps run at once within one question
    step_timeout: float | None = None
    max_evidence_chars: int = 24_000
    record: bool = True  # the run's cassette inline in each record
    record_dir: str | None = None  # or one cassette file per question here
    env: dict[str, str] = field(default_factory=dict)  # set in each worker before the engine

    def describe(self) -> str:
        return self.model or self.script or self.model_factory or "no model"


def load_object(spec: str, what: str) -> Any:
    """The object named by ``"package.module:attribute"``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AgentError(f"{what} {spec!r} must look like 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AgentError(f"cannot import {module_name!r} for {what} {spec!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise AgentError(f"module {module_name!r} has no {attr!r} ({what} {spec!r})") from None


def _model_args(spec: EngineSpec, script: str | None) -> argparse.Namespace:
    return argparse.Namespace(**{**asdict(spec), "script": script})


class QuestionRunner:
    """Holds one engine and its tools; ``answer`` runs ``ask`` and returns the output record."""

    def __init__(self, spec: EngineSpec, *, limiter: Limiter | None = None, name: str = ""):
        from agent.llm.cli import open_model

        self.spec = spec
        where = f"{socket.gethostname()}:{os.getpid()}"  # host:pid, to find the process
        self.name = f"{where} {name}" if name else where
        self.limiter = limiter
        os.environ.update(spec.env)
        try:
            if spec.model_factory:
                self.model = load_object(spec.model_factory, "model factory")()
            elif spec.script:
                self.model = open_model(_model_args(spec, spec.script), quiet=True)
            else:
                self.model = open_model(_model_args(spec, None), quiet=True)
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which stops the batch
            raise EngineStartError(
                f"{self.name} cannot open the model {spec.describe()}: {exc}. The model path "
                "must be readable at the same path by every worker and on every Ray node"
            ) from exc

    def _fresh_model(self) -> Any:
        from agent.llm.cli import open_model

        if self.spec.script and not self.spec.model_factory:  # each question replays the script
            return open_model(_model_args(self.spec, self.spec.script), quiet=True)
        return self.model

    def _tools(self, model: Any) -> Any:
        from agent.planner.cli import build_tools

        spec = self.spec
        if spec.tools_factory:
            tools = load_object(spec.tools_factory, "tools factory")(model)
        else:
            args = argparse.Namespace(
                tool=list(spec.tools),
                no_default_tools=spec.no_default_tools,
                allow_private=spec.allow_private,
            )
            tools = build_tools(args, model)
        for tool in tools:  # the batch's shared pace for web searches
            if self.limiter is not None and hasattr(tool, "limiter"):
                tool.limiter = self.limiter
        return tools

    def answer(self, question: Question) -> dict[str, Any]:
        """The record of ``question``: status ``ok`` with the answer, or ``error`` with why."""
        from agent.planner.ask import ask
        from agent.planner.cassette import RecordingModel

        started = time.time()
        t0 = time.perf_counter()
        record: dict[str, Any] = {
            "id": question.id,
            "question": question.text,
            "status": "error",
            "answer": None,
            "sources": [],
            "error": None,
        }
        if question.fields:
            record["fields"] = question.fields
        result = None
        try:
            model = RecordingModel(self._fresh_model())
            tools = self._tools(model)
            result = ask(
                model,
                question.text,
                tools,
                constrained=self.spec.constrained,
                temperature=self.spec.temperature,
                seed=self.spec.seed,
                max_tokens=self.spec.max_tokens,
                max_workers=self.spec.max_workers,
                step_timeout=self.spec.step_timeout,
                max_evidence_chars=self.spec.max_evidence_chars,
            )
            record.update(
                status="ok" if result.ok else "error",
                answer=result.answer,
                sources=list(result.sources),
                error=None if result.ok else result.error,
            )
            self._attach_recording(record, result, model, tools)
        except AgentError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - one question's crash must not stop the batch
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            record["error"] = (
                f"{type(exc).__name__}: {exc} (at {Path(tb.filename).name}:{tb.lineno})"
            )
        record["timings"] = {
            "started": round(started, 3),
            "total": round(time.perf_counter() - t0, 4),
            "steps": {
                s.id: round(s.elapsed, 4) for s in (result.steps if result else []) if s.elapsed
            },
        }
        record["worker"] = self.name
        return record

    def _attach_recording(
        self, record: dict[str, Any], result: Any, model: Any, tools: Any
    ) -> None:
        from agent.planner.cassette import make_cassette, save_cassette

        if not (self.spec.record or self.spec.record_dir) or result.plan is None:
            return
        cassette = make_cassette(
            result,
            model=model,
            tools=tools,
            settings={
                "max_evidence_chars": self.spec.max_evidence_chars,
                "temperature": self.spec.temperature,
                "seed": self.spec.seed,
            },
            note=f"recorded by 'agent batch', question id {record['id']!r}",
        )
        if self.spec.record_dir:
            path = Path(self.spec.record_dir) / cassette_name(record["id"])
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            save_cassette(cassette, tmp)
            os.replace(tmp, path)  # a retried question's cassette replaces a partial one whole
            record["cassette"] = str(path)
        else:
            record["recording"] = cassette


def cassette_name(qid: Any) -> str:
    """A file name per id: readable where the id allows, unique through a short hash."""
    import hashlib

    text = id_key(qid)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(qid))[:60].strip("._") or "q"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:8]}.cassette.json"
