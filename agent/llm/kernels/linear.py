"""Matrix products with weights kept in their quantized blocks.

``Linear(tensor)`` computes ``x @ W.T`` for activations x [n_tokens, n_in]. This is the reference
path (dequantize, then BLAS); the fast kernels in ``agent.llm.kernels`` replace it per block type
when they are available.
"""

from __future__ import annotations

import numpy as np

from agent.llm.formats.modelfile import TensorInfo
from agent.llm.formats.quants import dequantize, dequantize_rows


class Linear:
    def __init__(self, tensor: TensorInfo):
        if len(tensor.shape) != 2:
            raise ValueError(f"tensor {tensor.name!r} is not a matrix (shape {tensor.shape})")
        self.tensor = tensor
        self.n_out, self.n_in = tensor.shape

    def __call__(self, x: np.ndarray) -> np.ndarray:
        w = dequantize(self.tensor.data, self.tensor.type, self.tensor.shape)
        return x @ w.T


class Embedding:
    """Token embedding lookup: dequantizes only the rows asked for."""

    def __init__(self, tensor: TensorInfo):
        self.tensor = tensor
        self.n_vocab, self.n_embd = tensor.shape

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        return dequantize_rows(self.tensor.data, self.tensor.type, self.tensor.shape, ids)


def vector(tensor: TensorInfo) -> np.ndarray:
    """A 1-D weight (norms) as float32."""
    return dequantize(tensor.data, tensor.type, tensor.shape).reshape(-1)
