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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.llm.formats.ggml_types import LAYOUTS, GGMLType
from agent.llm.kernels.layout import LANES
from agent.llm.kernels.runtime import backend

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


# A field of a repacked matrix: its shape after [n_groups, n_blocks], its dtype, and how to fill
# it for a piece of rows: fill(blocks [rows, n_blocks, type_size], out [groups, ...], kernels).
Field = tuple[tuple[int, ...], Any, Callable[[np.ndarray, np.ndarray, Any], None]]


def _bytes(start: int, width: int, dtype: Any = np.uint8) -> Field:
    """Bytes start..start+width of every block, lane-interleaved: [width, LANES]."""

    def fill(blocks: np.ndarray, out: np.ndarray, kernels: Any) -> None:
        kernels.interleave(blocks, start, out.view(np.uint8))

    return (width, LANES), dtype, fill


def _half(start: int) -> Field:
    """The f16 at byte ``start`` as its uint16 bits (the kernels widen them): [LANES]."""

    def fill(blocks: np.ndarray, out: np.ndarray, kernels: Any) -> None:
        kernels.interleave_u16(blocks, start, out)

    return (LANES,), np.uint16, fill


def _derived(
    start: int, width: int, rows: int, dtype: Any, transform: Callable[[np.ndarray], np.ndarray]
) -> Field:
    """``transform`` of the interleaved bytes start..start+width: [rows, LANES] (K-quant scales)."""

    def fill(blocks: np.ndarray, out: np.ndarray, kernels: Any) -> None:
        raw = np.empty((*out.shape[:2], width, LANES), np.uint8)
        kernels.interleave(blocks, start, raw)
        out[...] = transform(raw)

    return (rows, LANES), dtype, fill


def _k4_scales_mins(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K: 12 interleaved scale bytes [g, b, 12, lane] -> six-bit scales and mins [g, b, 8,
    lane]."""
    sc = np.concatenate(
        [s[:, :, 0:4] & 63, (s[:, :, 8:12] & 0xF) | ((s[:, :, 0:4] >> 6) << 4)], axis=2
    )
    mn = np.concatenate(
        [s[:, :, 4:8] & 63, (s[:, :, 8:12] >> 4) | ((s[:, :, 4:8] >> 6) << 4)], axis=2
    )
    return sc, mn


def _q3_k_scales(s: np.ndarray) -> np.ndarray:
    """Q3_K: 12 interleaved bytes [g, b, 12, lane] -> int8 [g, b, 16, lane] signed six-bit
    scales."""
    low = np.concatenate([s[:, :, 0:8] & 0xF, s[:, :, 0:8] >> 4], axis=2)
    high = np.stack([(s[:, :, 8 + i % 4] >> (2 * (i // 4))) & 3 for i in range(16)], axis=2)
    return ((low | (high << 4)).astype(np.int16) - 32).astype(np.int8)


_K4_SCALES = _derived(4, 12, 8, np.uint8, lambda s: _k4_scales_mins(s)[0])
_K4_MINS = _derived(4, 12, 8, np.uint8, lambda s: _k4_scales_mins(s)[1])

# The fields of each type's repacked matrix, in the argument order of its kernels (kernels_numba,
# kernels_c); byte offsets as in ggml's blocks.
FIELDS: dict[GGMLType, tuple[Field, ...]] = {
    GGMLType.Q4_0: (_bytes(2, 16), _half(0)),
    GGMLType.Q4_1: (_bytes(4, 16), _half(0), _half(2)),
    GGMLType.Q5_0: (_bytes(6, 16), _bytes(2, 4), _half(0)),
    GGMLType.Q5_1: (_bytes(8, 16), _bytes(4, 4), _half(0), _half(2)),
    GGMLType.Q8_0: (_bytes(2, 32, np.int8), _half(0)),
    GGMLType.Q2_K: (_bytes(16, 64), _bytes(0, 16), _half(80), _half(82)),
    GGMLType.Q3_K: (
        _bytes(32, 64),
        _bytes(0, 32),
        _derived(96, 12, 16, np.int8, _q3_k_scales),
        _half(108),
    ),
    GGMLType.Q4_K: (_bytes(16, 128), _K4_SCALES, _K4_MINS, _half(0), _half(2)),
    GGMLType.Q5_K: (_bytes(48, 128), _bytes(16, 32), _K4_SCALES, _K4_MINS, _half(0), _half(2)),
    GGMLType.Q6_K: (_bytes(0, 128), _bytes(128, 64), _bytes(192, 16, np.int8), _half(208)),
}
REPACKED_TYPES = frozenset(FIELDS)


def repack(
    raw: np.ndarray, type_id: int, shape: tuple[int, ...], release: bool = True, kernels: Any = None
) -> PackedMatrix:
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
    if (
        n_in % layout.block_size
        or raw.nbytes != n_out * n_in // layout.block_size * layout.type_size
    ):
        raise ValueError(f"{raw.nbytes} bytes do not hold a {t.name} matrix of shape {shape}")
    if kernels is None:
        kernels = backend()
        if kernels is None:
            raise ValueError("no kernel module is available to repack with")
    nb = n_in // layout.block_size
    blocks = raw.reshape(n_out, nb, layout.type_size)
    n_groups = -(-n_out // LANES)
    arrays = tuple(np.empty((n_groups, nb, *tail), dtype) for tail, dtype, _ in FIELDS[t])
    for r0 in range(0, n_out, CHUNK_ROWS):  # each piece straight into its rows of the arrays
        piece = blocks[r0 : r0 + CHUNK_ROWS]
        groups = slice(r0 // LANES, -(-(r0 + len(piece)) // LANES))
        for (_, _, fill), whole in zip(FIELDS[t], arrays, strict=False):
            fill(piece, whole[groups], kernels)
        if release:
            release_pages(piece)
    return PackedMatrix(t, n_out, n_in, arrays)


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
