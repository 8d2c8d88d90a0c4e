"""The public engine object: ``load_model(path) -> LlamaModel``.

Owns the mapped file, the tokenizer, the transformer and its KV cache. ``eval`` extends the cache;
``generate`` reuses the longest cached prefix of its prompt (the Airoboros preamble and planner
prompt start every call), then samples token by token.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import ContextLengthError, ModelFormatError
from agent.llm.decoding import (  # noqa: F401 - GenerationStats, StopScanner re-exported
    Continuation,
    GenerationStats,
    StopScanner,
    TokenMatcher,
)
from agent.llm.formats.files import open_model_file
from agent.llm.hparams import ModelInfo, model_info
from agent.llm.kernels.runtime import release_threads
from agent.llm.llama2 import CONTEXT_LENGTH
from agent.llm.protocol import SAMPLING_DEFAULTS
from agent.llm.sampling import SamplingParams
from agent.llm.step_budget import DEFAULT_STEP_SECONDS


def return_freed_memory_to_the_os() -> None:
    """Make glibc hand every freed block over 128 KB back to the OS at once.

    By default glibc raises its mmap threshold as large arrays are freed, after which prefill
    activations and repacking pieces come from the heap and stay resident after they are freed
    (measured: +10 MB on a 1.1B model). A fixed threshold turns that adaptation off.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 128 * 1024)
    mallopt(m_trim_threshold, 128 * 1024)


class LlamaModel:
    def __init__(
        self,
        path: str | Path,
        *,
        n_ctx: int = CONTEXT_LENGTH,
        threads: int | None = None,
        n_gqa: int | None = None,
        rms_norm_eps: float | None = None,
        rope_freq_base: float | None = None,
        rope_freq_scale: float | None = None,
        vocab_only: bool = False,
    ):
        from agent.llm.tokenizer import Tokenizer

        if n_ctx <= 0:
            raise ValueError(f"n_ctx must be positive, got {n_ctx}")
        self.file = open_model_file(path)
        self.info: ModelInfo = model_info(
            self.file,
            n_gqa=n_gqa,
            rms_norm_eps=rms_norm_eps,
            rope_freq_base=rope_freq_base,
            rope_freq_scale=rope_freq_scale,
            weights=not vocab_only,
        )
        self.n_ctx = n_ctx
        self.threads = threads or os.cpu_count() or 1
        self.tokenizer = Tokenizer(self.file.vocab)
        self.vocab_only = vocab_only
        self.transformer = None
        if not vocab_only:
            from agent.llm import kernels
            from agent.llm.transformer import Transformer

            kernels.set_threads(self.threads)
            return_freed_memory_to_the_os()
            self.transformer = Transformer(
                self.file,
                self.info,
                n_ctx,
                linear=kernels.linear_class(),
                attend=kernels.attention_kernel(self.info.head_dim),
                attend_rows=kernels.attention_rows_kernel(self.info.head_dim),
                ops=kernels.layer_ops(),
            )
        self.tokens: list[int] = []  # what the KV cache holds, position by position
        # One KV cache: calls from several threads (executor steps, server requests) take turns.
        self.lock = threading.RLock()
        self._stats = threading.local()  # each thread's last generation (parallel callers)
        self._shared_stats = GenerationStats()
        self.batcher: Any = None  # a BatchScheduler once enable_batching() was called
        # A persistent prompt cache (agent.llm.prompt_cache.PromptCache), or None: set by the CLI.
        self.prompt_cache: Any = None

    @property
    def last_stats(self) -> GenerationStats:
        """The calling thread's last generation (else the last one of any thread)."""
        return getattr(self._stats, "value", self._shared_stats)

    @last_stats.setter
    def last_stats(self, stats: GenerationStats) -> None:
        self._stats.value = self._shared_stats = stats

    def prepare(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Ready every matrix for the fast kernels now instead of on first use (a CLI loads with
        this, so its load time is honest and its first prompt's speed is the real one)."""
        mats = self._require_weights().linears()
        for i, lin in enumerate(mats, 1):
            prep = getattr(lin, "prepare", None)
            if prep is not None:
                prep()
            if progress:
                progress(i, len(mats))
        release_threads()  # repacking ran here; later kernel calls may come from other threads

    # --- tokens -------------------------------------------------------------------------------
    def tokenize(self, text: str, bos: bool = True) -> list[int]:
        return self.tokenizer.encode(text, bos=bos)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    # --- evaluation ---------------------------------------------------------------------------
    def _require_weights(self) -> Any:
        if self.transformer is None:
            raise ValueError(
                f"{self.file.path} was loaded with vocab_only=True; it cannot evaluate"
            )
        return self.transformer

    def reset(self) -> None:
        with self.lock:
            self.tokens = []

    def eval(self, ids: Sequence[int]) -> np.ndarray:
        """Logits [len(ids), n_vocab] of ``ids`` appended after the cached tokens."""
        with self.lock:
            return self._eval(ids)

    def _eval(self, ids: Sequence[int], last_only: bool = False) -> np.ndarray:
        tr = self._require_weights()
        ids = [int(i) for i in ids]
        if not ids:
            return np.zeros((0, self.info.n_vocab), np.float32)
        bad = [i for i in ids if not 0 <= i < self.info.n_vocab]
        if bad:
            raise ValueError(
                f"token id {bad[0]} is outside the vocabulary (0..{self.info.n_vocab - 1})"
            )
        n_past = len(self.tokens)
        if n_past + len(ids) > self.n_ctx:
            raise ContextLengthError(
                f"{n_past + len(ids)} tokens do not fit the context window of {self.n_ctx}; "
                "shorten the prompt or load the model with a larger n_ctx"
            )
        logits = tr.forward(np.asarray(ids, dtype=np.int64), n_past, last_only=last_only)
        finite = np.isfinite(logits).all(axis=-1)
        if not finite.all():  # never sample from NaN: a broken file must not give an empty answer
            pos = n_past + len(ids) - len(logits) + int(np.argmin(finite))
            raise ModelFormatError(
                f"{self.file.path}: the logits at position {pos} are not finite (NaN or inf); "
                "the model file is probably broken (its weights, or hyperparameters such as the "
                "RMS eps or the RoPE base): check it with 'agent info' or get a good copy"
            )
        self.tokens.extend(ids)
        return logits

    def eval_prompt(self, ids: Sequence[int]) -> np.ndarray:
        """Logits of the last token of ``ids``, reusing the longest cached prefix."""
        ids = list(ids)
        with self.lock:
            common = 0
            for a, b in zip(self.tokens, ids, strict=False):
                if a != b:
                    break
                common += 1
            common = min(common, len(ids) - 1)  # always evaluate one token, to get its logits
            self.tokens = self.tokens[:common]
            if self.prompt_cache is not None:  # a longer prefix from an earlier process?
                common = self.prompt_cache.restore(self, ids[:-1], common)
                self.tokens = ids[:common]
            self.last_stats.cached_tokens = common
            logits = self._eval(ids[common:], last_only=True)[-1]
            if self.prompt_cache is not None and len(ids) - common >= self.prompt_cache.min_new:
                self.prompt_cache.save(self, ids)
            return logits

    # --- generation ---------------------------------------------------------------------------
    def generate(
        self,
        prompt: str,
        max_tokens: int = SAMPLING_DEFAULTS.max_tokens,
        temperature: float = SAMPLING_DEFAULTS.temperature,
        top_k: int = SAMPLING_DEFAULTS.top_k,
        top_p: float = SAMPLING_DEFAULTS.top_p,
        repeat_penalty: float = SAMPLING_DEFAULTS.repeat_penalty,
        seed: int | None = None,
        stop: Sequence[str] = (),
        grammar: Any = None,
        cancel: threading.Event | None = None,
        on_piece: Callable[[str], None] | None = None,
    ) -> Iterator[str]:
        """Stream the continuation of ``prompt`` as text pieces.

        Without batching the model is locked for the whole generation: another thread's call waits
        until this one is finished or closed. With ``enable_batching`` concurrent calls decode
        together, each in its own KV slot. Setting ``cancel`` stops the generation at its next
        token. With ``on_piece`` the pieces go to it as they come (from the batch scheduler's
        thread when batching) and none is yielded: iterating waits for the end. Do not interleave
        two generations in one thread.
        """
        if self.batcher is not None:
            params = SamplingParams(temperature, top_k, top_p, repeat_penalty, seed=seed)
            handle = self.batcher.submit(
                prompt, max_tokens, params, stop, grammar, cancel, on_piece
            )
            self.last_stats = handle.stats
            yield from handle
            return
        with self.lock:
            pieces = self._generate(
                prompt,
                max_tokens,
                temperature,
                top_k,
                top_p,
                repeat_penalty,
                seed,
                stop,
                grammar,
                cancel,
            )
            if on_piece is None:
                yield from pieces
                return
            try:
                for piece in pieces:
                    on_piece(piece)
            finally:
                pieces.close()

    def enable_batching(
        self,
        slots: int = 4,
        n_ctx: int | None = None,
        chunk: int | None = None,
        step_seconds: float | None = DEFAULT_STEP_SECONDS,
    ) -> None:
        """Decode concurrent ``generate`` calls together: ``slots`` sequences, each with its own KV
        cache of ``n_ctx`` positions (default the model's), advance in one forward pass. A step
        reads up to ``chunk`` prompt tokens (default 16), fewer beside decoding sequences where
        more would make it longer than ``step_seconds`` (None: always ``chunk``).

        KV memory: slots x n_ctx x n_layer x 2 x n_head_kv x head_dim x 2 bytes (f16), lazily.
        """
        from agent.llm.batch import DEFAULT_CHUNK, BatchScheduler

        if self.batcher is not None:
            self.batcher.close()
        self.batcher = BatchScheduler(
            self,
            slots,
            n_ctx or self.n_ctx,
            DEFAULT_CHUNK if chunk is None else chunk,
            step_seconds,
        )

    def _generate(
        self,
        prompt: str,
        max_tokens: int,
        temperature: float,
        top_k: int,
        top_p: float,
        repeat_penalty: float,
        seed: int | None,
        stop: Sequence[str],
        grammar: Any,
        cancel: threading.Event | None = None,
    ) -> Generator[str, None, None]:
        ids = self.tokenize(prompt, bos=True)
        cont = Continuation(
            self,
            ids,
            self.n_ctx,
            max_tokens,
            SamplingParams(temperature, top_k, top_p, repeat_penalty, seed=seed),
            stop,
            grammar,
        )
        stats = self.last_stats = cont.stats
        t0 = time.perf_counter()
        logits = self.eval_prompt(ids)
        stats.prompt_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            while True:
                text, done = cont.step(logits, self.tokens)
                if text:
                    yield text
                if done:
                    return
                if cancel is not None and cancel.is_set():
                    stats.stop_reason = "cancelled"
                    return
                logits = self.eval([cont.token])[-1]
        finally:
            stats.generate_seconds = time.perf_counter() - t0
            release_threads()  # this thread may now idle (a server's request thread)

    def complete(self, prompt: str, **kwargs: Any) -> str:
        return "".join(self.generate(prompt, **kwargs))


def load_model(
    path: str | Path,
    n_ctx: int = CONTEXT_LENGTH,
    threads: int | None = None,
    n_gqa: int | None = None,
    rms_norm_eps: float | None = None,
    rope_freq_base: float | None = None,
    rope_freq_scale: float | None = None,
    vocab_only: bool = False,
) -> LlamaModel:
    """Open a GGML v3 (ggjt v1-v3) or GGUF v1-v3 Llama model, memory-mapped."""
    return LlamaModel(
        path,
        n_ctx=n_ctx,
        threads=threads,
        n_gqa=n_gqa,
        rms_norm_eps=rms_norm_eps,
        rope_freq_base=rope_freq_base,
        rope_freq_scale=rope_freq_scale,
        vocab_only=vocab_only,
    )
