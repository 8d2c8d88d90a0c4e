"""numba kernels on lane-interleaved quantized matrices (see ``agent.llm.kernels.repack``).

Two kernels per block type, both reading the packed codes directly:

* ``mv_<type>(*fields, tab, x, xs, out)``: ``out[t] = W @ x[t]`` for a few tokens (decode).
  SIMD lanes run across the ``LANES`` rows of a group; each activation is broadcast to every
  lane, so a block's partial sums sit lane-wise in ``s`` and its scale is applied with one vector
  multiply.
  Offsets and minimums are folded in through ``xs``, the sums of ``x`` over each scale's
  sub-block (as ggml's ``bsums``), so the inner loop is only unpack, convert and FMA.
* ``dq_<type>(*fields, tab, g0, g1, wt)``: dequantize row groups g0..g1 into ``wt`` [n_in, rows]
  (transposed, so the stores are lane-contiguous too) for a BLAS sgemm (prefill).

The lane loops take their length from the array shape at run time: LLVM then vectorizes them as
plain loops (a constant 128 would be fully unrolled into scalar code). Codes are narrowed to
uint8 before converting to float32 so the conversions are 32-bit, not 64-bit, vector ops.
Block scales stay f16 (as uint16 bits, so a repacked matrix is no bigger than the file's) and are
widened through ``tab = F16_TABLE``, once per block and lane.

With them, the backend interface that ``agent.llm.kernels`` expects of a kernel module (this one and
``agent.llm.kernels.c_backend``): ``interleave``/``interleave_u16`` for
``agent.llm.kernels.repack``, and ``set_num_threads``/``threadsafe`` for the thread count of the
calling thread.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import njit, prange

# Up to this many tokens the fused matvec kernel (re-reading each row group from cache per token)
# beats dequantized tiles + sgemm (measured on 1.1B Q4_0, 2 threads: they cross near 40).
MV_MAX_TOKENS = 32
_JIT: dict[str, Any] = dict(parallel=True, fastmath=True, cache=True, nogil=True)
# float32 value of every f16 bit pattern: numba has no f16 arithmetic.
F16_TABLE = (
    np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
)
F0, F4, F8, F16, F32 = np.float32(0), np.float32(4), np.float32(8), np.float32(16), np.float32(32)


@njit(inline="always")
def _f(v):  # a small non-negative integer as float32 via uint8 (keeps the vector ops 32-bit)
    return np.float32(np.uint8(v))


def set_num_threads(n: int) -> None:
    """Threads for this calling thread's kernels (numba keeps the count per thread), dealt out one
    work item at a time so a thread the OS preempts holds up little."""
    limit = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]  # set at run time
    want = max(1, min(int(n), limit))
    if numba.get_num_threads() != want:
        numba.set_num_threads(want)
    numba.set_parallel_chunksize(1)


def get_num_threads() -> int:
    return int(numba.get_num_threads())


def threadsafe() -> bool:
    """Whether kernels may be launched from several Python threads at once: true for the omp and
    tbb threading layers, not for workqueue (numba's fallback when neither is present)."""
    try:
        return numba.threading_layer() != "workqueue"
    except ValueError:  # no parallel kernel has run yet in this process
        return False


@njit(parallel=True, cache=True, nogil=True)
def interleave(blocks, start, out):
    """out[g, b, k, r] = blocks[g * LANES + r, b, start + k]; rows past the end read as zero."""
    G, nb, width, R = out.shape
    n_rows = blocks.shape[0]
    for gb in prange(G * nb):
        g, b = gb // nb, gb % nb
        n_valid = min(R, n_rows - g * R)
        for k in range(width):  # lane-contiguous writes; the reads stride across rows
            for r in range(n_valid):
                out[g, b, k, r] = blocks[g * R + r, b, start + k]
            for r in range(n_valid, R):
                out[g, b, k, r] = 0


@njit(parallel=True, cache=True, nogil=True)
def interleave_u16(blocks, start, out):
    """out[g, b, r] = the little-endian uint16 at byte ``start`` of row g * LANES + r, block b."""
    G, nb, R = out.shape
    n_rows = blocks.shape[0]
    for gb in prange(G * nb):
        g, b = gb // nb, gb % nb
        n_valid = min(R, n_rows - g * R)
        for r in range(n_valid):
            row = g * R + r
            out[g, b, r] = np.uint16(blocks[row, b, start]) | (
                np.uint16(blocks[row, b, start + 1]) << 8
            )
        for r in range(n_valid, R):
            out[g, b, r] = 0


# ---------------------------------------------------------------------------------------------
# 32-value blocks
# ---------------------------------------------------------------------------------------------


@njit(**_JIT)
def mv_q4_0(qs, d, tab, x, xs, out):
    G, nb, _, R = qs.shape
    for g in prange(G):
        acc = np.empty(R, np.float32)
        dg = np.empty((nb, R), np.float32)
        for b in range(nb):
            for r in range(R):
                dg[b, r] = tab[d[g, b, r]]
        s = np.empty(R, np.float32)
        for t in range(x.shape[0]):
            acc[:] = F0
            for b in range(nb):
                s[:] = F0
                for j in range(16):
                    xl, xh = x[t, 32 * b + j], x[t, 32 * b + 16 + j]
                    for r in range(R):
                        c = qs[g, b, j, r]
                        s[r] += _f(c & 15) * xl + _f(c >> 4) * xh
                m = F8 * xs[t, b]
                for r in range(R):
                    acc[r] += dg[b, r] * (s[r] - m)
            out[t, g * R : (g + 1) * R] = acc


@njit(**_JIT)
def dq_q4_0(qs, d, tab, g0, g1, wt):
    _, nb, _, R = qs.shape
    for k in prange((g1 - g0) * nb):
        gi, b = k // nb, k % nb
        g, c0 = g0 + gi, gi * R
        for j in range(16):
            for r in range(R):
                c, sc = qs[g, b, j, r], tab[d[g, b, r]]
                wt[32 * b + j, c0 + r] = sc * (_f(c & 15) - F8)
                wt[32 * b + 16 + j, c0 + r] = sc * (_f(c >> 4) - F8)


@njit(**_JIT)
def mv_q4_1(qs, d, m, tab, x, xs, out):
    G, nb, _, R = qs.shape
    for g in prange(G):
        acc = np.empty(R, np.float32)
        dg = np.empty((nb, R), np.float32)
        mg = np.empty((nb, R), np.float32)
        for b in range(nb):
            for r in range(R):
                dg[b, r] = tab[d[g, b, r]]
                mg[b, r] = tab[m[g, b, r]]
        s = np.empty(R, np.float32)
        for t in range(x.shape[0]):
            acc[:] = F0
            for b in range(nb):
                s[:] = F0
                for j in range(16):
                    xl, xh = x[t, 32 * b + j], x[t, 32 * b + 16 + j]
                    for r in range(R):
                        c = qs[g, b, j, r]
                        s[r] += _f(c & 15) * xl + _f(c >> 4) * xh
                xb = xs[t, b]
                for r in range(R):
                    acc[r] += dg[b, r] * s[r] + mg[b, r] * xb
            out[t, g * R : (g + 1) * R] = acc


@njit(**_JIT)
def dq_q4_1(qs, d, m, tab, g0, g1, wt):
    _, nb, _, R = qs.shape
    for k in prange((g1 - g0) * nb):
        gi, b = k // nb, k % nb
        g, c0 = g0 + gi, gi * R
        for j in range(16):
            for r in range(R):
                c, sc, mn = qs[g, b, j, r], tab[d[g, b, r]], tab[m[g, b, r]]
                wt[32 * b + j, c0 + r] = sc * _f(c & 15) + mn
                wt[32 * b + 16 + j, c0 + r] = sc * _f(c >> 4) + mn


@njit(**_JIT)
def mv_q5_0(qs, qh, d, tab, x, xs, out):
    G, nb, _, R = qs.shape
    for g in prange(G):
        acc = np.empty(R, np.float32)
        dg = np.empty((nb, R), np.float32)
        for b in range(nb):
            for r in range(R):
                dg[b, r] = tab[d[g, b, r]]
        s = np.empty(R, np.float32)
        for t in range(x.shape[0]):
            acc[:] = F0
            for b in range(nb):
                s[:] = F0
                for j in range(16):
                    xl, xh = x[t, 32 * b + j], x[t, 32 * b + 16 + j]
                    hb, sh = j >> 3, j & 7  # element j's fifth bit: bit j of the 32-bit qh
                    for r in range(R):
                        c = qs[g, b, j, r]
                        lo = (c & 15) | (((qh[g, b, hb, r] >> sh) & 1) << 4)
                        hi = (c >> 4) | (((qh[g, b, hb + 2, r] >> sh) & 1) << 4)
                        s[r] += _f(lo) * xl + _f(hi) * xh
                m = F16 * xs[t, b]
                for r in range(R):
                    acc[r] += dg[b, r] * (s[r] - m)
            out[t, g * R : (g + 1) * R] = acc


@njit(**_JIT)
def dq_q5_0(qs, qh, d, tab, g0, g1, wt):
    _, nb, _, R = qs.shape
    for k in prange((g1 - g0) * nb):
        gi, b = k // nb, k % nb
        g, c0 = g0 + gi, gi * R
        for j in range(16):
            hb, sh = j >> 3, j & 7
            for r in range(R):
                c, sc = qs[g, b, j, r], tab[d[g, b, r]]
                lo = (c & 15) | (((qh[g, b, hb, r] >> sh) & 1) << 4)
                hi = (c >> 4) | (((qh[g, b, hb + 2, r] >> sh) & 1) << 4)
                wt[32 * b + j, c0 + r] = sc * (_f(lo) - F16)
                wt[32 * b + 16 + j, c0 + r] = sc * (_f(hi) - F16)


@njit(**_JIT)
def mv_q5_1(qs, qh, d, m, tab, x, xs, out):
    G, nb, _, R = qs.shape
    for g in prange(G):
        acc = np.empty(R, np.float32)
        dg = np.empty((nb, R), np.float32)
        mg = np.empty((nb, R), np.float32)
        for b in range(nb):
            for r in range(R):
                dg[b, r] = tab[d[g, b, r]]
                mg[b, r] = tab[m[g, b, r]]
        s = np.empty(R, np.float32)
        for t in range(x.shape[0]):
            acc[:] = F0
            for b in range(nb):
                s[:] = F0
                for j in range(16):
                    xl, xh = x[t, 32 * b + j], x[t, 32 * b + 16 + j]
                    hb, sh = j >> 3, j & 7
                    for r in range(R):
                        c = qs[g, b, j, r]
                        lo = (c & 15) | (((qh[g, b, hb, r] >> sh) & 1) << 4)
                        hi = (c >> 4) | (((qh[g, b, hb + 2, r] >> sh) & 1) << 4)
                        s[r] += _f(lo) * xl + _f(hi) * xh
                xb = xs[t, b]
                for r in range(R):
                    acc[r] += dg[b, r] * s[r] + mg[b, r] * xb
            out[t, g * R : (g + 1) * R] = acc


@njit(**_JIT)
def dq_q5_1(qs, qh, d, m, tab, g0, g1, wt):
    _, nb, _, R = qs.shape
    for k in prange((g1 - g0) * nb):
        gi, b = k // nb, k % nb
        g, c0 = g0 + gi, gi * R
        for j in range(16):
            hb, sh = j >> 3, j & 7
            for r in range(R):
                c, sc, mn = qs[g, b, j, r], tab[d[g, b, r]], tab[m[g, b, r]]
                lo = (c & 15) | (((qh[g, b, hb, r] >> sh) & 1) << 4)
                hi = (c >> 4) | (((qh[g, b, hb + 2, r] >> sh) & 1) << 4)
                wt[32 * b + j, c0 + r] = sc * _f(lo) + mn
                wt[32 * b + 16 + j, c0 + r] = sc * _f(hi) + mn


@njit(**_JIT)
def mv_q8_0(qs, d, tab, x, xs, out):
    G, nb, _, R = qs.shape
    for g in prange(G):
        acc = np.empty(R, np.float32)
        dg = np.empty((nb, R), np.float32)
        for b in range(nb):
            for r in range(R):
                dg[b, r] = tab[d[g, b, r]]
        s = np.empty(R, np.float32)
        for t in range(x.shape[0]):
            acc[:] = F0
            for b in range(nb):
                s[:] = F0
                for j in range(32):
                    xv = x[t, 32 * b + j]
                    for r in range(R):
                        s[r] += np.float32(qs[g, b, j, r]) * xv
                for r in range(R):
                    acc[r] += dg[b, r] * s[r]
            out[t, g * R : (g + 1) * R] = acc


@njit(**_JIT)
def dq_q8_0(qs, d, tab, g0, g1, wt):
    _, nb, _, R = qs.shape
    for k in prange((g1 - g0) * nb):
        gi, b = k // nb, k % nb
        g, c0 = g0 + gi, gi * R
        for j in range(32):
            for r in range(R):
                wt[32 * b + j, c0 + r] = tab[d[g, b, r]] * np.float32(qs[g, b, j, r])


# ---------------------------------------------------------------------------------------------
# K-quants: 256-value super-blocks
# ---------------------------------------------------------------------------------------------


@njit(**_JIT)
def mv_q2_k(qs, sc, d, dm, tab, x, xs, out):
    # value 128h + 32s + j (j < 32) = d * (sc & 15) * ((qs[32h + j] >> 2s) & 3) - dmin * (sc >> 4),
    # with the scale byte of its 16-value sub-block 8h + 2s + j // 16.
    G, nb, _, R = qs.shape
    for g in prange(G):
        acc = np.empty(R, np.float32)
        dg = np.empty((nb, R), np.float32)
        dmg = np.empty((nb, R), np.float32)
        for b in range(nb):
            for r in range(R):
                dg[b, r] = tab[d[g, b, r]]
                dmg[b, r] = tab[dm[g, b, r]]
        v = np.empty(R, np.float32)
        for t in range(x.shape[0]):
            acc[:] = F0
            for b in range(nb):
                for h in range(2):
                    for sh in range(4):
                        for lh in range(2):
                            v[:] = F0
                            o = 256 * b + 128 * h + 32 * sh + 16 * lh
                            for i in range(16):
                                xv = x[t, o + i]
                                for r in range(R):
                                    v[r] += (
                                        _f((qs[g, b, 32 * h + 16 * lh + i, r] >> (2 * sh)) & 3) * xv
                                    )
                            sub = 8 * h + 2 * sh + lh
                            xsum = xs[t, 16 * b + sub]
                            for r in range(R):
                                c = sc[g, b, sub, r]
                                acc[r] += (
                                    dg[b, r] * _f(c & 15) * v[r] - dmg[b, r] * _f(c >> 4) * xsum
                                )
            out[t, g * R : (g + 1) * R] = acc


@njit(**_JIT)
def dq_q2_k(qs, sc, d, dm, tab, g0, g1, wt):
    _, nb, _, R = qs.shape
    for k in prange((g1 - g0) * nb):
        gi, b = k // nb, k % nb
        g, c0 = g0 + gi, gi * R
        for h in range(2):
            for sh in range(4):
                for j in range(32):
                    sub = 8 * h + 2 * sh + j // 16
                    for r in range(R):
                        c = sc[g, b, sub, r]
                        q = _f((qs[g, b, 32 * h + j, r] >> (2 * sh)) & 3)
                        wt[256 * b + 128 * h + 32 * sh + j, c0 + r] = tab[d[g, b, r]] * _f(
                            c & 15
                        ) * q - tab[dm[g, b, r]] * _f(c >> 4)


@njit(**_JIT)
def mv_q3_k(qs, hm, sc, d, tab, x, xs, out):
    # value 128h + 32s + j = d * sc[8h + 2s + j // 16] * (((qs[32h + j] >> 2s) & 3) - 4 * (1 -
    # hbit)), hbit being bit 4h + s of hm[j].
    G, nb, _, R = qs.shape
    for g in prange(G):
        acc = np.empty(R, np.float32)
        dg = np.empty((nb, R), np.float32)
        for b in range(nb):
            for r in range(R):
                dg[b, r] = tab[d[g, b, r]]
        v = np.empty(R, np.float32)
        for t in range(x.shape[0]):
            acc[:] = F0
            for b in range(nb):
                for h in range(2):
                    for sh in range(4):
                        for lh in range(2):
                            v[:] = F0
                            o = 256 * b + 128 * h + 32 * sh + 16 * lh
                            for i in range(16):
                                xv = x[t, o + i]
                                j = 16 * lh + i
                                for r in range(R):
                                    q = ((qs[g, b, 32 * h + j, r] >> (2 * sh)) & 3) | (
                                        ((hm[g, b, j, r] >> (4 * h + sh)) & 1) << 2
                                    )
                                    v[r] += (_f(q) - F4) * xv
                            sub = 8 * h + 2 * sh + lh
                            for r in range(R):
                                acc[r] += dg[b, r] * np.float32(sc[g, b, sub, r]) * v[r]
            out[t, g * R : (g + 1) * R] = acc


@njit(**_JIT)
def dq_q3_k(qs, hm, sc, d, tab, g0, g1, wt):
    _, nb, _, R = qs.shape
    for k in prange((g1 - g0) * nb):
        gi, b = k // nb, k % nb
        g, c0 = g0 + gi, gi * R
        for h in range(2):
            for sh in range(4):
                for j in range(32):
                    sub = 8 * h + 2 * sh + j // 16
                    for r in range(R):
                        q = ((qs[g, b, 32 * h + j, r] >> (2 * sh)) & 3) | (
                            ((hm[g, b, j, r] >> (4 * h + sh)) & 1) << 2
                        )
                        wt[256 * b + 128 * h + 32 * sh + j, c0 + r] = (
                            tab[d[g, b, r]] * np.float32(sc[g, b, sub, r]) * (_f(q) - F4)
                        )


@njit(**_JIT)
def mv_q4_k(qs, sc, mn, d, dm, tab, x, xs, out):
    # Chunk c (64 values): low nibbles of qs[32c + j] are sub-block 2c, high nibbles 2c + 1.
    G, nb, _, R = qs.shape
    for g in prange(G):
        acc = np.empty(R, np.float32)
        dg = np.empty((nb, R), np.float32)
        dmg = np.empty((nb, R), np.float32)
        for b in range(nb):
            for r in range(R):
                dg[b, r] = tab[d[g, b, r]]
                dmg[b, r] = tab[dm[g, b, r]]
        sl = np.empty(R, np.float32)
        sh = np.empty(R, np.float32)
        for t in range(x.shape[0]):
            acc[:] = F0
            for b in range(nb):
                for c in range(4):
                    sl[:] = F0
                    sh[:] = F0
                    o = 256 * b + 64 * c
                    for j in range(32):
                        xl, xh = x[t, o + j], x[t, o + 32 + j]
                        for r in range(R):
                            q = qs[g, b, 32 * c + j, r]
                            sl[r] += _f(q & 15) * xl
                            sh[r] += _f(q >> 4) * xh
                    xl_sum, xh_sum = xs[t, 8 * b + 2 * c], xs[t, 8 * b + 2 * c + 1]
                    for r in range(R):
                        acc[r] += dg[b, r] * (
                            _f(sc[g, b, 2 * c, r]) * sl[r] + _f(sc[g, b, 2 * c + 1, r]) * sh[r]
                        ) - (
                            dmg[b, r]
                            * (
                                _f(mn[g, b, 2 * c, r]) * xl_sum
                                + _f(mn[g, b, 2 * c + 1, r]) * xh_sum
                            )
                        )
            out[t, g * R : (g + 1) * R] = acc


@njit(**_JIT)
def dq_q4_k(qs, sc, mn, d, dm, tab, g0, g1, wt):
    _, nb, _, R = qs.shape
    for k in prange((g1 - g0) * nb):
        gi, b = k // nb, k % nb
        g, c0 = g0 + gi, gi * R
        for c in range(4):
            for j in range(32):
                for r in range(R):
                    q = qs[g, b, 32 * c + j, r]
                    dd, mm = tab[d[g, b, r]], tab[dm[g, b, r]]
                    wt[256 * b + 64 * c + j, c0 + r] = dd * _f(sc[g, b, 2 * c, r]) * _f(
                        q & 15
                    ) - mm * _f(mn[g, b, 2 * c, r])
                    wt[256 * b + 64 * c + 32 + j, c0 + r] = dd * _f(sc[g, b, 2 * c + 1, r]) * _f(
                        q >> 4
                    ) - mm * _f(mn[g, b, 2 * c + 1, r])


@njit(**_JIT)
def mv_q5_k(qs, qh, sc, mn, d, dm, tab, x, xs, out):
    # As Q4_K, plus a fifth bit: sub-block k takes bit k of qh[j].
    G, nb, _, R = qs.shape
    for g in prange(G):
        acc = np.empty(R, np.float32)
        dg = np.empty((nb, R), np.float32)
        dmg = np.empty((nb, R), np.float32)
        for b in range(nb):
            for r in range(R):
                dg[b, r] = tab[d[g, b, r]]
                dmg[b, r] = tab[dm[g, b, r]]
        sl = np.empty(R, np.float32)
        sh = np.empty(R, np.float32)
        for t in range(x.shape[0]):
            acc[:] = F0
            for b in range(nb):
                for c in range(4):
                    sl[:] = F0
                    sh[:] = F0
                    o = 256 * b + 64 * c
                    for j in range(32):
                        xl, xh = x[t, o + j], x[t, o + 32 + j]
                        for r in range(R):
                            q, hbits = qs[g, b, 32 * c + j, r], qh[g, b, j, r]
                            sl[r] += _f((q & 15) | (((hbits >> (2 * c)) & 1) << 4)) * xl
                            sh[r] += _f((q >> 4) | (((hbits >> (2 * c + 1)) & 1) << 4)) * xh
                    xl_sum, xh_sum = xs[t, 8 * b + 2 * c], xs[t, 8 * b + 2 * c + 1]
                    for r in range(R):
                        acc[r] += dg[b, r] * (
                            _f(sc[g, b, 2 * c, r]) * sl[r] + _f(sc[g, b, 2 * c + 1, r]) * sh[r]
                        ) - (
                            dmg[b, r]
                            * (
                                _f(mn[g, b, 2 * c, r]) * xl_sum
                                + _f(mn[g, b, 2 * c + 1, r]) * xh_sum
                            )
                        )
            out[t, g * R : (g + 1) * R] = acc


@njit(**_JIT)
def dq_q5_k(qs, qh, sc, mn, d, dm, tab, g0, g1, wt):
    _, nb, _, R = qs.shape
    for k in prange((g1 - g0) * nb):
        gi, b = k // nb, k % nb
        g, c0 = g0 + gi, gi * R
        for c in range(4):
            for j in range(32):
                for r in range(R):
                    q, hbits = qs[g, b, 32 * c + j, r], qh[g, b, j, r]
                    dd, mm = tab[d[g, b, r]], tab[dm[g, b, r]]
                    lo = (q & 15) | (((hbits >> (2 * c)) & 1) << 4)
                    hi = (q >> 4) | (((hbits >> (2 * c + 1)) & 1) << 4)
                    wt[256 * b + 64 * c + j, c0 + r] = dd * _f(sc[g, b, 2 * c, r]) * _f(
                        lo
                    ) - mm * _f(mn[g, b, 2 * c, r])
                    wt[256 * b + 64 * c + 32 + j, c0 + r] = dd * _f(sc[g, b, 2 * c + 1, r]) * _f(
                        hi
                    ) - mm * _f(mn[g, b, 2 * c + 1, r])


@njit(**_JIT)
def mv_q6_k(ql, qh, sc, d, tab, x, xs, out):
    # Half h, quarter q (32 values each): low 4 bits from ql[64h + j] (q = 0, 2: low/high nibble) or
    # ql[64h + 32 + j] (q = 1, 3), high 2 bits from qh[32h + j] >> 2q; minus 32. 16-value sub-block
    # 8h + 2q + j // 16 has its own int8 scale.
    G, nb, _, R = ql.shape
    for g in prange(G):
        acc = np.empty(R, np.float32)
        dg = np.empty((nb, R), np.float32)
        for b in range(nb):
            for r in range(R):
                dg[b, r] = tab[d[g, b, r]]
        s0 = np.empty(R, np.float32)
        s1 = np.empty(R, np.float32)
        s2 = np.empty(R, np.float32)
        s3 = np.empty(R, np.float32)
        for t in range(x.shape[0]):
            acc[:] = F0
            for b in range(nb):
                for h in range(2):
                    for lh in range(2):
                        s0[:] = F0
                        s1[:] = F0
                        s2[:] = F0
                        s3[:] = F0
                        o = 256 * b + 128 * h + 16 * lh
                        for i in range(16):
                            j = 16 * lh + i
                            x0, x1, x2, x3 = (
                                x[t, o + i],
                                x[t, o + 32 + i],
                                x[t, o + 64 + i],
                                x[t, o + 96 + i],
                            )
                            for r in range(R):
                                a, c, hb = (
                                    ql[g, b, 64 * h + j, r],
                                    ql[g, b, 64 * h + 32 + j, r],
                                    qh[g, b, 32 * h + j, r],
                                )
                                s0[r] += _f((a & 15) | ((hb & 3) << 4)) * x0
                                s1[r] += _f((c & 15) | (((hb >> 2) & 3) << 4)) * x1
                                s2[r] += _f((a >> 4) | (((hb >> 4) & 3) << 4)) * x2
                                s3[r] += _f((c >> 4) | ((hb >> 6) << 4)) * x3
                        sub = 8 * h + lh
                        xb = 16 * b + sub
                        m0, m1 = F32 * xs[t, xb], F32 * xs[t, xb + 2]
                        m2, m3 = F32 * xs[t, xb + 4], F32 * xs[t, xb + 6]
                        for r in range(R):
                            acc[r] += dg[b, r] * (
                                np.float32(sc[g, b, sub, r]) * (s0[r] - m0)
                                + np.float32(sc[g, b, sub + 2, r]) * (s1[r] - m1)
                                + np.float32(sc[g, b, sub + 4, r]) * (s2[r] - m2)
                                + np.float32(sc[g, b, sub + 6, r]) * (s3[r] - m3)
                            )
            out[t, g * R : (g + 1) * R] = acc


@njit(**_JIT)
def dq_q6_k(ql, qh, sc, d, tab, g0, g1, wt):
    _, nb, _, R = ql.shape
    for k in prange((g1 - g0) * nb):
        gi, b = k // nb, k % nb
        g, c0 = g0 + gi, gi * R
        for h in range(2):
            for j in range(32):
                o = 256 * b + 128 * h + j
                sub = 8 * h + j // 16
                for r in range(R):
                    a, c, hb = (
                        ql[g, b, 64 * h + j, r],
                        ql[g, b, 64 * h + 32 + j, r],
                        qh[g, b, 32 * h + j, r],
                    )
                    dd = tab[d[g, b, r]]
                    wt[o, c0 + r] = (
                        dd * np.float32(sc[g, b, sub, r]) * (_f((a & 15) | ((hb & 3) << 4)) - F32)
                    )
                    wt[o + 32, c0 + r] = (
                        dd
                        * np.float32(sc[g, b, sub + 2, r])
                        * (_f((c & 15) | (((hb >> 2) & 3) << 4)) - F32)
                    )
                    wt[o + 64, c0 + r] = (
                        dd
                        * np.float32(sc[g, b, sub + 4, r])
                        * (_f((a >> 4) | (((hb >> 4) & 3) << 4)) - F32)
                    )
                    wt[o + 96, c0 + r] = (
                        dd
                        * np.float32(sc[g, b, sub + 6, r])
                        * (_f((c >> 4) | ((hb >> 6) << 4)) - F32)
                    )
