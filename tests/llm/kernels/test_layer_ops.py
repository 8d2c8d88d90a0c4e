"""The C element-wise steps of a layer (rms_norm, rope, silu_mul) against the transformer's numpy
definitions, on odd shapes, and their refusals of bad arrays."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

try:
    from agent.llm.kernels import c_backend as C
except ImportError as exc:  # no working C compiler
    pytest.skip(f"C kernels unavailable: {exc}", allow_module_level=True)

from agent.llm.transformer import Transformer


def numpy_transformer() -> Transformer:
    """A Transformer with nothing loaded but what its element-wise steps read (ops=None: numpy)."""
    t = Transformer.__new__(Transformer)
    t.ops = None
    t.info = SimpleNamespace(rms_norm_eps=1e-5)  # type: ignore[assignment]
    return t


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 70), st.integers(0, 2**31 - 1))
def test_rms_norm_matches_numpy(nt, n, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((nt, n)) * rng.uniform(0.01, 100)).astype(np.float32)
    w = rng.standard_normal(n).astype(np.float32)
    want = numpy_transformer().rms_norm(x, w)
    np.testing.assert_allclose(C.rms_norm(x, w, 1e-5), want, rtol=2e-6, atol=1e-7)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.sampled_from([2, 8, 64, 128]), st.integers(0, 99))
def test_rope_matches_numpy(nt, n_head, hd, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((nt, n_head, hd)).astype(np.float32)
    angle = rng.uniform(-50, 50, (nt, 1, hd // 2))
    cos, sin = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    want = numpy_transformer().rope(x.copy(), cos, sin)
    got = C.rope(x, cos, sin)
    assert got is x  # rotated in place
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_silu_mul_matches_numpy():
    rng = np.random.default_rng(0)
    g = (rng.standard_normal((3, 301)) * 30).astype(np.float32)
    u = rng.standard_normal((3, 301)).astype(np.float32)
    with np.errstate(over="ignore"):  # exp(-g) overflows to inf for large negative g: silu 0
        want = numpy_transformer().silu_mul(g.copy(), u)
    assert C.silu_mul(g, u) is g
    np.testing.assert_allclose(g, want, rtol=2e-6, atol=1e-7)
    assert np.isfinite(g).all()  # large |g|: exp overflows to inf, silu to 0 or g


def test_silu_mul_special_values_as_numpy():
    """NaN stays NaN, inf is inf, -inf is NaN (-inf / inf), beyond exp's range 0 or g: in the
    16-wide vector body and in the scalar tail alike."""
    special = [np.nan, np.inf, -np.inf, 88.0, -88.0, 89.5, -89.5, 104.0, -104.0, 0.0, -0.0, 1e-40]
    g = np.array(special * 3, np.float32)  # 36 values: two vectors and a tail
    u = np.linspace(-2, 2, g.size).astype(np.float32)
    with np.errstate(all="ignore"):
        want = numpy_transformer().silu_mul(g.copy(), u)
    np.testing.assert_allclose(C.silu_mul(g, u), want, rtol=2e-6, atol=1e-30)


def test_silu_mul_of_a_row_does_not_depend_on_the_batch_around_it():
    """A decode row and the same row inside a prompt chunk must give the same bits: rows of 37
    values put most of them at other offsets from a vector's start, and some in the tail."""
    rng = np.random.default_rng(3)
    g = (rng.standard_normal((5, 37)) * 4).astype(np.float32)
    u = rng.standard_normal((5, 37)).astype(np.float32)
    whole = C.silu_mul(g.copy(), u)
    for i in range(5):
        np.testing.assert_array_equal(
            C.silu_mul(g[i : i + 1].copy(), u[i : i + 1]), whole[i : i + 1]
        )


def test_bad_arrays_are_refused_not_read_past():
    x = np.ones((2, 8), np.float32)
    with pytest.raises(ValueError, match="rms_norm: w must have shape"):
        C.rms_norm(x, np.ones(7, np.float32), 1e-5)
    with pytest.raises(ValueError, match="rms_norm: x must be float32"):
        C.rms_norm(x.astype(np.float64), np.ones(8, np.float32), 1e-5)
    q = np.ones((2, 3, 8), np.float32)
    with pytest.raises(ValueError, match="rope: cos"):
        C.rope(q, np.ones((2, 1, 3), np.float32), np.ones((2, 1, 4), np.float32))
    frozen = q.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="rope: x must be writable"):
        C.rope(frozen, np.ones((2, 1, 4), np.float32), np.ones((2, 1, 4), np.float32))
    with pytest.raises(ValueError, match="silu_mul: u"):
        C.silu_mul(np.ones(5, np.float32), np.ones(4, np.float32))
    assert C.rms_norm(np.ones((0, 8), np.float32), np.ones(8, np.float32), 1e-5).shape == (0, 8)
