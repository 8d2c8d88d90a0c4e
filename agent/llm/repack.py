"""Repacking quantized blocks, at load time, into a layout the kernels vectorize well.

ggml stores a matrix row by row, block after block, each block's scale next to its codes. A
per-row dot product then needs a horizontal sum for every 32-value block. Here rows are grouped
by ``LANES`` and every field is stored with the row index last (``[group, block, field, lane]``):
the kernels run SIMD lanes across rows, broadcast one activation to all of them, and apply a
block's scale lane-wise, so no horizontal sums are needed at all.

The codes keep their packed width (4-bit pairs stay one byte) and f16 scales stay f16; only
K-quant six-bit scales are unpacked to a byte each, so a repacked matrix is 1.0-1.05 x its file
bytes. Rows are padded with zero blocks up to a multiple of ``LANES``.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np
from typing import Any

from agent.llm.ggml_types import LAYOUTS, GGMLType

LANES = 128  # rows per group: one group's codes for a 2048-wide row stay in L2 while it is read
# Rows repacked at a time: the source pages of each piece are handed back before the next is
# read, so repacking a matrix never holds it twice (the 32000-row output matrix would).
CHUNK_ROWS = 8 * LANES


@dataclass
class PackedMatrix:
    type: GGMLType
    n_out: int  # real rows (the arrays hold n_groups * LANES, the tail padded with zeros)
    n_in: int
    arrays: tuple[np.ndarray, ...]  # type-specific fields, each [n_groups, n_blocks, ..., LANES];
    # f16 scales are kept as their uint16 bits

    @property
    def n_groups(self) -> int:
        return int(self.arrays[0].shape[0])

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.arrays)


class _Fields:
    """Lane-interleaved copies of a matrix's blocks, field by field (byte offsets as in ggml)."""

    def __init__(self, blocks: np.ndarray, kernels: Any):
        self.blocks, self.kernels = blocks, kernels
        self.n_groups = -(-blocks.shape[0] // LANES)
        self.nb = blocks.shape[1]

    def bytes(self, start: int, width: int) -> np.ndarray:
        out = np.empty((self.n_groups, self.nb, width, LANES), np.uint8)
        self.kernels.interleave(self.blocks, start, out)
        return out

    def f16(self, start: int) -> np.ndarray:
        out = np.empty((self.n_groups, self.nb, LANES), np.uint16)
        self.kernels.interleave_u16(self.blocks, start, out)
        return out  # f16 bits: the kernels widen them through a table


def _k4_scales_mins(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K: 12 interleaved scale bytes [g, b, 12, lane] -> six-bit scales and mins [g, b, 8, lane]."""
    sc = np.concatenate([s[:, :, 0:4] & 63, (s[:, :, 8:12] & 0xF) | ((s[:, :, 0:4] >> 6) << 4)], axis=2)
    mn = np.concatenate([s[:, :, 4:8] & 63, (s[:, :, 8:12] >> 4) | ((s[:, :, 4:8] >> 6) << 4)], axis=2)
    return sc, mn


def _q3_k_scales(s: np.ndarray) -> np.ndarray:
    """Q3_K: 12 interleaved bytes [g, b, 12, lane] -> int8 [g, b, 16, lane] signed six-bit scales."""
    low = np.concatenate([s[:, :, 0:8] & 0xF, s[:, :, 0:8] >> 4], axis=2)
    high = np.stack([(s[:, :, 8 + i % 4] >> (2 * (i // 4))) & 3 for i in range(16)], axis=2)
    return ((low | (high << 4)).astype(np.int16) - 32).astype(np.int8)


def _fields(t: GGMLType, f: _Fields) -> tuple[np.ndarray, ...]:
    """The arrays of a repacked matrix, in the argument order of its kernels (kernels_numba, kernels_c)."""
    if t == GGMLType.Q4_0:
        return f.bytes(2, 16), f.f16(0)
    if t == GGMLType.Q4_1:
        return f.bytes(4, 16), f.f16(0), f.f16(2)
    if t == GGMLType.Q5_0:
        return f.bytes(6, 16), f.bytes(2, 4), f.f16(0)
    if t == GGMLType.Q5_1:
        return f.bytes(8, 16), f.bytes(4, 4), f.f16(0), f.f16(2)
    if t == GGMLType.Q8_0:
        return f.bytes(2, 32).view(np.int8), f.f16(0)
    if t == GGMLType.Q2_K:
        return f.bytes(16, 64), f.bytes(0, 16), f.f16(80), f.f16(82)
    if t == GGMLType.Q3_K:
        return f.bytes(32, 64), f.bytes(0, 32), _q3_k_scales(f.bytes(96, 12)), f.f16(108)
    if t == GGMLType.Q4_K:
        return (f.bytes(16, 128), *_k4_scales_mins(f.bytes(4, 12)), f.f16(0), f.f16(2))
    if t == GGMLType.Q5_K:
        return (f.bytes(48, 128), f.bytes(16, 32), *_k4_scales_mins(f.bytes(4, 12)), f.f16(0), f.f16(2))
    if t == GGMLType.Q6_K:
        return f.bytes(0, 128), f.bytes(128, 64), f.bytes(192, 16).view(np.int8), f.f16(208)
    raise ValueError(f"no repacked layout for tensor type {t.name}")


REPACKED_TYPES = frozenset({GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q8_0,
                            GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K})


def repack(raw: np.ndarray, type_id: int, shape: tuple[int, int], release: bool = True,
           kernels: Any = None) -> PackedMatrix:
    """Lane-interleave the blocks of a [n_out, n_in] matrix stored as ``raw`` uint8 bytes.

    With ``release`` (the default), the pages of a memory-mapped ``raw`` are handed back to the OS
    as soon as each piece is copied, so the file's bytes are not resident twice. ``kernels`` is
    the kernel module whose interleave functions do the copying (default: the engine's).
    """
    t = GGMLType(type_id)
    if t not in REPACKED_TYPES:
        raise ValueError(f"no repacked layout for tensor type {t.name}")
    n_out, n_in = shape
    layout = LAYOUTS[t]
    if n_in % layout.block_size or raw.nbytes != n_out * n_in // layout.block_size * layout.type_size:
        raise ValueError(f"{raw.nbytes} bytes do not hold a {t.name} matrix of shape {shape}")
    if kernels is None:
        from agent.llm.kernels import backend

        kernels = backend()
        if kernels is None:
            raise ValueError("no kernel module is available to repack with")
    blocks = raw.reshape(n_out, n_in // layout.block_size, layout.type_size)
    n_groups = -(-n_out // LANES)
    arrays: list[np.ndarray] = []
    for r0 in range(0, n_out, CHUNK_ROWS):
        piece = blocks[r0:r0 + CHUNK_ROWS]
        fields = _fields(t, _Fields(piece, kernels))
        if not arrays:
            arrays = [np.empty((n_groups, *f.shape[1:]), f.dtype) for f in fields]
        g0 = r0 // LANES
        for whole, part in zip(arrays, fields):
            whole[g0:g0 + len(part)] = part
        if release:
            release_pages(piece)
    return PackedMatrix(t, n_out, n_in, tuple(arrays))


def _mmap_root(a: np.ndarray) -> tuple[mmap.mmap, int] | None:
    """The mmap a numpy view ultimately looks at, and the view's byte offset into it."""
    base: object = a
    while isinstance(base, (np.ndarray, memoryview)):
        base = base.obj if isinstance(base, memoryview) else base.base
    if not isinstance(base, mmap.mmap):
        return None
    start = np.frombuffer(base, np.uint8, count=1).ctypes.data
    return base, a.ctypes.data - start


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
