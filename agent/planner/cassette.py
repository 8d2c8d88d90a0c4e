"""Record a run to a JSON cassette and replay it with no model and no network.

A cassette (format: ``agent.planner.cassette_file``) holds every model call (prompt, parameters,
raw output) and every tool call (substituted input, output, error, status, timing) as
interactions, the model's identity, and a ``run`` section: the question, the tool list (names
and descriptions, so the plan prompt can be rebuilt) and the result. Replay rebuilds the plan
prompt, answers it with the recorded plan, and answers each tool call from the recorded calls: the
parser, scheduler and substitution run for real, so a change in any of them shows up as a
divergence, reported with the step it happened at.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict, deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.errors import ToolError
from agent.llm import llama2
from agent.llm.protocol import TextGenerator
from agent.planner import cassette_file
from agent.planner.ask import ask
from agent.planner.cassette_file import (
    CASSETTE_FORMAT,
    CASSETTE_VERSION,
    CassetteDivergenceError,
    CassetteError,
)
from agent.planner.evidence import DEFAULT_MAX_EVIDENCE_CHARS
from agent.planner.executor import EventHandler, RunResult, StepTimeoutError
from agent.planner.prompt import build_plan_prompt
from agent.tools.registry import FunctionTool, ToolRegistry


class RecordingModel:
    """Wraps a text generator and logs every call's prompt, parameters and raw output."""

    def __init__(self, model: TextGenerator):
        self.model = model
        self.generations: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # tokenize, n_ctx, info, ... of the wrapped model
        return getattr(self.model, name)

    def generate(self, prompt: str, **kwargs: Any) -> Iterator[str]:
        params = {k: _jsonable(v) for k, v in kwargs.items() if k != "grammar"}
        params["constrained"] = kwargs.get("grammar") is not None
        entry: dict[str, Any] = {"prompt": prompt, "params": params, "output": ""}
        with self._lock:  # logged in call order, not in (timing-dependent) finishing order
            self.generations.append(entry)
        pieces: list[str] = []
        try:
            for piece in self.model.generate(prompt, **kwargs):
                pieces.append(piece)
                yield piece
        finally:  # also when the consumer stops early (plan finished at "Answer:")
            entry["output"] = "".join(pieces)

    def complete(self, prompt: str, **kwargs: Any) -> str:
        return "".join(self.generate(prompt, **kwargs))


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return repr(v)


def model_info(model: Any) -> dict[str, Any]:
    info = getattr(model, "info", None)
    if isinstance(info, Mapping):
        return {str(k): _jsonable(v) for k, v in info.items()}
    if info is not None and hasattr(info, "__dict__"):
        return {str(k): _jsonable(v) for k, v in vars(info).items()}
    return {"format": type(model).__name__}


def make_cassette(
    result: RunResult,
    *,
    model: RecordingModel,
    tools: Any,
    settings: Mapping[str, Any] | None = None,
    note: str | None = None,
    model_meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The cassette of a finished ``ask`` run made with the recording ``model``."""
    if result.question is None or result.plan is None:
        raise CassetteError("only runs made by ask() (with a question and a plan) can be recorded")
    registry = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
    plan_prompt = build_plan_prompt(result.question, registry)
    interactions: list[dict[str, Any]] = []
    for g in model.generations:
        interactions.append(
            {
                "kind": "generate",
                "model": "default",
                "purpose": "plan" if g["prompt"] == plan_prompt else "tool",
                "request": {"prompt": g["prompt"], "params": g["params"]},
                "response": {"output": g["output"]},
            }
        )
    for r in result.steps:
        if r.status not in ("ok", "failed", "timeout"):
            continue  # skipped steps never reached their tool
        interactions.append(
            {
                "kind": "tool",
                "step": r.id,
                "timing": {
                    "started": round(r.started or 0.0, 6),
                    "finished": round(r.finished or 0.0, 6),
                },
                "request": {"tool": r.tool, "input": r.input},
                "response": {"output": r.output, "error": r.error, "status": r.status},
            }
        )
    info = dict(model_meta) if model_meta is not None else model_info(model.model)
    return {
        "format": CASSETTE_FORMAT,
        "version": CASSETTE_VERSION,
        "note": note or "",
        "models": {"default": {"info": info}},
        "interactions": interactions,
        "run": {
            "question": result.question,
            "tools": [{"name": t.name, "description": t.description} for t in registry],
            "settings": {"max_evidence_chars": DEFAULT_MAX_EVIDENCE_CHARS, **(settings or {})},
            "plan": result.plan.text,
            "result": {
                "ok": result.ok,
                "answer": result.answer,
                "error": result.error,
                "sources": result.sources,
                "elapsed": round(result.elapsed, 6),
            },
        },
    }


def save_cassette(cassette: Mapping[str, Any], path: str | Path) -> None:
    """Write a cassette: sorted keys, one interaction per request, sorted by request."""
    cassette_file.save(cassette, path)


def load_cassette(path: str | Path) -> dict[str, Any]:
    """Read and check a cassette file; a version 1 file comes back migrated to version 2."""
    return cassette_file.load(path)


def check_cassette(data: Any, where: str = "cassette") -> dict[str, Any]:
    """``data`` checked (and migrated to the current version); raises ``CassetteError``."""
    return cassette_file.upgrade(data, where)


class ReplayModel:
    """Answers prompts with the recorded outputs; an unrecorded prompt is a divergence."""

    def __init__(self, generations: Sequence[Mapping[str, Any]], info: Mapping[str, Any]):
        self._by_prompt: dict[str, deque[str]] = defaultdict(deque)
        for g in generations:
            self._by_prompt[g["prompt"]].append(g["output"])
        self.info = {**info, "replay": True}
        self.n_ctx = int(info.get("n_ctx") or llama2.CONTEXT_LENGTH)

    def generate(self, prompt: str, **kwargs: Any) -> Iterator[str]:
        outputs = self._by_prompt.get(prompt)
        if not outputs:
            raise CassetteDivergenceError(
                "replay diverged: the model was asked a prompt the cassette does not hold"
                + _closest_prompt_hint(prompt, list(self._by_prompt))
            )
        text = outputs.popleft() if len(outputs) > 1 else outputs[0]
        for i in range(0, len(text), 16):
            yield text[i : i + 16]

    def complete(self, prompt: str, **kwargs: Any) -> str:
        return "".join(self.generate(prompt, **kwargs))


def _closest_prompt_hint(prompt: str, recorded: list[str]) -> str:
    if not recorded:
        return " (it holds no model calls)"
    best = max(recorded, key=lambda r: _common_prefix(prompt, r))
    n = _common_prefix(prompt, best)
    return (
        f"; it first differs from the closest recorded prompt at character {n}: "
        f"{prompt[n : n + 40]!r} instead of {best[n : n + 40]!r} (the prompt template or the tool "
        "descriptions changed since recording: record the cassette again)"
    )


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class _ReplayTools:
    """Recorded tool calls keyed by (tool, substituted input); misses are kept as divergences."""

    def __init__(self, calls: Sequence[Mapping[str, Any]]):
        self._calls: dict[tuple[str, str], deque[Mapping[str, Any]]] = defaultdict(deque)
        for c in calls:
            self._calls[(c["tool"].lower(), c["input"])].append(c)
        self.misses: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def tool(self, name: str) -> Any:
        def call(text: str) -> str:
            with self._lock:
                found = self._calls.get((name.lower(), text))
                if not found:
                    self.misses.append((name, text))
                    raise CassetteDivergenceError(
                        f"{name} was called with an input the cassette does not hold: "
                        f"{text[:120]!r}"
                    )
                c = found.popleft() if len(found) > 1 else found[0]
            status = c.get("status", "ok")
            if status == "timeout":
                raise StepTimeoutError(str(c.get("error") or "timed out (recorded)"))
            if status != "ok":
                raise ToolError(str(c.get("error") or "failed (recorded)"))
            return str(c.get("output") or "")

        return call

    def recorded_inputs(self, name: str) -> list[str]:
        return [inp for (tool, inp) in self._calls if tool == name.lower()]


def replay(
    cassette: Mapping[str, Any] | str | Path,
    *,
    on_event: EventHandler | None = None,
    check_answer: bool = True,
) -> RunResult:
    """Replay a cassette (a path or its loaded dict); raise ``CassetteDivergenceError`` on drift."""
    data = (
        load_cassette(cassette)
        if isinstance(cassette, (str, Path))
        else check_cassette(json.loads(json.dumps(cassette)))  # a copy: migration rebuilds it
    )
    run = data.get("run")
    if run is None:
        raise CassetteError(
            "this cassette holds no recorded 'agent ask' run (it was written by the pytest "
            "plugin): replay it in a test through the agent_cassette fixture"
        )
    calls = _ReplayTools(
        [{**i["request"], **i["response"]} for i in data["interactions"] if i["kind"] == "tool"]
    )
    generations = [
        {"prompt": i["request"]["prompt"], "output": i["response"]["output"]}
        for i in data["interactions"]
        if i["kind"] == "generate"
    ]
    registry = ToolRegistry()
    for t in run["tools"]:
        registry.add(
            FunctionTool(t["name"], str(t.get("description") or ""), calls.tool(t["name"]))
        )
    info = ((data.get("models") or {}).get("default") or {}).get("info") or {}
    model = ReplayModel(generations, info if isinstance(info, dict) else {})
    settings = run.get("settings") or {}
    result = ask(
        model,
        run["question"],
        registry,
        on_event=on_event,
        max_evidence_chars=settings.get("max_evidence_chars", DEFAULT_MAX_EVIDENCE_CHARS),
    )
    if calls.misses:
        lines = []
        for r in result.steps:
            if r.error and "the cassette does not hold" in r.error:
                known = calls.recorded_inputs(r.tool)
                hint = (
                    (
                        f"; recorded inputs for {r.tool}: "
                        + "; ".join(repr(k[:60]) for k in known[:3])
                    )
                    if known
                    else f"; the cassette has no call of {r.tool}"
                )
                lines.append(
                    f"step {r.id} ({r.tool}) was called with input {r.input[:120]!r}, "
                    f"which the cassette does not hold{hint}"
                )
        raise CassetteDivergenceError("replay diverged from the cassette:\n  " + "\n  ".join(lines))
    recorded = run["result"].get("answer")
    if check_answer and result.answer != recorded:
        raise CassetteDivergenceError(
            f"replay produced a different answer than recorded: {str(result.answer)[:200]!r} "
            f"instead of {str(recorded)[:200]!r}"
        )
    return result
