"""Integer prefill (``c_backend.MM``): int8 activations times the weight codes, on every block type.

Oracle: numpy quantizes the activations by the rule (one scale per block of the type, 32 values,
or per 256 for K-quants: amax / 127, round half to even) and multiplies the dequantized rows in
float64. The kernel must match that closely, and stay within the quantization bound of the exact
float product (sum |w| * d / 2 per row).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

try:
    from agent.llm.kernels import c_backend as C
except ImportError as exc:  # no working C compiler
    pytest.skip(f"C kernels unavailable: {exc}", allow_module_level=True)

from agent.llm.formats.ggml_types import LAYOUTS, GGMLType
from agent.llm.formats.modelfile import TensorInfo
from agent.llm.formats.quants import dequantize
from agent.llm.kernels import QuantLinear
from agent.llm.kernels.repack import LANES, repack
from tests.llm.kernels.test_kernels import QUANT_TYPES, random_blocks

ROOT = Path(__file__).resolve().parents[3]


def act_block(t: GGMLType) -> int:
    return 256 if LAYOUTS[t].block_size == 256 else 32


def quantized(x: np.ndarray, qb: int) -> tuple[np.ndarray, np.ndarray]:
    """The rule, in numpy: int8 codes and one scale per ``qb`` values."""
    nt, n = x.shape
    blocks = x.astype(np.float32).reshape(nt, n // qb, qb)
    amax = np.abs(blocks).max(axis=2, keepdims=True)
    inv = np.where(amax > 0, np.float32(127) / np.where(amax > 0, amax, 1), 0).astype(np.float32)
    q = np.rint(blocks * inv).astype(np.int8)
    return q.reshape(nt, n), (amax / np.float32(127)).astype(np.float32).reshape(nt, n // qb)


def check(t: GGMLType, n_out: int, n_in: int, n_tok: int, seed: int, K=C) -> None:
    raw = random_blocks(t, n_out, n_in, np.random.default_rng(seed))
    w = dequantize(raw, t, (n_out, n_in)).astype(np.float64)
    pm = repack(raw, t, (n_out, n_in), release=False, kernels=K)
    x = np.random.default_rng(seed + 1).standard_normal((n_tok, n_in)).astype(np.float32)
    x[:, : n_in // 2] *= 4  # blocks of different scales
    got = K.MM[t.name.lower()](*pm.arrays)(x)
    assert got.shape == (n_tok, pm.n_groups * LANES) and got.dtype == np.float32
    assert np.all(got[:, n_out:] == 0)  # padded rows: zero blocks
    qb = act_block(t)
    q, d = quantized(x, qb)
    xq = (q.astype(np.float64).reshape(n_tok, -1, qb) * d[:, :, None]).reshape(n_tok, n_in)
    want = xq @ w.T
    scale = np.abs(want).max() + 1e-6
    # float32 sums of terms that may cancel (random scales: a result of 0.97 from terms of
    # magnitude 29,000 was off by 5e-5): the rounding allowed grows with the terms, not the result
    rounding = 2e-5 * scale + 1e-7 * (np.abs(xq) @ np.abs(w).T)
    assert np.all(np.abs(got[:, :n_out] - want) <= rounding), np.abs(got[:, :n_out] - want).max()
    # and within the quantization bound of the exact product
    bound = (np.abs(w)[None] * (np.repeat(d, qb, axis=1) / 2)[:, None, :]).sum(axis=2)
    exact = x.astype(np.float64) @ w.T
    assert np.all(np.abs(got[:, :n_out] - exact) <= bound + rounding)


@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("n_tok", [1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 16, 17])
def test_matches_the_rule_on_every_type(t: GGMLType, n_tok: int) -> None:
    block = LAYOUTS[t].block_size
    # rows not a multiple of LANES (one padded group); n_in both a multiple of 256 and not
    for n_in in (2 * block, 3 * block) if block == 256 else (96, 512):
        check(t, LANES + 45, n_in, n_tok, seed=n_tok)


@settings(max_examples=25, deadline=None)
@given(
    t=st.sampled_from(QUANT_TYPES),
    n_out=st.integers(1, 2 * LANES + 1),
    blocks=st.integers(1, 9),
    n_tok=st.integers(1, 20),
    seed=st.integers(0, 2**16),
)
def test_fuzz_shapes_and_blocks(
    t: GGMLType, n_out: int, blocks: int, n_tok: int, seed: int
) -> None:
    check(t, n_out, blocks * LAYOUTS[t].block_size, n_tok, seed)


@pytest.mark.parametrize("n_tok", [1, 2, 3, 4, 8, 12])
def test_q4_0_sums_at_the_edges_of_16_bits(n_tok: int) -> None:
    """Codes all 0 or all 15 against activations all at +-127 (and split by the pairs the kernels
    sum in 16 bits): the extreme sums a block can have, exact or off by a wrap-around of 65,536."""
    t, n_out, n_in = GGMLType.Q4_0, 3 * 40, 64
    code_bytes = {0: 0x00, 1: 0xFF, 2: 0xF0}  # codes all 0, all 15, 0 then 15 (value j / 16 + j)
    raw = np.zeros((n_out * n_in // 32, 18), np.uint8)
    raw[:, :2] = np.full(len(raw), 0.01, np.float16).view(np.uint8).reshape(-1, 2)
    for r in range(n_out):
        raw[r * 2 : r * 2 + 2, 2:] = code_bytes[r % 3]
    pair = np.arange(n_in) % 4 < 2  # the values of a lane's first 16-bit sum
    patterns = [np.ones(n_in), -np.ones(n_in), np.where(pair, 1.0, -1.0), np.where(pair, -1.0, 1.0)]
    x = np.stack([patterns[i % 4] for i in range(n_tok)]).astype(np.float32)
    packed = repack(raw.reshape(-1), t, (n_out, n_in), release=False, kernels=C)
    got = C.MM["q4_0"](*packed.arrays)(x)
    w = dequantize(raw.reshape(-1), t, (n_out, n_in)).astype(np.float64)
    np.testing.assert_allclose(got[:, :n_out], x.astype(np.float64) @ w.T, rtol=1e-6, atol=1e-6)


def test_zero_and_tiny_activations() -> None:
    t = GGMLType.Q4_K
    raw = random_blocks(t, 130, 512, np.random.default_rng(0))
    pm = repack(raw, t, (130, 512), release=False, kernels=C)
    mm = C.MM["q4_k"](*pm.arrays)
    x = np.zeros((3, 512), np.float32)
    x[1, :256] = 1e-30  # a block of denormal-sized values quantizes, never divides by zero
    out = mm(x)
    assert np.isfinite(out).all() and np.all(out[0] == 0)


def test_quantize_q8_by_the_rule() -> None:
    x = np.random.default_rng(3).standard_normal((4, 512)).astype(np.float32)
    q, d, qsum = C.quantize_q8(x, 32, 16)
    want_q, want_d = quantized(x, 32)
    np.testing.assert_array_equal(q, want_q)
    np.testing.assert_allclose(d, want_d, rtol=1e-7)
    np.testing.assert_array_equal(qsum, q.astype(np.int32).reshape(4, -1, 16).sum(axis=2))


def test_bad_arguments_raise_value_errors() -> None:
    t = GGMLType.Q4_0
    raw = random_blocks(t, 10, 64, np.random.default_rng(0))
    mm = C.MM["q4_0"](*repack(raw, t, (10, 64), release=False, kernels=C).arrays)
    with pytest.raises(ValueError, match="x must have shape"):
        mm(np.zeros((2, 32), np.float32))
    with pytest.raises(ValueError, match="x must be float32"):
        mm(np.zeros((2, 64), np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        mm(np.zeros((64, 2), np.float32).T)
    with pytest.raises(ValueError, match="do not split"):
        C.quantize_q8(np.zeros((2, 48), np.float32), 32, 16)
    with pytest.raises(ValueError, match="mm_q4_0"):
        C.MM["q4_0"](np.zeros((1, 2, 3), np.uint8), np.zeros((1, 2, LANES), np.uint16))
    assert mm(np.zeros((0, 64), np.float32)).shape == (0, LANES)


def test_quant_linear_takes_the_integer_path_for_prefill(monkeypatch: pytest.MonkeyPatch) -> None:
    t, n_in = GGMLType.Q6_K, 512
    raw = random_blocks(t, 300, n_in, np.random.default_rng(4))
    lin = QuantLinear(TensorInfo("w", int(t), (300, n_in), 0, raw))
    x = np.random.default_rng(5).standard_normal((C.MV_MAX_TOKENS + 17, n_in)).astype(np.float32)
    got = lin(x)
    assert lin._mm is not None and got.shape == (len(x), 300)
    q, d = quantized(x, 256)
    xq = (q.astype(np.float64).reshape(len(x), -1, 256) * d[:, :, None]).reshape(x.shape)
    want = xq @ dequantize(raw, t, (300, n_in)).astype(np.float64).T
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())
    monkeypatch.setenv("AGENT_PREFILL", "float")  # the float tiles, for comparison
    off = QuantLinear(TensorInfo("w", int(t), (300, n_in), 0, raw))
    assert off(x).shape == got.shape and off._mm is None


def test_products_follow_their_activations_frozen_or_not() -> None:
    t = GGMLType.Q4_0
    mats = [
        C.MM["q4_0"](
            *repack(
                random_blocks(t, 40, 64, np.random.default_rng(s)),
                t,
                (40, 64),
                release=False,
                kernels=C,
            ).arrays
        )
        for s in (0, 1)
    ]
    x = np.random.default_rng(2).standard_normal((3, 64)).astype(np.float32)
    want = [mm(x.copy()) for mm in mats]
    frozen = x.copy()
    frozen.flags.writeable = False  # as the transformer's normalized activations
    for mm, w in zip(mats, want, strict=True):  # q, k, v of one activation: quantized once
        np.testing.assert_array_equal(mm(frozen), w)
    other = np.random.default_rng(4).standard_normal((3, 64)).astype(np.float32)
    mats[0](other)  # another activation in between (as attention's output before wo)
    np.testing.assert_array_equal(mats[1](frozen), want[1])  # requantized, not the other's rows
    live = x.copy()
    first = mats[0](live)
    live *= 2  # the per-thread scratch of quantized rows is never stale
    np.testing.assert_allclose(mats[0](live), 2 * first, rtol=1e-5, atol=1e-5)
    big = np.random.default_rng(3).standard_normal((40, 64)).astype(np.float32)
    np.testing.assert_array_equal(mats[1](big[:3]), mats[1](big[:3].copy()))
    np.testing.assert_allclose(mats[1](big)[:3], mats[1](big[:3]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(mats[1](big[:3]), mats[1](big[:3].copy()))  # scratch regrown


def test_work_on_an_activation_is_reused_only_when_it_cannot_change() -> None:
    from agent.llm.kernels.memo import once_per_frozen

    frozen = np.ones((2, 8), np.float32)
    frozen.flags.writeable = False
    assert once_per_frozen(frozen, "k", list) is once_per_frozen(frozen, "k", list)
    assert once_per_frozen(frozen, "j", list) is not once_per_frozen(frozen, "k", list)
    live = np.ones((2, 8), np.float32)
    assert once_per_frozen(live, "k", list) is not once_per_frozen(live, "k", list)
    view = frozen[:1]  # a read-only view of another array: not trusted either
    assert once_per_frozen(view, "k", list) is not once_per_frozen(view, "k", list)


def test_isa_is_reported() -> None:
    assert C.ISA in {"avx512-vnni", "avx-vnni", "avx2", "portable"}


def test_decode_takes_the_fused_kernels_this_instruction_set_has() -> None:
    """Plain AVX2 has fused Q4_0 and Q4_K products (without them decode falls back to the float
    matvec, correct but ~1.5x slower): a build that loses them must say so here."""
    fused = set(C.MM_MIN_TOKENS_FOR)
    assert fused <= set(C.FUSED_TYPES)
    assert all(C.MM_MIN_TOKENS_FOR[t] == 1 for t in fused)
    if C.ISA == "avx2":
        assert fused == {"q4_0", "q4_k"}
    if C.ISA == "portable":
        assert fused == set()


SCRIPT = """
import sys
from agent.llm.kernels import c_backend as C
from tests.llm.kernels.test_int8 import check, QUANT_TYPES
assert C.ISA == sys.argv[1], C.ISA
if C.ISA == "avx2":  # the fused Q4_0 / Q4_K products, tested below from 1 token on
    assert sorted(C.MM_MIN_TOKENS_FOR) == ["q4_0", "q4_k"], C.MM_MIN_TOKENS_FOR
for t in QUANT_TYPES:
    for n_tok in (1, 5, 7):
        check(t, 130, 512, n_tok, seed=n_tok, K=C)
print("ok")
"""


@pytest.mark.slow
@pytest.mark.parametrize("march, isa", [("x86-64", "portable"), ("x86-64-v3", "avx2")])
def test_other_instruction_sets_match_the_rule(tmp_path: Path, march: str, isa: str) -> None:
    """The portable and AVX2 builds (compiled here for another -march) on every type."""
    if os.uname().machine not in ("x86_64", "AMD64"):
        pytest.skip("x86 builds")
    env = {**os.environ, "AGENT_KERNELS_MARCH": march, "AGENT_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, isa], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_without_amx_the_vnni_path_matches_the_rule() -> None:
    """On AMX machines Q4_0 takes the tiles from 7 tokens on: AGENT_AMX=0 keeps vpdpbusd, which
    must agree with the rule too (and other machines run it anyway)."""
    if C.AMX != 1:
        pytest.skip("the tiles are not in use here: the other tests cover the VNNI path")
    script = (
        "from agent.llm.kernels import c_backend as C\n"
        "from agent.llm.formats.ggml_types import GGMLType\n"
        "from tests.llm.kernels.test_int8 import check\n"
        "assert C.AMX == -2, C.AMX\n"
        "for n_tok in (7, 8, 12, 16):\n"
        "    check(GGMLType.Q4_0, 300, 512, n_tok, seed=n_tok)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "AGENT_AMX": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_decode_projections_sharing_a_frozen_activation_match_separate_calls() -> None:
    t, n_in = GGMLType.Q4_K, 512
    lins = [
        QuantLinear(TensorInfo("w", int(t), (300, n_in), 0, random_blocks(t, 300, n_in, rng)))
        for rng in (np.random.default_rng(8), np.random.default_rng(9))
    ]
    x = np.random.default_rng(10).standard_normal((1, n_in)).astype(np.float32)
    want = [lin(x.copy()) for lin in lins]  # decode: one row, the matvec path
    frozen = x.copy()
    frozen.flags.writeable = False
    for lin, w in zip(lins, want, strict=True):
        np.testing.assert_array_equal(lin(frozen), w)
