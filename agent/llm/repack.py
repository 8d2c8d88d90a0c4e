"""Repacking quantized blocks, at load time, into a layout the numba kernels vectorize well.

ggml stores a matrix row by row, block after block, each block's scale next to its codes. A
per-row dot product then needs a horizontal sum for every 32-value block. Here rows are grouped
by ``LANES`` and every field is stored with the row index last (``[group, block, field, lane]``):
the kernels run SIMD lanes across rows, broadcast one activation to all of them, and apply a
block's scale lane-wise, so the only horizontal work is none at all.

The codes keep their packed width (4-bit pairs stay one byte); only the f16 scales widen to f32
and K-quant scales are unpacked to a byte each, so a repacked matrix is 1.01-1.13 x its file
bytes. Rows are padded with zero blocks up to a multiple of ``LANES``.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np

from agent.llm.ggml_types import LAYOUTS, GGMLType
from agent.llm.quants import k4_scales_mins

LANES = 128  # rows per group: one group's codes for a 2048-wide row stay in L2 while it is read
# Groups repacked per step: bounds the temporary copies made while repacking a large matrix.
_CHUNK_GROUPS = 8


@dataclass
class PackedMatrix:
    type: GGMLType
    n_out: int  # real rows (the arrays hold n_groups * LANES, the tail padded with zeros)
    n_in: int
    arrays: tuple[np.ndarray, ...]  # type-specific fields, each [n_groups, n_blocks, ..., LANES]

    @property
    def n_groups(self) -> int:
        return int(self.arrays[0].shape[0])

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.arrays)


def _f16(b: np.ndarray) -> np.ndarray:
    """[..., 2] uint8 little-endian f16 fields -> float32 [...]."""
    return np.ascontiguousarray(b).view("<f2")[..., 0].astype(np.float32)


def _lanes_last(a: np.ndarray) -> np.ndarray:
    """[g, lane, block, *field] -> [g, block, *field, lane]."""
    order = (0, 2, *range(3, a.ndim), 1)
    return np.ascontiguousarray(a.transpose(order))


def _fields_q4_0(b: np.ndarray) -> list[np.ndarray]:
    return [b[..., 2:18], _f16(b[..., 0:2])]


def _fields_q4_1(b: np.ndarray) -> list[np.ndarray]:
    return [b[..., 4:20], _f16(b[..., 0:2]), _f16(b[..., 2:4])]


def _fields_q5_0(b: np.ndarray) -> list[np.ndarray]:
    return [b[..., 6:22], b[..., 2:6], _f16(b[..., 0:2])]


def _fields_q5_1(b: np.ndarray) -> list[np.ndarray]:
    return [b[..., 8:24], b[..., 4:8], _f16(b[..., 0:2]), _f16(b[..., 2:4])]


def _fields_q8_0(b: np.ndarray) -> list[np.ndarray]:
    return [b[..., 2:34].view(np.int8), _f16(b[..., 0:2])]


def _fields_q2_k(b: np.ndarray) -> list[np.ndarray]:
    return [b[..., 16:80], b[..., 0:16], _f16(b[..., 80:82]), _f16(b[..., 82:84])]


def _q3_k_scales(s: np.ndarray) -> np.ndarray:
    """[..., 12] packed bytes -> int8 [..., 16] signed six-bit scales."""
    low = np.concatenate([s[..., 0:8] & 0xF, s[..., 0:8] >> 4], axis=-1)
    i = np.arange(16)
    high = (s[..., 8 + (i % 4)] >> (2 * (i // 4)).astype(np.uint8)) & 3
    return ((low | (high << 4)).astype(np.int16) - 32).astype(np.int8)


def _fields_q3_k(b: np.ndarray) -> list[np.ndarray]:
    return [b[..., 32:96], b[..., 0:32], _q3_k_scales(b[..., 96:108]), _f16(b[..., 108:110])]


def _k4_fields(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lead = b.shape[:-1]
    sc, mn = k4_scales_mins(b[..., 4:16].reshape(-1, 12))
    return sc.reshape(*lead, 8), mn.reshape(*lead, 8), _f16(b[..., 0:2]), _f16(b[..., 2:4])


def _fields_q4_k(b: np.ndarray) -> list[np.ndarray]:
    return [b[..., 16:144], *_k4_fields(b)]


def _fields_q5_k(b: np.ndarray) -> list[np.ndarray]:
    return [b[..., 48:176], b[..., 16:48], *_k4_fields(b)]


def _fields_q6_k(b: np.ndarray) -> list[np.ndarray]:
    return [b[..., 0:128], b[..., 128:192], b[..., 192:208].view(np.int8), _f16(b[..., 208:210])]


# Field order here is the argument order of the matching kernels in kernels_numba.
FIELDS = {
    GGMLType.Q4_0: _fields_q4_0, GGMLType.Q4_1: _fields_q4_1, GGMLType.Q5_0: _fields_q5_0,
    GGMLType.Q5_1: _fields_q5_1, GGMLType.Q8_0: _fields_q8_0, GGMLType.Q2_K: _fields_q2_k,
    GGMLType.Q3_K: _fields_q3_k, GGMLType.Q4_K: _fields_q4_k, GGMLType.Q5_K: _fields_q5_k,
    GGMLType.Q6_K: _fields_q6_k,
}


def repack(raw: np.ndarray, type_id: int, shape: tuple[int, int], release: bool = True) -> PackedMatrix:
    """Lane-interleave the blocks of a [n_out, n_in] matrix stored as ``raw`` uint8 bytes.

    With ``release`` (the default), pages of a memory-mapped ``raw`` are handed back to the OS as
    they are copied, so the file's bytes are not resident twice.
    """
    t = GGMLType(type_id)
    if t not in FIELDS:
        raise ValueError(f"no repacked layout for tensor type {t.name}")
    n_out, n_in = shape
    layout = LAYOUTS[t]
    if n_in % layout.block_size:
        raise ValueError(f"row length {n_in} is not a multiple of the {t.name} block size {layout.block_size}")
    nb = n_in // layout.block_size
    blocks = raw.reshape(n_out, nb, layout.type_size)
    n_groups = -(-n_out // LANES)
    out: list[np.ndarray] | None = None
    for g0 in range(0, n_groups, _CHUNK_GROUPS):
        g1 = min(n_groups, g0 + _CHUNK_GROUPS)
        rows = blocks[g0 * LANES:g1 * LANES]
        if rows.shape[0] < (g1 - g0) * LANES:  # zero blocks decode to zeros in every type
            pad = np.zeros(((g1 - g0) * LANES - rows.shape[0], nb, layout.type_size), np.uint8)
            rows = np.concatenate([rows, pad])
        rows = np.ascontiguousarray(rows).reshape(g1 - g0, LANES, nb, layout.type_size)
        parts = [_lanes_last(f) for f in FIELDS[t](rows)]
        if out is None:
            out = [np.empty((n_groups, *p.shape[1:]), p.dtype) for p in parts]
        for dst, p in zip(out, parts):
            dst[g0:g1] = p
        if release:
            release_pages(blocks[g0 * LANES:g1 * LANES])
    assert out is not None
    return PackedMatrix(t, n_out, n_in, tuple(out))


def _mmap_root(a: np.ndarray) -> tuple[mmap.mmap, int] | None:
    """The mmap a numpy view ultimately looks at, and the view's byte offset into it."""
    base: object = a
    root = a
    while isinstance(base, np.ndarray):
        root = base
        base = base.base
    if not isinstance(base, mmap.mmap):
        return None
    return base, a.ctypes.data - root.ctypes.data


def release_pages(a: np.ndarray) -> None:
    """Drop a memory-mapped view's pages from this process's resident set (MADV_DONTNEED).

    Only for read-only file mappings: the data stays in the page cache and is simply faulted in
    again if read. Arrays that are not file mappings are left alone (DONTNEED would zero them).
    """
    found = _mmap_root(a) if a.size else None
    if found is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    mm, offset = found
    if not memoryview(mm).readonly:  # a private writable mapping would lose its changes
        return
    start = offset - offset % mmap.PAGESIZE
    end = min(len(mm), offset + a.nbytes)
    end += (-end) % mmap.PAGESIZE
    try:
        mm.madvise(mmap.MADV_DONTNEED, start, min(end, len(mm)) - start)
    except (OSError, ValueError):
        pass  # only a memory-use optimization
