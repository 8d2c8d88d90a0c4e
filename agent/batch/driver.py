"""``run_batch``: read the questions, skip those already answered, run the rest, append results.

The driver alone writes the output (``ResultWriter``); engines run in worker processes or Ray
actors and send their records back. Interrupting the driver at any moment leaves only whole lines,
and running the same command again picks up the questions not yet written.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from agent.batch.dispatch import dispatch
from agent.batch.progress import ProgressBar
from agent.batch.questions import InputProblem, read_questions
from agent.batch.runner import EngineSpec
from agent.batch.writer import ResultWriter


@dataclass
class BatchSummary:
    total: int  # valid questions in the input
    skipped: int  # already in the output before this run
    ok: int = 0
    errors: int = 0
    problems: list[InputProblem] = field(default_factory=list)  # input lines skipped

    @property
    def done(self) -> int:
        return self.ok + self.errors


def make_backend(
    spec: EngineSpec,
    *,
    workers: int = 1,
    ray: bool = False,
    ray_address: str | None = None,
    cpus_per_actor: float = 1.0,
    ray_init: dict[str, Any] | None = None,
) -> Any:
    if ray:
        from agent.batch.ray_backend import RayPool

        return RayPool(
            spec, workers, address=ray_address, cpus_per_actor=cpus_per_actor, init_kwargs=ray_init
        )
    from agent.batch.pool import ProcessPool

    return ProcessPool(spec, workers)


def run_batch(
    questions: str | Path,
    output: str | Path,
    spec: EngineSpec,
    *,
    workers: int = 1,
    retries: int = 1,
    ray: bool = False,
    ray_address: str | None = None,
    cpus_per_actor: float = 1.0,
    ray_init: dict[str, Any] | None = None,
    input_format: str | None = None,
    progress: TextIO | None = sys.stderr,
    backend: Any = None,
) -> BatchSummary:
    """Answer every question of ``questions`` not yet in ``output``; returns the counts.

    ``workers`` engines run at once: local processes, or Ray actors with ``ray=True``
    (``ray_address`` names a running cluster; none starts a local one). ``backend`` replaces
    both with an already started one (it is not closed).
    """
    qs = read_questions(questions, input_format)
    out = progress if progress is not None else None
    for problem in qs.problems:
        if out:
            print(f"{questions}: {problem}; skipped", file=out)
    with ResultWriter(output) as writer:
        if writer.repaired_bytes and out:
            print(
                f"{output}: removed a half-written last line ({writer.repaired_bytes} bytes) "
                "left by an interrupted run; that question runs again",
                file=out,
            )
        pending = [q for q in qs.questions if q.key not in writer.done]
        summary = BatchSummary(
            total=len(qs.questions),
            skipped=len(qs.questions) - len(pending),
            problems=list(qs.problems),
        )
        if not pending:
            if out:
                print(f"all {summary.total} questions are already in {output}", file=out)
            return summary
        bar = ProgressBar(out, len(pending), skipped=summary.skipped) if out else None

        def on_record(record: dict[str, Any]) -> None:
            writer.write(record)
            if record["status"] == "ok":
                summary.ok += 1
            else:
                summary.errors += 1
            if bar:
                bar.update(record)

        own = backend is None
        if own:
            backend = make_backend(
                spec,
                workers=min(workers, len(pending)),
                ray=ray,
                ray_address=ray_address,
                cpus_per_actor=cpus_per_actor,
                ray_init=ray_init,
            )
        try:
            dispatch(pending, backend, retries=retries, on_record=on_record)
        finally:
            if bar:
                bar.finish()
            if own:
                backend.close()
    return summary
