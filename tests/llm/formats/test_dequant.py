"""Dequantization: llama.cpp's own blocks vs the f32 source weights, reference quantizers for the
types the golden files lack (Q4_1, Q5_0), hand-built blocks, and a scalar transcription of every
formula."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.llm.formats.files import open_model_file
from agent.llm.formats.ggml_types import LAYOUTS, GGMLType
from agent.llm.formats.quants import dequantize, dequantize_rows
from tests.golden import model_paths

G = GGMLType
# Relative RMS error of llama.cpp's blocks vs tiny-f32.gguf, from the golden README.
GOLDEN_REL_RMS = {
    G.F16: 0.0002,
    G.Q8_0: 0.0054,
    G.Q6_K: 0.018,
    G.Q5_K: 0.036,
    G.Q5_1: 0.038,
    G.Q5_0: 0.043,
    G.Q4_K: 0.072,
    G.Q4_1: 0.079,
    G.Q4_0: 0.086,
    G.Q3_K: 0.151,
    G.Q2_K: 0.298,
}


def rel_rms(approx: np.ndarray, ref: np.ndarray) -> float:
    return float(
        np.sqrt(
            np.mean((approx.astype(np.float64) - ref) ** 2) / np.mean(ref.astype(np.float64) ** 2)
        )
    )


# -- against the golden files ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden_errors() -> dict[GGMLType, list[float]]:
    paths = {p.name: p for p in model_paths()}
    if "tiny-f32.gguf" not in paths:
        pytest.skip("tiny-f32.gguf not present")
    ref = open_model_file(paths.pop("tiny-f32.gguf"))
    errors: dict[GGMLType, list[float]] = defaultdict(list)
    for path in paths.values():
        for name, t in open_model_file(path).tensors.items():
            if len(t.shape) != 2 or t.type == G.F32:
                continue
            r = ref.tensors[name]
            src = dequantize(r.data, r.type, r.shape)
            errors[G(t.type)].append(rel_rms(dequantize(t.data, t.type, t.shape), src))
    return errors


@pytest.mark.parametrize("qtype", list(GOLDEN_REL_RMS), ids=lambda t: t.name)
def test_golden_blocks_match_the_f32_source(golden_errors: dict, qtype: GGMLType) -> None:
    if qtype not in golden_errors:
        pytest.skip(f"no golden file holds {qtype.name} tensors")
    errs = golden_errors[qtype]
    bound = GOLDEN_REL_RMS[qtype]
    # A wrong formula gives > 0.5; llama.cpp's blocks decoded right give the README's numbers.
    assert max(errs) <= 1.1 * bound, (qtype.name, errs)
    assert float(np.mean(errs)) >= 0.8 * bound, (
        qtype.name,
        errs,
    )  # really quantized, not the source again


def test_golden_file_set_covers_the_main_types(golden_errors: dict) -> None:
    assert {G.F16, G.Q4_0, G.Q8_0, G.Q6_K, G.Q4_K} <= set(golden_errors)


def test_rows_of_a_golden_tensor(golden_errors: dict) -> None:
    paths = {p.name: p for p in model_paths()}
    t = open_model_file(paths["tiny-q4_K_M.gguf"]).tensors["token_embd.weight"]
    full = dequantize(t.data, t.type, t.shape)
    ids = np.array([0, 5, 1023, 5])
    np.testing.assert_array_equal(dequantize_rows(t.data, t.type, t.shape, ids), full[ids])
    np.testing.assert_array_equal(
        dequantize_rows(t.data, t.type, t.shape, slice(10, 20)), full[10:20]
    )


# -- reference quantizers (ggml.c quantize_row_*_reference) for types the golden files lack --------


def f16(x: np.ndarray | float) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, np.float32)).astype("<f2")


def quantize_q4_1(x: np.ndarray) -> np.ndarray:
    """x [n, 32] -> Q4_1 blocks: d = (max - min) / 15, m = min, q = min(15, int((x - min) / d +
    0.5))."""
    lo, hi = x.min(axis=1), x.max(axis=1)
    d = (hi - lo) / 15
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.minimum(15, ((x - lo[:, None]) * inv[:, None] + 0.5).astype(np.int8)).astype(np.uint8)
    out = np.empty((len(x), 20), np.uint8)
    out[:, 0:2] = f16(d).view(np.uint8).reshape(-1, 2)
    out[:, 2:4] = f16(lo).view(np.uint8).reshape(-1, 2)
    out[:, 4:20] = q[:, :16] | (q[:, 16:] << 4)
    return out


def quantize_q5_0(x: np.ndarray) -> np.ndarray:
    """x [n, 32] -> Q5_0 blocks: d = max / -16 (max = the value of largest magnitude),
    q = min(31, int(x / d + 16.5)); bit 4 of element j goes to bit j of qh."""
    mx = x[np.arange(len(x)), np.abs(x).argmax(axis=1)]
    d = mx / -16
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.minimum(31, (x * inv[:, None] + 16.5).astype(np.int8)).astype(np.uint32)
    qh = ((q >> 4) & 1) << np.arange(32, dtype=np.uint32)
    out = np.empty((len(x), 22), np.uint8)
    out[:, 0:2] = f16(d).view(np.uint8).reshape(-1, 2)
    out[:, 2:6] = qh.sum(axis=1, dtype=np.uint32).astype("<u4").view(np.uint8).reshape(-1, 4)
    q8 = (q & 0xF).astype(np.uint8)
    out[:, 6:22] = q8[:, :16] | (q8[:, 16:] << 4)
    return out


@pytest.mark.parametrize(
    "qtype, quantize, rel_bound",
    [(G.Q4_1, quantize_q4_1, (0.06, 0.10)), (G.Q5_0, quantize_q5_0, (0.03, 0.055))],
)
def test_reference_quantizer_round_trip(
    qtype: GGMLType, quantize, rel_bound: tuple[float, float]
) -> None:
    x = np.random.default_rng(1).standard_normal((512, 32)).astype(np.float32)
    blocks = quantize(x)
    y = dequantize(blocks.reshape(-1), qtype, (512, 32))
    lo, hi = rel_bound
    assert lo <= rel_rms(y, x) <= hi  # the README's 0.079 / 0.043 for llama.cpp's own blocks
    d = np.abs(blocks[:, 0:2].copy().view("<f2").astype(np.float32))
    # Each value is within half a step (plus the f16 rounding of d and m) of the input; Q5_0 clips
    # x/d + 16.5 at 31, so a value of the opposite sign to the block's extreme can be off by a step.
    steps = 1.0 if qtype == G.Q5_0 else 0.5
    slack = steps * d + 0.002 * np.abs(x).max(axis=1, keepdims=True)
    assert np.all(np.abs(y - x) <= slack)
    np.testing.assert_array_equal(y, scalar_dequant(qtype, blocks))


def test_q4_1_hand_built_block() -> None:
    b = np.zeros(20, np.uint8)
    b[0:2] = f16(0.5).view(np.uint8)
    b[2:4] = f16(-1.0).view(np.uint8)
    b[4:20] = np.arange(16, dtype=np.uint8) | ((15 - np.arange(16, dtype=np.uint8)) << 4)
    y = dequantize(b, G.Q4_1, (32,))
    expect = np.concatenate([np.arange(16) * 0.5 - 1, (15 - np.arange(16)) * 0.5 - 1])
    np.testing.assert_array_equal(y, expect.astype(np.float32))


def test_q5_0_hand_built_block() -> None:
    b = np.zeros(22, np.uint8)
    b[0:2] = f16(0.25).view(np.uint8)
    b[2:6] = np.frombuffer(
        np.uint32(0x80000001).tobytes(), np.uint8
    )  # fifth bit of elements 0 and 31
    b[6:22] = 0x3F  # low nibbles 0xF, high nibbles 0x3
    y = dequantize(b, G.Q5_0, (32,))
    expect = np.array([15] * 16 + [3] * 16, np.float32)
    expect[0] += 16
    expect[31] += 16
    np.testing.assert_array_equal(y, (expect - 16) * 0.25)
    assert y[0] == (31 - 16) * 0.25 and y[1] == -0.25 and y[16] == -13 * 0.25 and y[31] == 3 * 0.25


# -- a scalar transcription of every block formula (reference §2.2-2.3) ----------------------------


def _h(b: np.ndarray, i: int) -> float:
    return float(b[i : i + 2].copy().view("<f2")[0])


def scalar_block(t: GGMLType, b: np.ndarray) -> list[float]:
    y = [0.0] * LAYOUTS[t].block_size
    if t in (G.Q4_0, G.Q4_1, G.Q5_0, G.Q5_1):
        d = _h(b, 0)
        m = _h(b, 2) if t in (G.Q4_1, G.Q5_1) else 0.0
        qh = (
            int.from_bytes(bytes(b[2 if t == G.Q5_0 else 4 :][:4]), "little")
            if t in (G.Q5_0, G.Q5_1)
            else 0
        )
        qs = b[{G.Q4_0: 2, G.Q4_1: 4, G.Q5_0: 6, G.Q5_1: 8}[t] :]
        for j in range(16):
            x0, x1 = int(qs[j]) & 0xF, int(qs[j]) >> 4
            if t in (G.Q5_0, G.Q5_1):
                x0 |= ((qh >> j) << 4) & 0x10
                x1 |= (qh >> (j + 12)) & 0x10
            off = {G.Q4_0: 8, G.Q5_0: 16}.get(t, 0)
            y[j], y[j + 16] = (x0 - off) * d + m, (x1 - off) * d + m
    elif t == G.Q8_0:
        d = _h(b, 0)
        y = [d * int(v) for v in b[2:34].view(np.int8)]
    elif t == G.Q2_K:
        d, dmin, sc, q = _h(b, 80), _h(b, 82), b[0:16], b[16:80]
        k, i = 0, 0
        for n in (0, 32):
            for shift in (0, 2, 4, 6):
                for half in (0, 16):
                    s = int(sc[i])
                    i += 1
                    for j in range(16):
                        y[k] = d * (s & 0xF) * ((int(q[n + half + j]) >> shift) & 3) - dmin * (
                            s >> 4
                        )
                        k += 1
    elif t == G.Q3_K:
        hm, q, s, d = b[0:32], b[32:96], b[96:108], _h(b, 108)
        scales = []
        for i in range(16):
            low = (int(s[i]) & 0xF) if i < 8 else (int(s[i - 8]) >> 4)
            high = (int(s[8 + i % 4]) >> (2 * (i // 4))) & 3
            scales.append((low | (high << 4)) - 32)
        k, isc, m = 0, 0, 1
        for n in (0, 32):
            for shift in (0, 2, 4, 6):
                for half in (0, 16):
                    for j in range(16):
                        v = (int(q[n + half + j]) >> shift) & 3
                        y[k] = d * scales[isc] * (v - (0 if int(hm[half + j]) & m else 4))
                        k += 1
                    isc += 1
                m <<= 1
    elif t in (G.Q4_K, G.Q5_K):
        d, dmin, s = _h(b, 0), _h(b, 2), [int(v) for v in b[4:16]]

        def sm(j: int) -> tuple[int, int]:
            if j < 4:
                return s[j] & 63, s[j + 4] & 63
            return (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4)

        qh, ql = (b[16:48], b[48:176]) if t == G.Q5_K else (None, b[16:144])
        for c in range(4):
            (s1, m1), (s2, m2) = sm(2 * c), sm(2 * c + 1)
            for j in range(32):
                lo, hi = int(ql[32 * c + j]) & 0xF, int(ql[32 * c + j]) >> 4
                if qh is not None:
                    lo += 16 if int(qh[j]) & (1 << 2 * c) else 0
                    hi += 16 if int(qh[j]) & (2 << 2 * c) else 0
                y[64 * c + j] = d * s1 * lo - dmin * m1
                y[64 * c + 32 + j] = d * s2 * hi - dmin * m2
    elif t == G.Q6_K:
        d = _h(b, 208)
        for n in (0, 1):
            ql, qh, sc = b[64 * n :], b[128 + 32 * n :], b[192 + 8 * n : 200 + 8 * n].view(np.int8)
            for j in range(32):
                i = j // 16
                q1 = ((int(ql[j]) & 0xF) | (((int(qh[j]) >> 0) & 3) << 4)) - 32
                q2 = ((int(ql[j + 32]) & 0xF) | (((int(qh[j]) >> 2) & 3) << 4)) - 32
                q3 = ((int(ql[j]) >> 4) | (((int(qh[j]) >> 4) & 3) << 4)) - 32
                q4 = ((int(ql[j + 32]) >> 4) | (((int(qh[j]) >> 6) & 3) << 4)) - 32
                y[128 * n + j] = d * int(sc[i]) * q1
                y[128 * n + j + 32] = d * int(sc[i + 2]) * q2
                y[128 * n + j + 64] = d * int(sc[i + 4]) * q3
                y[128 * n + j + 96] = d * int(sc[i + 6]) * q4
    return y


def scalar_dequant(t: GGMLType, blocks: np.ndarray) -> np.ndarray:
    return np.array(
        [scalar_block(t, b) for b in blocks.reshape(-1, LAYOUTS[t].type_size)], np.float32
    )


QUANT_TYPES = [t for t in LAYOUTS if t not in (G.F32, G.F16)]


def finite_blocks(t: GGMLType, raw: bytes) -> np.ndarray:
    """Random bytes with the f16 scale fields forced finite (random f16 bytes can be inf/NaN)."""
    b = np.frombuffer(raw, np.uint8).reshape(-1, LAYOUTS[t].type_size).copy()
    fields = {G.Q2_K: (80, 82), G.Q3_K: (108,), G.Q6_K: (208,)}.get(
        t, (0, 2) if t in (G.Q4_1, G.Q5_1, G.Q4_K, G.Q5_K) else (0,)
    )
    for off in fields:
        b[:, off + 1] &= 0x3B  # exponent < 0b11110: finite, |x| < 2
    return b


@settings(max_examples=40, deadline=None)
@given(t=st.sampled_from(QUANT_TYPES), data=st.data())
def test_vectorized_dequantizers_match_the_scalar_formulas(
    t: GGMLType, data: st.DataObject
) -> None:
    n = data.draw(st.integers(1, 3))
    raw = data.draw(st.binary(min_size=n * LAYOUTS[t].type_size, max_size=n * LAYOUTS[t].type_size))
    blocks = finite_blocks(t, raw)
    got = dequantize(blocks.reshape(-1), t, (n, LAYOUTS[t].block_size))
    np.testing.assert_allclose(got, scalar_dequant(t, blocks), rtol=1e-6, atol=1e-6)


def test_random_fixture_blocks_decode_like_the_formulas() -> None:
    from agent.llm.formats.fixtures import random_blocks

    rng = np.random.default_rng(0)
    for t in QUANT_TYPES:
        b = random_blocks(rng, t, 4)
        np.testing.assert_allclose(
            dequantize(b.reshape(-1), t, (4, LAYOUTS[t].block_size)),
            scalar_dequant(t, b),
            rtol=1e-6,
            atol=1e-7,
        )


def test_malformed_dequantize_requests() -> None:
    with pytest.raises(ValueError, match="17 bytes cannot hold a Q4_0 tensor of shape \\(32,\\)"):
        dequantize(np.zeros(17, np.uint8), G.Q4_0, (32,))
    with pytest.raises(ValueError, match="rows a multiple of 256"):
        dequantize(np.zeros(144, np.uint8), G.Q4_K, (2, 128))
    with pytest.raises(ValueError, match="activation-only"):
        dequantize(np.zeros(292, np.uint8), G.Q8_K, (256,))
    with pytest.raises(ValueError):
        dequantize(np.zeros(4, np.uint8), 5, (1,))  # Q4_2: removed from ggml, not a type at all
