"""A decode token through every layer in one kernel call (DecodeLayers) gives exactly what the
layer-by-layer path gives: the same kernels in the same order, no Python between them."""

from __future__ import annotations

import numpy as np
import pytest

from agent.llm import load_model
from agent.llm.kernels import runtime
from tests import golden

pytestmark = pytest.mark.skipif(
    runtime.backend_name() != "c" or runtime.layer_ops() is None,
    reason="needs the C kernels",
)


def _pair(name: str):
    path = golden.model_path(name)
    one_call, layered = load_model(path, n_ctx=64), load_model(path, n_ctx=64)
    layered.transformer._decode = False  # never built: one kernel call at a time
    return one_call.transformer, layered.transformer


# Q4_0 everywhere; llama.cpp's Q4_K_M mix: Q4_K and Q6_K projections (Q6_K output head)
FILES = ["tiny-q4_0.gguf", "tiny.ggmlv3.q4_K_M.bin"]


@pytest.mark.parametrize("name", FILES)
def test_one_call_decode_is_bit_identical_to_the_layered_path(name):
    fast, slow = _pair(name)
    if fast.decode_layers() is None:
        pytest.skip(f"no one-token integer kernel for every projection of {name} on this CPU")
    ids = [1, 15, 300, 20, 7, 99, 512, 3]
    np.testing.assert_array_equal(
        fast.forward(np.array(ids[:3]), 0), slow.forward(np.array(ids[:3]), 0)
    )
    for i, t in enumerate(ids[3:]):
        a = fast.forward(np.array([t]), 3 + i)
        b = slow.forward(np.array([t]), 3 + i)
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fast.k_cache, slow.k_cache)  # K and V written alike (f16)
    np.testing.assert_array_equal(fast.v_cache, slow.v_cache)


def test_files_with_a_projection_lacking_the_kernel_keep_the_layered_path():
    fast, _ = _pair("tiny-q8_0.gguf")  # Q8_0 decodes with the matvec
    assert fast.decode_layers() is None


@pytest.mark.parametrize("name", FILES)
def test_batched_rows_in_their_own_caches_match_the_layered_path(name):
    from agent.llm.transformer import Span

    fast, slow = _pair(name)
    if fast.decode_layers() is None:
        pytest.skip(f"no one-token integer kernel for every projection of {name} on this CPU")
    rng = np.random.default_rng(0)
    caches = []
    for tr in (fast, slow):  # three sequences at positions 5, 0 and 17, in caches of their own
        kv = [rng.standard_normal((2, *tr.k_cache.shape)).astype(np.float16) for _ in range(3)]
        caches.append([(k.copy(), v.copy()) for k, v in kv])
        rng = np.random.default_rng(0)  # the same contents for both
    ids = np.array([11, 22, 33])
    outs = []
    for tr, cs in zip((fast, slow), caches, strict=True):
        spans = [
            Span(i, i + 1, p, k, v)
            for i, (p, (k, v)) in enumerate(zip([5, 0, 17], cs, strict=True))
        ]
        outs.append(tr.layers_forward(ids, spans))
    np.testing.assert_array_equal(outs[0], outs[1])
    for (k0, v0), (k1, v1) in zip(caches[0], caches[1], strict=True):
        np.testing.assert_array_equal(k0, k1)
        np.testing.assert_array_equal(v0, v1)


def test_bad_calls_are_refused():
    fast, _ = _pair("tiny-q4_0.gguf")
    plan = fast.decode_layers()
    if plan is None:
        pytest.skip("no one-token integer kernel for Q4_0 on this CPU")
    dim, hd = fast.info.n_embd, fast.info.head_dim
    x = np.zeros((1, dim), np.float32)
    cos = np.ones((1, 1, hd // 2), np.float32)
    k, v = [fast.k_cache], [fast.v_cache]
    with pytest.raises(ValueError, match="position each inside them"):
        plan(x, cos, cos, k, v, np.array([64]))
    with pytest.raises(ValueError, match="2 rows need 2 caches"):
        plan(
            np.zeros((2, dim), np.float32),
            np.ones((2, 1, hd // 2), np.float32),
            np.ones((2, 1, hd // 2), np.float32),
            k,
            v,
            np.array([0, 1]),
        )
    with pytest.raises(ValueError, match="cos must"):
        plan(x, cos[..., :-1], cos, k, v, np.array([0]))
    with pytest.raises(ValueError, match="a k cache must be writable"):
        frozen = fast.k_cache.copy()
        frozen.flags.writeable = False
        plan(x, cos, cos, [frozen], v, np.array([0]))
