"""Ray backend: one actor per engine on a Ray cluster, results streamed back to the driver.

Each ``EngineActor`` loads the model once (so the model path must be readable on every node) and
answers one question at a time; the driver hands questions to free actors and writes results as
they arrive. A dead actor (node lost, process killed, out of memory) is replaced and its question
retried. Web searches keep one pace for the whole cluster through a ``SlotBook`` actor.
"""

from __future__ import annotations

import socket
from typing import Any

from agent.batch.dispatch import Outcome
from agent.batch.errors import BatchError, EngineStartError
from agent.batch.limits import RemoteRateLimiter, SlotBook
from agent.batch.questions import Question
from agent.batch.runner import EngineSpec

INSTALL_HINT = "Ray is not installed: pip install -e '.[ray]' (or pip install 'ray[serve]')"
START_TIMEOUT = 600.0


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BatchError(INSTALL_HINT) from None
    return ray


class _EngineActor:
    """Runs in a Ray worker process: one engine, one question at a time."""

    def __init__(self, spec: EngineSpec, book: Any, name: str):
        from agent.batch.runner import QuestionRunner

        self.error: str | None = None
        self.runner: QuestionRunner | None = None
        try:
            self.runner = QuestionRunner(spec, limiter=RemoteRateLimiter(book), name=name)
        except Exception as exc:  # noqa: BLE001 - reported by ready(), the driver stops the batch
            self.error = str(exc)

    def ready(self) -> tuple[str, str | None]:
        return socket.gethostname(), self.error

    def answer(self, question: Question) -> dict[str, Any]:
        assert self.runner is not None
        return self.runner.answer(question)


class RayPool:
    """The ``Backend`` of ``dispatch`` over Ray actors."""

    def __init__(
        self,
        spec: EngineSpec,
        actors: int,
        *,
        address: str | None = None,
        cpus_per_actor: float = 1.0,
        init_kwargs: dict[str, Any] | None = None,
    ):
        if actors < 1:
            raise EngineStartError(f"the number of Ray actors must be at least 1, got {actors}")
        ray = self.ray = import_ray()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            kwargs = {"include_dashboard": False, "log_to_driver": False, **(init_kwargs or {})}
            try:
                ray.init(address=address or None, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise BatchError(
                    f"cannot connect to the Ray cluster at {address or 'a new local one'}: {exc}"
                    "; start it with 'ray start --head' or check the address"
                ) from exc
        self.spec = spec
        self.slots = actors
        self._started = 0
        self._remote = ray.remote(num_cpus=cpus_per_actor, max_restarts=0)(_EngineActor)
        self._book = ray.remote(num_cpus=0)(SlotBook).remote(spec.search_interval)
        self._actors: list[Any] = []
        self._inflight: dict[Any, int] = {}  # object ref -> slot
        try:
            for _ in range(actors):  # all start loading at once
                self._actors.append(self._spawn())
            for actor in self._actors:
                self._await_ready(actor)
        except BaseException:
            self.close()
            raise

    @property
    def actors(self) -> list[Any]:
        return list(self._actors)

    def _spawn(self) -> Any:
        self._started += 1
        return self._remote.remote(self.spec, self._book, f"ray-actor{self._started}")

    def _await_ready(self, actor: Any) -> None:
        ray = self.ray
        try:
            host, error = ray.get(actor.ready.remote(), timeout=START_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            raise EngineStartError(
                f"a Ray actor did not load {self.spec.describe()} within {START_TIMEOUT:.0f} s "
                "(are there enough free CPUs for --cpus-per-actor?)"
            ) from None
        except ray.exceptions.RayError as exc:
            raise EngineStartError(f"a Ray actor could not start: {exc}") from exc
        if error:
            raise EngineStartError(f"Ray actor on node {host}: {error}")

    def send(self, slot: int, question: Question) -> None:
        self._inflight[self._actors[slot].answer.remote(question)] = slot

    def wait(self, timeout: float) -> list[Outcome]:
        ray = self.ray
        if not self._inflight:
            return []
        ready, _ = ray.wait(list(self._inflight), num_returns=1, timeout=timeout)
        outcomes = []
        for ref in ready:
            slot = self._inflight.pop(ref)
            try:
                outcomes.append(Outcome(slot, record=ray.get(ref)))
            except ray.exceptions.RayActorError as exc:
                why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self._replace(slot)
                outcomes.append(Outcome(slot, lost=f"Ray actor died ({why})"))
            except ray.exceptions.RayError as exc:  # the task itself failed (e.g. worker crash)
                self._replace(slot)
                outcomes.append(Outcome(slot, lost=f"{type(exc).__name__}: {exc}"))
        return outcomes

    def _replace(self, slot: int) -> None:
        try:
            self.ray.kill(self._actors[slot], no_restart=True)
        except Exception:  # noqa: BLE001 - it is already gone
            pass
        actor = self._spawn()
        self._await_ready(actor)
        self._actors[slot] = actor

    def close(self) -> None:
        for actor in self._actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._actors = []
        try:
            self.ray.kill(self._book, no_restart=True)
        except Exception:  # noqa: BLE001
            pass
        if self._owns_ray:
            self.ray.shutdown()
