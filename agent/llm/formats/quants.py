"""Reference dequantization of every ggml block type, vectorized with numpy.

Each function takes the raw blocks as a uint8 array [n_blocks, type_size] and returns float32
[n_blocks, block_size]. Layouts follow ggml's structs (reference/formats-and-engine.md §2):
the clear, slow path that the fast kernels are tested against.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from agent.llm.formats.ggml_types import LAYOUTS, GGMLType, tensor_nbytes


def _f16(b: np.ndarray) -> np.ndarray:
    """Little-endian f16 fields (a [n, 2] uint8 slice) as float32 [n, 1]."""
    return np.ascontiguousarray(b).view("<f2").astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """[n, 16] bytes -> [n, 32] values: low nibbles are elements 0-15, high nibbles 16-31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8)


def _high_bits32(qh: np.ndarray) -> np.ndarray:
    """[n, 4] bytes holding one bit per element -> [n, 32] of 0/1."""
    bits = np.ascontiguousarray(qh).view("<u4")
    return ((bits >> np.arange(32, dtype=np.uint32)) & 1).astype(np.int8)


def deq_q4_0(b: np.ndarray) -> np.ndarray:
    return _f16(b[:, 0:2]) * (_nibbles(b[:, 2:18]) - 8)


def deq_q4_1(b: np.ndarray) -> np.ndarray:
    return _f16(b[:, 0:2]) * _nibbles(b[:, 4:20]) + _f16(b[:, 2:4])


def deq_q5_0(b: np.ndarray) -> np.ndarray:
    q = _nibbles(b[:, 6:22]) | (_high_bits32(b[:, 2:6]) << 4)
    return _f16(b[:, 0:2]) * (q - 16)


def deq_q5_1(b: np.ndarray) -> np.ndarray:
    q = _nibbles(b[:, 8:24]) | (_high_bits32(b[:, 4:8]) << 4)
    return _f16(b[:, 0:2]) * q + _f16(b[:, 2:4])


def deq_q8_0(b: np.ndarray) -> np.ndarray:
    return _f16(b[:, 0:2]) * b[:, 2:34].view(np.int8)


def _two_bit_planes(qs: np.ndarray) -> np.ndarray:
    """Q2_K/Q3_K low bits: [n, 64] bytes -> [n, 256]; value k = 128*h + 32*s + l takes bits 2s of
    qs[32h+l]."""
    q = qs.reshape(-1, 2, 1, 32) >> (2 * np.arange(4, dtype=np.uint8)).reshape(1, 1, 4, 1)
    return (q & 3).reshape(-1, 256).astype(np.int8)


def deq_q2_k(b: np.ndarray) -> np.ndarray:
    scales, qs = b[:, 0:16], b[:, 16:80]
    d, dmin = _f16(b[:, 80:82]), _f16(b[:, 82:84])
    q = _two_bit_planes(qs).reshape(-1, 16, 16).astype(np.float32)
    sc = (scales & 0xF).astype(np.float32)[:, :, None]
    mn = (scales >> 4).astype(np.float32)[:, :, None]
    return (d[:, :, None] * sc * q - dmin[:, :, None] * mn).reshape(-1, 256)


def _q3_k_scales(s: np.ndarray) -> np.ndarray:
    """12 packed bytes -> 16 signed 6-bit scales."""
    low = np.concatenate([s[:, 0:8] & 0xF, s[:, 0:8] >> 4], axis=1)
    i = np.arange(16)
    high = (s[:, 8 + (i % 4)] >> (2 * (i // 4)).astype(np.uint8)) & 3
    return (low | (high << 4)).astype(np.int8) - 32


def deq_q3_k(b: np.ndarray) -> np.ndarray:
    hmask, qs, scales, d = b[:, 0:32], b[:, 32:96], b[:, 96:108], _f16(b[:, 108:110])
    q = _two_bit_planes(qs)
    # Value k = 128*h + 32*s + l uses hmask bit (4h + s) of byte l; a clear bit means subtract 4.
    hbits = (hmask[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1  # [n, 8, 32]
    q = q - 4 * (1 - hbits.reshape(-1, 256).astype(np.int8))
    sc = _q3_k_scales(scales).astype(np.float32)
    return (d[:, :, None] * sc[:, :, None] * q.reshape(-1, 16, 16)).reshape(-1, 256)


def k4_scales_mins(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K: 12 packed bytes -> 8 six-bit scales and 8 six-bit mins (uint8 [n, 8] each)."""
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return sc, mn


def _k4_nibbles(qs: np.ndarray) -> np.ndarray:
    """[n, 128] bytes -> [n, 256]: chunk c holds low nibbles of qs[32c:32c+32] then their high
    nibbles."""
    q = qs.reshape(-1, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
    return (q & 0xF).reshape(-1, 256).astype(np.int8)


def _apply_k_scales(q: np.ndarray, b: np.ndarray, scales: np.ndarray) -> np.ndarray:
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    sc, mn = k4_scales_mins(scales)
    y = d[:, :, None] * sc[:, :, None] * q.reshape(-1, 8, 32) - dmin[:, :, None] * mn[:, :, None]
    return y.reshape(-1, 256).astype(np.float32)


def deq_q4_k(b: np.ndarray) -> np.ndarray:
    return _apply_k_scales(_k4_nibbles(b[:, 16:144]), b, b[:, 4:16])


def deq_q5_k(b: np.ndarray) -> np.ndarray:
    qh, ql = b[:, 16:48], b[:, 48:176]
    # Sub-block j (of 32) takes bit j of qh[l] as its fifth bit.
    high = (qh[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1  # [n, 8, 32]
    q = _k4_nibbles(ql) | (high.reshape(-1, 256).astype(np.int8) << 4)
    return _apply_k_scales(q, b, b[:, 4:16])


def deq_q6_k(b: np.ndarray) -> np.ndarray:
    ql, qh, scales, d = b[:, 0:128], b[:, 128:192], b[:, 192:208].view(np.int8), _f16(b[:, 208:210])
    ql = ql.reshape(-1, 2, 2, 32)  # [n, half, lo/hi 32-byte run, l]
    qh = qh.reshape(-1, 2, 1, 32)
    # Within a half: quarter r=0..3 is (ql[l] lo, ql[l+32] lo, ql[l] hi, ql[l+32] hi) with qh bits
    # 2r.
    low = np.stack(
        [ql[:, :, 0] & 0xF, ql[:, :, 1] & 0xF, ql[:, :, 0] >> 4, ql[:, :, 1] >> 4], axis=2
    )
    high = (qh >> (2 * np.arange(4, dtype=np.uint8)).reshape(1, 1, 4, 1)) & 3
    q = (low | (high << 4)).astype(np.int8) - 32  # [n, 2, 4, 32]
    sc = scales.astype(np.float32).reshape(-1, 16, 1)
    return (d[:, :, None] * sc * q.reshape(-1, 16, 16)).reshape(-1, 256)


DEQUANTIZERS: dict[GGMLType, Callable[[np.ndarray], np.ndarray]] = {
    GGMLType.Q4_0: deq_q4_0,
    GGMLType.Q4_1: deq_q4_1,
    GGMLType.Q5_0: deq_q5_0,
    GGMLType.Q5_1: deq_q5_1,
    GGMLType.Q8_0: deq_q8_0,
    GGMLType.Q2_K: deq_q2_k,
    GGMLType.Q3_K: deq_q3_k,
    GGMLType.Q4_K: deq_q4_k,
    GGMLType.Q5_K: deq_q5_k,
    GGMLType.Q6_K: deq_q6_k,
}


def dequantize(raw: np.ndarray, type_id: int, shape: tuple[int, ...]) -> np.ndarray:
    """float32 array of ``shape`` from the raw bytes of a tensor of type ``type_id``."""
    t = GGMLType(type_id)
    if t not in LAYOUTS:
        raise ValueError(f"{t.name} is an activation-only type; model tensors never hold it")
    expected = tensor_nbytes(t, shape)
    if raw.nbytes != expected or shape[-1] % LAYOUTS[t].block_size:
        raise ValueError(
            f"{raw.nbytes} bytes cannot hold a {t.name} tensor of shape {tuple(shape)} "
            f"({expected} bytes, rows a multiple of {LAYOUTS[t].block_size})"
        )
    if t == GGMLType.F32:
        return raw.view("<f4").reshape(shape).astype(np.float32)
    if t == GGMLType.F16:
        return raw.view("<f2").reshape(shape).astype(np.float32)
    layout = LAYOUTS[t]
    blocks = raw.reshape(-1, layout.type_size)
    return DEQUANTIZERS[t](blocks).astype(np.float32, copy=False).reshape(shape)


def dequantize_rows(
    raw: np.ndarray, type_id: int, shape: tuple[int, ...], rows: slice | np.ndarray
) -> np.ndarray:
    """Only some rows of a 2-D tensor (token embeddings are looked up a row at a time)."""
    n_rows, n_cols = shape
    row_bytes = raw.nbytes // n_rows
    sel = raw.reshape(n_rows, row_bytes)[rows]
    sel = np.ascontiguousarray(sel.reshape(-1, row_bytes))
    return dequantize(sel.reshape(-1), type_id, (sel.shape[0], n_cols))
