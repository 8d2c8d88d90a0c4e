"""The small text-generation protocol that planner, tools and functions depend on.

Anything with ``generate``/``complete`` of these signatures can drive the runtime: the native
engine (``agent.llm.load_model``), a scripted generator in tests, or a remote model.
Optional extras: ``tokenize(text, bos=True) -> list[int]`` and ``n_ctx`` (context budgeting);
callers fall back to ``estimate_tokens`` when a generator lacks them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class SamplingDefaults:
    """The sampling defaults of every ``generate`` (llama.cpp's, but temperature 0.7).

    Callers with reasons of their own (greedy plans, cooler function calls) pass other values;
    everything that means "the default" takes it from ``SAMPLING_DEFAULTS``.
    """

    max_tokens: int = 256
    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 0.95
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64


SAMPLING_DEFAULTS = SamplingDefaults()
_S = SAMPLING_DEFAULTS


@runtime_checkable
class TextGenerator(Protocol):
    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int = _S.max_tokens,
        temperature: float = _S.temperature,
        top_k: int = _S.top_k,
        top_p: float = _S.top_p,
        repeat_penalty: float = _S.repeat_penalty,
        seed: int | None = None,
        stop: Sequence[str] = (),
        grammar: Any = None,
    ) -> Iterator[str]:
        """Stream the continuation of ``prompt`` as text pieces."""
        ...

    def complete(self, prompt: str, **kwargs: Any) -> str:
        """The whole continuation of ``prompt`` as one string."""
        ...


def estimate_tokens(text: str) -> int:
    """Rough Llama token count for generators without a tokenizer (about 3.5 chars a token)."""
    return max(1, (len(text) * 2 + 6) // 7)


def count_tokens(model: Any, text: str) -> int:
    """Token count by the model's own tokenizer when it has one, else an estimate."""
    tokenize = getattr(model, "tokenize", None)
    if callable(tokenize):
        return len(tokenize(text, bos=False))
    return estimate_tokens(text)
