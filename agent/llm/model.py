"""The public engine object: ``load_model(path) -> LlamaModel``.

Owns the mapped file, the tokenizer, the transformer and its KV cache. ``eval`` extends the cache;
``generate`` reuses the longest cached prefix of its prompt (the Airoboros preamble and planner
prompt start every call), then samples token by token.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agent.errors import ContextLengthError, ModelFormatError
from agent.llm.formats.files import open_model_file
from agent.llm.hparams import ModelInfo, model_info
from agent.llm.llama2 import CONTEXT_LENGTH
from agent.llm.protocol import SAMPLING_DEFAULTS
from agent.llm.sampling import Sampler, SamplingParams


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


class TokenMatcher(Protocol):
    """Constrained decoding hook: what ``grammar.matcher(model)`` returns."""

    def allowed_mask(
        self,
    ) -> np.ndarray: ...  # bool [n_vocab]; EOS allowed once the grammar is complete

    def accept(self, token_id: int) -> None: ...

    def is_complete(self) -> bool: ...  # nothing but EOS may follow


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    prompt_seconds: float = 0.0
    generate_seconds: float = 0.0
    stop_reason: str = ""  # "eos", "stop", "length", "grammar"


class StopScanner:
    """Holds back text that may be the start of a stop string; reports when one appears."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending = self.pending[: min(hits)], ""
            return out, True
        keep = 0
        for s in self.stops:  # longest suffix of pending that is a proper prefix of a stop string
            for n in range(min(len(s) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(s[:n]):
                    keep = max(keep, n)
                    break
        out = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep :]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


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
            )
        self.tokens: list[int] = []  # what the KV cache holds, position by position
        # One KV cache: calls from several threads (executor steps, server requests) take turns.
        self.lock = threading.RLock()
        self.last_stats = GenerationStats()
        # A persistent prompt cache (agent.llm.prompt_cache.PromptCache), or None: set by the CLI.
        self.prompt_cache: Any = None

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
    ) -> Iterator[str]:
        """Stream the continuation of ``prompt`` as text pieces.

        The model is locked for the whole generation: another thread's call waits until this one is
        finished or closed. Do not interleave two generations in one thread.
        """
        with self.lock:
            yield from self._generate(
                prompt, max_tokens, temperature, top_k, top_p, repeat_penalty, seed, stop, grammar
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
    ) -> Iterator[str]:
        sampler = Sampler(SamplingParams(temperature, top_k, top_p, repeat_penalty, seed=seed))
        ids = self.tokenize(prompt, bos=True)
        if len(ids) >= self.n_ctx:
            raise ContextLengthError(
                f"the prompt is {len(ids)} tokens; the context window is {self.n_ctx}. "
                "Shorten the prompt or raise n_ctx (-c)"
            )
        if isinstance(stop, str):
            stop = [stop]
        stats = self.last_stats = GenerationStats(prompt_tokens=len(ids))
        matcher: TokenMatcher | None = grammar.matcher(self) if grammar is not None else None
        t0 = time.perf_counter()
        logits = self.eval_prompt(ids)
        stats.prompt_seconds = time.perf_counter() - t0
        decoder = self.tokenizer.stream_decoder()
        scanner = StopScanner(stop)
        eos = self.tokenizer.eos_id
        t0 = time.perf_counter()
        try:
            while True:
                if stats.generated_tokens >= max_tokens:
                    stats.stop_reason = "length"
                    break
                if len(self.tokens) >= self.n_ctx:
                    stats.stop_reason = "length"
                    break
                if matcher is not None:
                    mask = matcher.allowed_mask()
                    logits = np.where(mask, logits, -np.inf).astype(np.float32)
                token = sampler.sample(logits, self.tokens)
                if token == eos:
                    stats.stop_reason = "eos"
                    break
                if matcher is not None:
                    matcher.accept(token)
                stats.generated_tokens += 1
                text, stopped = scanner.feed(decoder.feed(token))
                if text:
                    yield text
                if stopped:
                    stats.stop_reason = "stop"
                    return
                if matcher is not None and matcher.is_complete():
                    stats.stop_reason = "grammar"
                    break
                logits = self.eval([token])[-1]
            tail, stopped = scanner.feed(decoder.flush())
            if not stopped:
                tail += scanner.flush()
            if tail:
                yield tail
        finally:
            stats.generate_seconds = time.perf_counter() - t0

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
