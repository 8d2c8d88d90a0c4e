"""Fast kernels against the numpy dequantizers (the oracle), on random blocks of every type."""

from __future__ import annotations

import mmap
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.llm import kernels
from agent.llm.ggml_types import LAYOUTS, GGMLType
from agent.llm.linear import Linear
from agent.llm.modelfile import TensorInfo
from agent.llm.quants import dequantize
from agent.llm.repack import LANES, PackedMatrix, release_pages, repack

QUANT_TYPES = [GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q8_0,
               GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K]
# Byte ranges of each block's f16 fields: random bytes there could be inf/nan.
F16_FIELDS = {
    GGMLType.Q4_0: [0], GGMLType.Q4_1: [0, 2], GGMLType.Q5_0: [0], GGMLType.Q5_1: [0, 2],
    GGMLType.Q8_0: [0], GGMLType.Q2_K: [80, 82], GGMLType.Q3_K: [108], GGMLType.Q4_K: [0, 2],
    GGMLType.Q5_K: [0, 2], GGMLType.Q6_K: [208],
}


def random_blocks(t: GGMLType, n_rows: int, n_in: int, rng: np.random.Generator) -> np.ndarray:
    """Valid random blocks: random codes, small finite f16 scales."""
    layout = LAYOUTS[t]
    nb = n_rows * n_in // layout.block_size
    raw = rng.integers(0, 256, size=(nb, layout.type_size), dtype=np.uint8)
    for off in F16_FIELDS[t]:
        scale = rng.uniform(-0.02, 0.02, size=nb).astype(np.float16)
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(nb, 2)
    return raw.reshape(-1)


def tensor(t: GGMLType, n_rows: int, n_in: int, seed: int = 0) -> TensorInfo:
    rng = np.random.default_rng(seed)
    if t == GGMLType.F32:
        data = rng.standard_normal((n_rows, n_in)).astype(np.float32).view(np.uint8).reshape(-1)
    elif t == GGMLType.F16:
        data = rng.standard_normal((n_rows, n_in)).astype(np.float16).view(np.uint8).reshape(-1)
    else:
        data = random_blocks(t, n_rows, n_in, rng)
    return TensorInfo(f"test.{t.name}", int(t), (n_rows, n_in), 0, data)


def reference(tinfo: TensorInfo, x: np.ndarray) -> np.ndarray:
    w = dequantize(tinfo.data, tinfo.type, tinfo.shape).astype(np.float64)
    return x.astype(np.float64) @ w.T


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    scale = np.abs(want).max() + 1e-6
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-4 * scale)


@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("n_tokens", [1, 3, 9])
def test_matches_dequantize_then_matmul(t: GGMLType, n_tokens: int) -> None:
    block = LAYOUTS[t].block_size
    n_rows, n_in = 200, 2 * block if block == 256 else 96  # 200 rows: one full group, one padded
    ti = tensor(t, n_rows, n_in, seed=n_tokens)
    x = np.random.default_rng(7).standard_normal((n_tokens, n_in)).astype(np.float32)
    got = kernels.QuantLinear(ti)(x)
    assert got.shape == (n_tokens, n_rows) and got.dtype == np.float32
    assert_close(got, reference(ti, x))
