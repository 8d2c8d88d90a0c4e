"""Choice of matrix-product implementation and thread count for the engine.

The reference ``Linear`` (dequantize, then BLAS) is the fallback; faster kernels register here.
"""

from __future__ import annotations

from agent.llm.linear import Linear

_threads = 1


def set_threads(n: int) -> None:
    global _threads
    _threads = max(1, int(n))


def linear_class() -> type:
    return Linear
