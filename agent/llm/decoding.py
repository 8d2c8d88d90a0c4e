"""One sequence's decoding state, shared by the one-sequence loop of ``LlamaModel.generate`` and
the batch scheduler (``agent.llm.batch``): sampler, grammar, stop strings, detokenizer, stats."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from agent.errors import ContextLengthError
from agent.llm.sampling import Sampler, SamplingParams


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


class Continuation:
    """One sequence's decoding state: sampler, grammar, detokenizer, stop strings and stats.

    ``step(logits, history)`` takes the logits after the last cached token and returns the text to
    emit and whether the sequence is finished; otherwise ``token`` is the next one to evaluate.
    Shared by the one-sequence loop of ``LlamaModel.generate`` and the batch scheduler.
    """

    def __init__(
        self,
        model: Any,
        ids: list[int],
        n_ctx: int,
        max_tokens: int,
        params: SamplingParams,
        stop: Sequence[str] | str,
        grammar: Any,
    ):
        if len(ids) >= n_ctx:
            raise ContextLengthError(
                f"the prompt is {len(ids)} tokens; the context window is {n_ctx}. "
                "Shorten the prompt or raise n_ctx (-c)"
            )
        self.ids, self.n_ctx, self.max_tokens = ids, n_ctx, max_tokens
        self.sampler = Sampler(params)
        self.matcher: TokenMatcher | None = grammar.matcher(model) if grammar is not None else None
        self.decoder = model.tokenizer.stream_decoder()
        self.scanner = StopScanner([stop] if isinstance(stop, str) else stop)
        self.eos = model.tokenizer.eos_id
        self.stats = GenerationStats(prompt_tokens=len(ids))
        self.token = -1

    def _finish(self, reason: str, text: str = "") -> tuple[str, bool]:
        self.stats.stop_reason = reason
        tail, stopped = self.scanner.feed(self.decoder.flush())
        if not stopped:
            tail += self.scanner.flush()
        return text + tail, True

    def step(self, logits: np.ndarray, history: Sequence[int]) -> tuple[str, bool]:
        stats = self.stats
        if stats.generated_tokens >= self.max_tokens or len(history) >= self.n_ctx:
            return self._finish("length")
        if self.matcher is not None:
            logits = np.where(self.matcher.allowed_mask(), logits, -np.inf).astype(np.float32)
        token = self.sampler.sample(logits, history)
        if token == self.eos:
            return self._finish("eos")
        if self.matcher is not None:
            self.matcher.accept(token)
        stats.generated_tokens += 1
        text, stopped = self.scanner.feed(self.decoder.feed(token))
        if stopped:
            stats.stop_reason = "stop"
            return text, True
        if self.matcher is not None and self.matcher.is_complete():
            return self._finish("grammar", text)
        self.token = token
        return text, False
