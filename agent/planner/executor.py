"""Parallel plan executor: each step starts as soon as the steps it references are done.

Steps run on daemon threads (at most ``max_workers`` at once) so that a tool stuck past its
``step_timeout`` is recorded as ``timeout`` and abandoned without blocking the run or the
interpreter's exit. Completion is event-driven (a finishing step launches its dependents from the
worker thread), so dependents start without waiting on a polling loop, and steps can be submitted
while the model is still writing the plan (``execute_stream``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.errors import AgentError, PlanError, ToolError
from agent.planner.evidence import (
    DEFAULT_MAX_EVIDENCE_CHARS,
    find_urls,
    only_reference,
    substitute,
)
from agent.planner.parser import PlanStream
from agent.planner.plan import Plan, RefKey, Step, key_of

STATUSES = ("pending", "running", "ok", "failed", "timeout", "skipped")
_TERMINAL = {"ok", "failed", "timeout", "skipped"}


@dataclass
class StepResult:
    """What happened to one step. ``started``/``finished`` are seconds since the run began."""

    id: str
    tool: str
    input: str  # after evidence substitution (what the tool received)
    output: str | None = None
    error: str | None = None
    status: str = "pending"  # pending, running, ok, failed, timeout, skipped
    started: float | None = None
    finished: float | None = None

    @property
    def elapsed(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunResult:
    """The outcome of a run. ``ok`` means the answer was produced (other steps may have failed)."""

    ok: bool
    answer: str | None
    evidence: dict[str, str]
    steps: list[StepResult]
    error: str | None = None
    sources: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    plan: Plan | None = field(default=None, repr=False)
    question: str | None = None

    def step(self, id: str) -> StepResult:
        key = key_of(id)
        for r in self.steps:
            if key_of(r.id) == key:
                return r
        raise KeyError(id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "ok": self.ok,
            "answer": self.answer,
            "error": self.error,
            "sources": self.sources,
            "elapsed": round(self.elapsed, 6),
            "evidence": self.evidence,
            "steps": [r.to_dict() for r in self.steps],
            "plan": self.plan.to_dict() if self.plan is not None else None,
        }


@dataclass(frozen=True)
class StepEvent:
    """Sent to ``on_event``: ``planned`` (streaming only), ``start`` and ``finish``."""

    kind: str
    step: Step
    result: StepResult | None
    time: float  # seconds since the run began


EventHandler = Callable[[StepEvent], None]


_Job = tuple[RefKey, Callable[[str], Any], str]  # a step a worker thread runs: key, tool, input


class StepTimeoutError(ToolError):
    """Raised by a tool that gave up on its own deadline; the step is recorded as ``timeout``."""


class _ToolTable:
    """Case-insensitive lookup in a ``ToolRegistry`` or a mapping name -> callable."""

    def __init__(self, tools: Any):
        self._registry = tools if hasattr(tools, "get") and hasattr(tools, "names") else None
        self._map: dict[str, Callable[[str], Any]] = {}
        if self._registry is None:
            if not isinstance(tools, Mapping):
                raise AgentError(
                    "tools must be a ToolRegistry or a mapping name -> callable, "
                    f"not {type(tools).__name__}"
                )
            self._map = {str(k).lower(): v for k, v in tools.items()}

    def get(self, name: str) -> Callable[[str], Any] | None:
        if self._registry is not None:
            return self._registry.get(name)
        return self._map.get(name.lower())


class Scheduler:
    """Runs submitted steps as their dependencies complete. Thread-safe; used by ``execute``."""

    def __init__(
        self,
        tools: Any,
        *,
        max_workers: int = 8,
        step_timeout: float | None = None,
        on_event: EventHandler | None = None,
        max_evidence_chars: int | None = DEFAULT_MAX_EVIDENCE_CHARS,
    ):
        if max_workers < 1:
            raise AgentError(f"max_workers must be at least 1, got {max_workers}")
        self._tools = _ToolTable(tools)
        self._max_workers = max_workers
        self._timeout = step_timeout
        self._on_event = on_event
        self._max_chars = max_evidence_chars
        self._cond = threading.Condition(threading.RLock())
        self._steps: dict[RefKey, Step] = {}
        self._results: dict[RefKey, StepResult] = {}
        self._order: list[RefKey] = []
        self._evidence: dict[RefKey, str] = {}
        # Dependency counts instead of rescans, so a step's cost does not grow with the plan:
        # _unmet[k] counts the references of waiting step k not yet finished ok, _dependents[d]
        # lists the waiting steps that reference d (d may not be submitted yet, when streaming).
        self._waiting: dict[RefKey, None] = {}  # insertion-ordered set
        self._unmet: dict[RefKey, int] = {}
        self._dependents: dict[RefKey, list[RefKey]] = {}
        self._ready: deque[RefKey] = deque()
        self._running = 0
        self._unfinished = 0
        self._sealed = False
        self.event_error: Exception | None = None
        self._timers: dict[RefKey, threading.Timer] = {}
        self._t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self._t0

    def emit(self, kind: str, step: Step, result: StepResult | None = None) -> None:
        if self._on_event is None:
            return
        with self._cond:
            try:
                self._on_event(StepEvent(kind, step, result, self.now()))
            except Exception as exc:  # noqa: BLE001 - a broken progress printer must not wedge the run
                self._on_event = None
                self.event_error = exc

    def submit(self, step: Step) -> None:
        """Add a step; it starts once every step it references has finished successfully."""
        with self._cond:
            key = step.key
            if key in self._steps:
                raise PlanError(f"step {step.id} was submitted twice")
            self._steps[key] = step
            self._order.append(key)
            self._results[key] = StepResult(step.id, step.tool, step.input)
            self._unfinished += 1
            self._enqueue(key)
            self._finished(key)  # steps that waited for this id (streamed ahead of it)
            self._advance()

    def seal(self) -> None:
        """No more steps will come: steps still waiting on unknown ids can never run."""
        with self._cond:
            self._sealed = True
            self._advance()

    def join(self) -> None:
        """Wait until every submitted step has finished, failed, timed out or been skipped."""
        with self._cond:
            while self._unfinished:
                self._cond.wait()

    def result(self, plan: Plan) -> RunResult:
        """The run's outcome for ``plan`` (call after ``join``)."""
        if self.event_error is not None:
            raise AgentError(
                f"the on_event handler raised {type(self.event_error).__name__}: "
                f"{self.event_error}; the run finished without it"
            ) from self.event_error
        with self._cond:
            steps = [self._results[k] for k in self._order]
            evidence = {self._steps[k].id: v for k, v in self._evidence.items()}
            answer, error = self._answer(plan)
            sources = self._sources(plan) if answer is not None else []
            return RunResult(
                ok=answer is not None,
                answer=answer,
                evidence=evidence,
                steps=steps,
                error=error,
                sources=sources,
                elapsed=self.now(),
                plan=plan,
            )

    # -- internals (called with the lock held) ---------------------------------------------------
    def _sources(self, plan: Plan) -> list[str]:
        """URLs the answer was derived from: in the inputs of the steps the answer names
        (the pages a KnowledgeModel read), else in those steps' outputs (a bare search)."""
        found: list[str] = []
        results = [
            self._results[k] for k in (key_of(r) for r in plan.answer_refs) if k in self._results
        ]
        for field_name in ("input", "output"):
            for r in results:
                found += [u for u in find_urls(getattr(r, field_name) or "") if u not in found]
            if found:
                break
        return found

    def _answer(self, plan: Plan) -> tuple[str | None, str | None]:
        for ref in plan.answer_refs:
            key = key_of(ref)
            r = self._results.get(key) if key else None
            if r is None or r.status != "ok":
                why = f"{r.status}: {r.error}" if r is not None else "was never run"
                return None, f"the answer needs {ref}, which {why}"
        key = only_reference(plan.answer)
        if key is not None:
            return self._evidence[key], None
        return substitute(plan.answer, self._evidence, None), None

    def _enqueue(self, key: RefKey) -> None:
        """Count the unmet references of a newly submitted step: ready, skipped, or waiting."""
        unmet = 0
        for ref in self._steps[key].refs:
            dep = key_of(ref)
            r = self._results.get(dep) if dep else None
            if r is not None and r.status in ("failed", "timeout", "skipped"):
                self._skip(key, f"{ref} {'was skipped' if r.status == 'skipped' else r.status}")
                return
            if r is None or r.status != "ok":  # not submitted yet (streaming), or not done
                unmet += 1
                if dep is not None:
                    self._dependents.setdefault(dep, []).append(key)
        if unmet:
            self._waiting[key] = None
            self._unmet[key] = unmet
        else:
            self._ready.append(key)

    def _finished(self, done: RefKey) -> None:
        """Tell the steps waiting on ``done`` (which just finished, or was just submitted) about it.
        A worklist, not recursion: skipping a 10,000-step chain must not exhaust the stack."""
        work = [done]
        while work:
            key = work.pop()
            r = self._results[key]
            if r.status not in _TERMINAL:
                continue  # just submitted: its dependents keep waiting for its result
            ref = self._steps[key].id
            for waiter in self._dependents.pop(key, ()):
                if waiter not in self._waiting:
                    continue  # already skipped through another reference
                if r.status == "ok":
                    self._unmet[waiter] -= 1
                    if self._unmet[waiter] == 0:
                        del self._waiting[waiter], self._unmet[waiter]
                        self._ready.append(waiter)
                else:
                    # name the reference as the waiting step spells it (#E1 or :evidence1:)
                    spelled = next((s for s in self._steps[waiter].refs if key_of(s) == key), ref)
                    what = "was skipped" if r.status == "skipped" else r.status
                    self._skip(waiter, f"{spelled} {what}")
                    work.append(waiter)

    def _skip(self, key: RefKey, reason: str) -> None:
        """Mark a step skipped (a terminal state) and report it."""
        self._waiting.pop(key, None)
        self._unmet.pop(key, None)
        r = self._results[key]
        r.status, r.error = "skipped", f"skipped because {reason}"
        r.started = r.finished = self.now()
        self._unfinished -= 1
        self.emit("finish", self._steps[key], r)

    def _advance(self) -> None:
        """Launch as many ready steps as allowed; strand what can never run once sealed."""
        while self._ready and self._running < self._max_workers:
            job = self._start(self._ready.popleft())
            if job is not None:
                name = f"step {self._steps[job[0]].id}"
                threading.Thread(target=self._work, args=job, daemon=True, name=name).start()
        if self._sealed and not self._running and not self._ready and self._waiting:
            self._strand()
        if not self._unfinished:  # only join() waits, and only for the end of the run
            self._cond.notify_all()

    def _strand(self) -> None:
        """Skip steps whose references will never be satisfied (a hand-built plan with a cycle
        or an id no step defines), instead of waiting for them forever."""
        for key in list(self._waiting):
            step = self._steps[key]
            missing = [
                ref
                for ref in step.refs
                if self._results.get(key_of(ref)) is None  # type: ignore[arg-type]
                or self._results[key_of(ref)].status not in _TERMINAL  # type: ignore[index]
            ]
            self._skip(key, f"{', '.join(missing)} can never finish (no such step, or a cycle)")

    def _start(self, key: RefKey) -> _Job | None:
        """Mark a ready step running; its job for a worker thread, or None if it failed at once."""
        step, r = self._steps[key], self._results[key]
        r.input = substitute(step.input, self._evidence, self._max_chars)
        r.status, r.started = "running", self.now()
        self._running += 1
        self.emit("start", step, r)
        tool = self._tools.get(step.tool)
        if tool is None:
            self._finish(key, None, f"unknown tool '{step.tool}'", "failed")
            return None
        if self._timeout is not None:
            timer = threading.Timer(
                self._timeout,
                self._complete,
                (key, None, f"timed out after {self._timeout:g} s", "timeout"),
            )
            timer.daemon = True
            self._timers[key] = timer
            timer.start()
        return key, tool, r.input

    def _work(self, key: RefKey, tool: Callable[[str], Any], text: str) -> None:
        """A worker thread: runs its step, then ready steps while there are any (a thread per
        step would make a long chain pay a thread start per step)."""
        job: _Job | None = (key, tool, text)
        while job is not None:
            key, tool, text = job
            try:
                out = tool(text)
                output = out if isinstance(out, str) else ("" if out is None else str(out))
                job = self._complete(key, output, None, "ok", take_next=True)
            except StepTimeoutError as exc:
                job = self._complete(key, None, str(exc), "timeout", take_next=True)
            except ToolError as exc:
                job = self._complete(key, None, str(exc), "failed", take_next=True)
            except Exception as exc:  # noqa: BLE001 - a tool's bug must not take the run down
                job = self._complete(key, None, f"{type(exc).__name__}: {exc}", "failed", True)

    def _complete(
        self,
        key: RefKey,
        output: str | None,
        error: str | None,
        status: str,
        take_next: bool = False,
    ) -> _Job | None:
        """Record a step's outcome and start what it unblocks; with ``take_next`` (a worker that
        is free now), the next ready step's job is returned for the caller to run."""
        with self._cond:
            if not self._finish(key, output, error, status):
                return None  # a late result of a timed-out step: its thread just ends
            job = None
            while take_next and job is None and self._ready and self._running < self._max_workers:
                job = self._start(self._ready.popleft())
            self._advance()
            return job

    def _finish(self, key: RefKey, output: str | None, error: str | None, status: str) -> bool:
        r = self._results[key]
        if r.status != "running":
            return False  # already timed out (or finished): a late result is dropped
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        r.output, r.error, r.status, r.finished = output, error, status, self.now()
        if status == "ok" and output is not None:
            self._evidence[key] = output
        self._running -= 1
        self._unfinished -= 1
        self.emit("finish", self._steps[key], r)
        self._finished(key)
        return True


def execute(
    plan: Plan,
    tools: Any,
    *,
    max_workers: int = 8,
    step_timeout: float | None = None,
    on_event: EventHandler | None = None,
    max_evidence_chars: int | None = DEFAULT_MAX_EVIDENCE_CHARS,
) -> RunResult:
    """Run ``plan`` with ``tools`` (a ``ToolRegistry`` or mapping name -> ``(str) -> str``)."""
    sched = Scheduler(
        tools,
        max_workers=max_workers,
        step_timeout=step_timeout,
        on_event=on_event,
        max_evidence_chars=max_evidence_chars,
    )
    for step in plan.steps:
        sched.submit(step)
    sched.seal()
    sched.join()
    return sched.result(plan)


def execute_stream(
    pieces: Iterable[str],
    tools: Any,
    *,
    max_workers: int = 8,
    step_timeout: float | None = None,
    on_event: EventHandler | None = None,
    max_evidence_chars: int | None = DEFAULT_MAX_EVIDENCE_CHARS,
    on_text: Callable[[str], None] | None = None,
) -> RunResult:
    """Parse plan text as it streams in and start each step as soon as it is complete.

    Raises ``PlanError`` when the finished plan is invalid (after steps already started finish).
    """
    sched = Scheduler(
        tools,
        max_workers=max_workers,
        step_timeout=step_timeout,
        on_event=on_event,
        max_evidence_chars=max_evidence_chars,
    )
    stream = PlanStream(tools)
    iterator = iter(pieces)
    try:
        for piece in iterator:
            if on_text is not None:
                on_text(piece)
            for step in stream.feed(piece):
                sched.emit("planned", step)
                sched.submit(step)
            if stream.done:
                break  # the answer line is written: the rest is prose
        plan = stream.close()
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:  # stop the model now, and run the generator's cleanup
            close()
        sched.seal()
        sched.join()
    return sched.result(plan)
