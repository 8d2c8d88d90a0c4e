"""Batched decoding over slots: concurrent generations advance in one forward pass.

Decoding is bound by memory bandwidth: one step reads every weight once, whatever the number of
rows it advances. A scheduler thread owns the forward pass; ``submit`` hands it a sequence and
returns a ``Handle`` that streams the sequence's text. Each running sequence holds a slot, its own
KV cache of ``n_ctx`` positions. Every step:

1. cancelled sequences leave, freeing their slots;
2. waiting sequences take free slots, reusing the longest prefix of their prompt already cached in
   any slot (copied across slots when another holds more of it; a request whose prefix another is
   still reading waits for that part instead of reading it twice: ``n`` > 1 costs one prompt);
3. one forward pass over one row per decoding sequence plus up to ``chunk`` prompt rows, shortest
   prompt first (no partial chunk after a prompt that ends in this step, so its first token waits
   for no longer prompt): a long prompt is read a chunk per step between the others' decode steps;
   beside decoding sequences, of a prompt far from its end only as many rows as keep the step near
   ``step_seconds`` (``PromptBudget``: measured, so that a CPU where a row is dear does not freeze
   them while a long prompt is read);
4. each sequence whose last row was evaluated samples its next token (its own sampler, grammar and
   stop strings) and streams its text.

KV memory: slots x n_ctx x n_layer x 2 (K, V) x n_head_kv x head_dim x 2 bytes (f16).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.errors import AgentError
from agent.llm.decoding import Continuation, GenerationStats
from agent.llm.kernels.runtime import release_threads
from agent.llm.sampling import SamplingParams
from agent.llm.step_budget import DEFAULT_STEP_SECONDS, PromptBudget
from agent.llm.transformer import Span

# Prompt tokens read per step, shared by the sequences being prefilled. Small enough that a step
# with a chunk of a long prompt delays the others' next token by little (a step costs about its row
# count: up to 48 rows the fused matvec kernel's cost is linear in the rows, so small chunks read a
# prompt about as fast as large ones).
DEFAULT_CHUNK = 16


class SchedulerClosedError(AgentError):
    """The batch scheduler was closed while a generation waited or ran."""


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    return len(os.path.commonprefix([list(a), list(b)]))


@dataclass
class Slot:
    k: np.ndarray  # [n_layer, n_ctx, n_head_kv, head_dim] f16
    v: np.ndarray
    tokens: list[int] = field(default_factory=list)  # what the cache holds, position by position
    handle: Handle | None = None
    last_used: int = 0


class Handle:
    """One submitted generation: iterate it for its text pieces; leaving early cancels it.

    With ``on_piece`` the scheduler's thread hands each piece to it instead: iterating then yields
    nothing and only waits for the end (or raises the error), so the caller's thread is not woken
    once a token (a server relaying pieces to its event loop saves a thread hand-over a token)."""

    def __init__(
        self,
        cont: Continuation,
        cancel: threading.Event | None,
        on_piece: Callable[[str], None] | None = None,
    ):
        self.cont = cont
        self.on_piece = on_piece
        self.stats: GenerationStats = cont.stats
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._cancel = cancel
        self._left = False
        self.slot: Slot | None = None
        self.n_done = 0  # prompt tokens in the slot's cache
        self.t_submit = time.perf_counter()
        self.t_first = 0.0

    @property
    def ids(self) -> list[int]:
        return self.cont.ids

    @property
    def prefilling(self) -> bool:
        return self.n_done < len(self.ids)

    def cancelled(self) -> bool:
        return self._left or (self._cancel is not None and self._cancel.is_set())

    def cancel(self) -> None:
        self._left = True

    def deliver(self, piece: str) -> None:
        if self.on_piece is not None:
            self.on_piece(piece)
        else:
            self.events.put(("piece", piece))

    def __iter__(self) -> Iterator[str]:
        try:
            while True:
                kind, value = self.events.get()
                if kind == "piece":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            self._left = True  # a no-op once finished; frees the slot when the caller left early


class BatchScheduler:
    def __init__(
        self,
        model: Any,
        slots: int,
        n_ctx: int,
        chunk: int = DEFAULT_CHUNK,
        step_seconds: float | None = DEFAULT_STEP_SECONDS,
    ):
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        self.model, self.n_ctx, self.chunk = model, n_ctx, chunk
        self.budget = PromptBudget(chunk, step_seconds)
        self.tr = model._require_weights()
        info = model.info
        shape = (info.n_layer, n_ctx, info.n_head_kv, info.head_dim)
        # np.zeros maps pages lazily: a slot costs resident memory only for the positions it used.
        self.slots = [
            Slot(np.zeros(shape, np.float16), np.zeros(shape, np.float16)) for _ in range(slots)
        ]
        self.waiting: list[Handle] = []
        self.cond = threading.Condition()
        self.closed = False
        self.steps = 0
        # Pieces of running sequences, handed over at the start of the next step, a moment before
        # its forward pass: a receiver that takes the GIL (the server's event loop, woken through a
        # pipe write) then runs while the kernels release it, not between two steps.
        self._unsent: list[tuple[Handle, str]] = []
        self.max_rows = 0  # the largest batch so far, in rows and in sequences (tests look)
        self.max_seqs = 0
        self.log: list[list[tuple[Handle, int]]] | None = None  # a list: (handle, rows) per step
        self._thread = threading.Thread(target=self._loop, name="agent-batch", daemon=True)
        self._thread.start()

    @property
    def kv_bytes(self) -> int:
        return sum(s.k.nbytes + s.v.nbytes for s in self.slots)

    def submit(
        self,
        prompt: str | list[int],
        max_tokens: int,
        params: SamplingParams,
        stop: Sequence[str] | str = (),
        grammar: Any = None,
        cancel: threading.Event | None = None,
        on_piece: Callable[[str], None] | None = None,
    ) -> Handle:
        """Queue one generation; errors of the request itself (context overflow) raise here."""
        ids = self.model.tokenize(prompt, bos=True) if isinstance(prompt, str) else list(prompt)
        cont = Continuation(self.model, ids, self.n_ctx, max_tokens, params, stop, grammar)
        handle = Handle(cont, cancel, on_piece)
        with self.cond:  # checked under the lock: the loop fails what waits when it closes
            if self.closed:
                raise SchedulerClosedError("the batch scheduler is closed; call enable_batching")
            self.waiting.append(handle)
            self.cond.notify()
        return handle

    def close(self, timeout: float = 10.0) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        self._thread.join(timeout)

    # --- the scheduler thread -------------------------------------------------------------------
    def _running(self) -> list[Handle]:
        return [s.handle for s in self.slots if s.handle is not None]

    def _loop(self) -> None:
        while True:
            with self.cond:
                if not self.closed and not self.waiting and not self._running():
                    release_threads()  # idle: its kernel workers must not slow other threads
                while not self.closed and not self.waiting and not self._running():
                    self.cond.wait()
                if self.closed:
                    break
            try:
                self._drop_cancelled()
                self._admit()
                if self._running():
                    self._step()
                else:  # waiting ones are deferred or cancelled: look again shortly
                    time.sleep(0.001)
            except Exception as exc:  # noqa: BLE001 - a bug here must not leave callers hanging
                self._send_unsent()
                with self.cond:
                    pending, self.waiting = self.waiting, []
                for h in pending + self._running():
                    self._fail(h, exc)
        self._send_unsent()  # what was generated reaches its reader before the error does
        err = SchedulerClosedError("the batch scheduler was closed during the generation")
        with self.cond:
            pending, self.waiting = self.waiting, []
        for h in pending + self._running():
            self._fail(h, err)

    def _finish(self, h: Handle, kind: str = "done", value: Any = None) -> None:
        if h.slot is not None:
            h.slot.handle = None
            h.slot = None
        h.stats.generate_seconds = time.perf_counter() - (h.t_first or h.t_submit)
        h.events.put((kind, value))

    def _fail(self, h: Handle, exc: BaseException) -> None:
        self._finish(h, "error", exc)

    def _drop_cancelled(self) -> None:
        with self.cond:
            gone = [h for h in self.waiting if h.cancelled()]
            self.waiting = [h for h in self.waiting if not h.cancelled()]
        for h in gone + [h for h in self._running() if h.cancelled()]:
            h.stats.stop_reason = "cancelled"
            self._finish(h)

    def _admit(self) -> None:
        with self.cond:
            waiting = list(self.waiting)
        for h in waiting:
            free = [s for s in self.slots if s.handle is None]
            if not free:
                return
            best = max(self.slots, key=lambda s: common_prefix(s.tokens, h.ids))
            have = common_prefix(best.tokens, h.ids)
            # another sequence is still reading more of this prompt: wait for it, then copy
            if any(r.prefilling and common_prefix(r.ids, h.ids) > have for r in self._running()):
                continue
            slot = max(free, key=lambda s: (common_prefix(s.tokens, h.ids), -s.last_used))
            own = common_prefix(slot.tokens, h.ids)
            if have > own:  # copy the longer cached prefix from the other slot
                slot.k[:, own:have] = best.k[:, own:have]
                slot.v[:, own:have] = best.v[:, own:have]
            reuse = min(max(own, have), len(h.ids) - 1)  # evaluate >= 1 token, for its logits
            slot.tokens = h.ids[:reuse]
            slot.handle, h.slot, h.n_done = h, slot, reuse
            h.stats.cached_tokens = reuse
            with self.cond:
                self.waiting.remove(h)

    def _step(self) -> None:
        self.steps += 1
        self._send_unsent()  # first: a receiver's failure ends its sequence before this step
        rows: list[int] = []
        spans: list[Span] = []
        owners: list[Handle] = []
        wants: list[tuple[Handle, int]] = []  # sequences whose last row's logits are needed

        def add(h: Handle, ids: list[int], last: bool) -> None:
            slot = h.slot
            assert slot is not None
            start = len(rows)
            rows.extend(ids)
            spans.append(Span(start, len(rows), len(slot.tokens), slot.k, slot.v))
            owners.append(h)
            slot.last_used = self.steps
            if last:
                wants.append((h, len(rows) - 1))

        running = self._running()
        decoding = [h for h in running if not h.prefilling]
        for h in decoding:
            add(h, [h.cont.token], True)
        prefilling = sorted(
            (h for h in running if h.prefilling), key=lambda h: len(h.ids) - h.n_done
        )
        room, completed = self.chunk, False
        far = self.budget.rows(len(decoding)) if prefilling else 0  # rows of prompts far from done
        for h in prefilling:
            left = len(h.ids) - h.n_done
            near = self.budget.near_end(left)
            take = min(room if near else min(room, far), left)
            completes = take == left
            # no rows left for it, or a partial chunk that would delay a prompt ending in this step
            if not take or (completed and not completes):
                break
            add(h, h.ids[h.n_done : h.n_done + take], completes)
            room -= take
            far -= 0 if near else take
            completed = completed or completes
            if room == 0:
                break
        self.max_rows = max(self.max_rows, len(rows))
        self.max_seqs = max(self.max_seqs, len(spans))
        if self.log is not None:
            self.log.append([(h, s.stop - s.start) for h, s in zip(owners, spans, strict=True)])
        try:
            with self.model.lock:  # eval() on the model's own cache may run between steps
                t0 = time.perf_counter()
                x = self.tr.layers_forward(np.asarray(rows, dtype=np.int64), spans)
                logits = self.tr.head(x[[i for _, i in wants]]) if wants else None
                seconds = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - reported to every sequence of the batch
            for h in running:
                self._fail(h, exc)
            return
        self.budget.observe(seconds, len(decoding), len(rows) - len(decoding))
        for h, span in zip(owners, spans, strict=True):  # the rows are in the caches now
            assert h.slot is not None
            h.slot.tokens.extend(rows[span.start : span.stop])
            if h.prefilling:
                h.n_done += span.stop - span.start
        assert logits is not None or not wants
        # No reader is woken while sequences sample (a reader takes the GIL whenever numpy releases
        # it, and the others' sampling waits on each hand-over): a finished sequence's last piece
        # goes out after the loop, a running one's at the start of the next step (_unsent).
        out: list[tuple[Handle, str, bool]] = []
        for (h, _), row in zip(wants, logits if logits is not None else [], strict=True):
            if not h.t_first:
                h.t_first = time.perf_counter()
                h.stats.prompt_seconds = h.t_first - h.t_submit
            assert h.slot is not None
            try:
                text, done = h.cont.step(row, h.slot.tokens)
            except Exception as exc:  # noqa: BLE001 - one sequence's failure (grammar) is its own
                self._fail(h, exc)
                continue
            out.append((h, text, done))
        for h, text, done in out:
            if not done:
                if text:
                    self._unsent.append((h, text))
                continue
            if text and not self._deliver(h, text):
                continue
            self._finish(h)

    def _deliver(self, h: Handle, text: str) -> bool:
        try:
            h.deliver(text)
        except Exception as exc:  # noqa: BLE001 - a failing receiver fails its sequence alone
            self._fail(h, exc)
            return False
        return True

    def _send_unsent(self) -> None:
        unsent, self._unsent = self._unsent, []
        for h, text in unsent:
            if h.slot is not None:  # not cancelled or failed since: its reader still waits
                self._deliver(h, text)
