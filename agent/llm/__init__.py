"""The engine: GGML v3 / GGUF readers, quant kernels, tokenizer, Llama-2 forward pass, sampling.

``load_model`` is imported lazily so that light users of the protocol (planner, tools) do not pay
for numpy/numba start-up.
"""

from __future__ import annotations

from typing import Any

from agent.llm.protocol import (
    SAMPLING_DEFAULTS,
    SamplingDefaults,
    TextGenerator,
    count_tokens,
    estimate_tokens,
)

__all__ = [
    "load_model",
    "TextGenerator",
    "count_tokens",
    "estimate_tokens",
    "SAMPLING_DEFAULTS",
    "SamplingDefaults",
]


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from agent.llm.model import load_model

        return load_model
    raise AttributeError(f"module 'agent.llm' has no attribute {name!r}")
