"""Matrix products for the engine: kernel-module choice and threads (``backend``), the repacked
layout (``layout``, ``repack``), the C and numba kernels (``c_backend``, ``numba_backend``), and the
projections built on them (``QuantLinear``, the reference ``Linear``)."""

from agent.llm.kernels.linear import Embedding, Linear
from agent.llm.kernels.quant_linear import QuantLinear, linear_class
from agent.llm.kernels.runtime import (
    BACKENDS,
    attention_kernel,
    attention_rows_kernel,
    backend,
    backend_name,
    describe,
    get_threads,
    layer_ops,
    set_threads,
)

__all__ = [
    "BACKENDS",
    "Embedding",
    "Linear",
    "QuantLinear",
    "attention_kernel",
    "attention_rows_kernel",
    "backend",
    "backend_name",
    "describe",
    "get_threads",
    "layer_ops",
    "linear_class",
    "set_threads",
]
