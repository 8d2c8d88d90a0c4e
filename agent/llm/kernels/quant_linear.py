"""``QuantLinear``: the transformer's projections on the kernels.

With a kernel module (``backend()``) quantized matrices are repacked once (``repack``) and
multiplied by the kernels -- a fused matrix-vector kernel for a few tokens (decode), and for longer
batches (prefill) tiles of rows dequantized into reused float32 buffers and handed to BLAS sgemm.
Without one (or with ``AGENT_KERNELS=reference``) ``linear_class()`` is the reference ``Linear``
(dequantize the whole matrix, then BLAS).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from agent.llm.formats.ggml_types import LAYOUTS, GGMLType
from agent.llm.formats.modelfile import TensorInfo
from agent.llm.formats.quants import dequantize_rows
from agent.llm.kernels.linear import Linear
from agent.llm.kernels.memo import once_per_frozen
from agent.llm.kernels.repack import repack
from agent.llm.kernels.runtime import backend, get_threads, sync_threads, tile_buffer, workers

# float32 bytes of one dequantized tile (per prefill thread): big enough for an efficient sgemm,
# small enough to stay in L2/L3 between being written and being multiplied (1-8 MB measured
# within noise of each other on 1.1B; 16 MB clearly slower).
TILE_BYTES = 2 << 20


def _kernel_table(K: Any) -> dict[GGMLType, tuple[Callable[..., None], Callable[..., None], int]]:
    """Per type: fused matvec, tile dequantizer, and the sub-block size of the x sums they take."""
    return {
        GGMLType.Q4_0: (K.mv_q4_0, K.dq_q4_0, 32),
        GGMLType.Q4_1: (K.mv_q4_1, K.dq_q4_1, 32),
        GGMLType.Q5_0: (K.mv_q5_0, K.dq_q5_0, 32),
        GGMLType.Q5_1: (K.mv_q5_1, K.dq_q5_1, 32),
        GGMLType.Q8_0: (K.mv_q8_0, K.dq_q8_0, 32),
        GGMLType.Q2_K: (K.mv_q2_k, K.dq_q2_k, 16),
        GGMLType.Q3_K: (K.mv_q3_k, K.dq_q3_k, 16),
        GGMLType.Q4_K: (K.mv_q4_k, K.dq_q4_k, 32),
        GGMLType.Q5_K: (K.mv_q5_k, K.dq_q5_k, 32),
        GGMLType.Q6_K: (K.mv_q6_k, K.dq_q6_k, 16),
    }


class QuantLinear:
    """``x @ W.T`` for x float32 [n_tokens, n_in], W a (quantized) [n_out, n_in] tensor.

    The matrix is repacked on its first product, not at load: ``load_model`` only maps the file,
    and a model's memory grows to about its file size as its layers are first used.
    """

    def __init__(self, tensor: TensorInfo):
        if len(tensor.shape) != 2:
            raise ValueError(f"tensor {tensor.name!r} is not a matrix (shape {tensor.shape})")
        self.tensor = tensor
        self.n_out, self.n_in = tensor.shape
        self.type = GGMLType(tensor.type)
        K = self.kernels = backend()
        table = _kernel_table(K) if K is not None else {}
        self._packed: Any = None
        self._mv: Any = None
        self._mm: Any = None  # the bound integer prefill kernel, made on first use
        self._mm_checked = False
        self._pack_lock = threading.Lock()
        self.packable = self.type in table
        # from this many tokens on, the integer kernel (where there is one) replaces the matvec
        self.mm_min_tokens = getattr(K, "MM_MIN_TOKENS_FOR", {}).get(
            self.type.name.lower(), getattr(K, "MM_MIN_TOKENS", 1 << 62)
        )
        if self.packable:
            self.mv, self.dq, self.sum_size = table[self.type]
            self.tab = K.F16_TABLE

    def prepare(self) -> None:
        """Repack now rather than on the first product."""
        if self.packable:
            self.packed  # noqa: B018 - the property does the work

    @property
    def packed(self) -> Any:
        """The repacked matrix, made on first use (once, even when several threads ask)."""
        if self._packed is None:
            with self._pack_lock:
                if self._packed is None:
                    self._packed = repack(
                        self.tensor.data, self.tensor.type, self.tensor.shape, kernels=self.kernels
                    )
        return self._packed

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(
                f"{self.tensor.name}: expected activations [n, {self.n_in}], got {x.shape}"
            )
        if not self.packable:
            return self._plain(x)
        # From a few tokens on, the integer kernel (where there is one); else the fused matvec
        # kernel for few tokens, dequantized tiles + sgemm for many.
        if x.shape[0] >= self.mm_min_tokens and (
            self._mm is not None or (not self._mm_checked and self._int8())
        ):
            sync_threads(self.kernels, get_threads())
            return self._mm(x)[:, : self.n_out]
        if x.shape[0] <= self.kernels.MV_MAX_TOKENS:
            sync_threads(self.kernels, get_threads())
            if not self._mm_checked:
                self._int8()  # decide once whether activations are rounded to int8
            return self._matvec(x)
        return self._tiled(x)

    def decode_descriptor(self) -> tuple[int, ...] | None:
        """What a one-call decode (``DecodeLayers``) needs to make this product itself: there
        when a single token takes the integer kernel and the output has no padded rows."""
        if not self.packable or self.mm_min_tokens > 1:
            return None
        if not self._mm_checked:
            self._int8()
        descriptor = getattr(self._mm, "descriptor", None)
        lanes = self.packed.arrays[0].shape[-1]
        return descriptor if descriptor is not None and self.n_out % lanes == 0 else None

    def _int8(self) -> bool:
        """Bind the integer prefill kernel, where the kernel module has one and it is not turned
        off (``AGENT_PREFILL=float`` keeps dequantized tiles + sgemm, to compare)."""
        self._mm_checked = True
        make = getattr(self.kernels, "MM", {}).get(self.type.name.lower())
        if make is None or os.environ.get("AGENT_PREFILL", "").lower() == "float":
            return False
        self._mm = make(*self.packed.arrays, tab=self.tab)
        self.block = LAYOUTS[self.type].block_size  # values per activation scale
        return True

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        pm = self.packed
        # prefill multiplies int8 activations: decode rounds them alike, so a token's logits do
        # not depend on the path (both once for the projections sharing x: memo.py)
        block = self.block if self._mm is not None else 0
        x, xs = once_per_frozen(x, ("mv", block, self.sum_size), lambda: self._mv_inputs(x, block))
        out = np.empty((x.shape[0], pm.n_groups * pm.arrays[0].shape[-1]), np.float32)
        if (
            self._mv is None
        ):  # the matrix's arguments, bound once (checked once, with the C kernels)
            bind = getattr(self.mv, "bind", None)
            self._mv = (
                bind(*pm.arrays)
                if bind is not None
                else functools.partial(self.mv, *pm.arrays, self.tab)
            )
        self._mv(x, xs, out)
        return out[:, : self.n_out]

    def _mv_inputs(self, x: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
        """The activations the matvec multiplies (rounded to int8 per ``block``, if not 0) and
        their sums per ``sum_size`` values."""
        if block:
            x = self.kernels.round_q8(x, block)
        return x, x.reshape(x.shape[0], -1, self.sum_size).sum(axis=2, dtype=np.float32)

    def _tiled(self, x: np.ndarray) -> np.ndarray:
        pm = self.packed
        lanes = pm.arrays[0].shape[-1]
        per_tile = max(1, TILE_BYTES // (4 * self.n_in * lanes))
        out = np.empty((x.shape[0], pm.n_groups * lanes), np.float32)

        threaded = get_threads() > 1 and self.kernels.threadsafe()

        def tile(g0: int) -> None:
            sync_threads(
                self.kernels, 1 if threaded else get_threads()
            )  # parallel across tiles, or inside each
            g1 = min(pm.n_groups, g0 + per_tile)
            cols = (g1 - g0) * lanes
            wt = tile_buffer(self.n_in * cols).reshape(self.n_in, cols)
            self.dq(*pm.arrays, self.tab, g0, g1, wt)
            # into a fresh array: numpy's matmul skips BLAS when ``out`` is a strided slice
            out[:, g0 * lanes : g1 * lanes] = x @ wt

        starts = range(0, pm.n_groups, per_tile)
        if threaded and len(starts) > 1:
            list(workers().map(tile, starts))
        else:
            for g0 in starts:
                tile(g0)
        return out[:, : self.n_out]

    def _plain(self, x: np.ndarray) -> np.ndarray:
        """F32 straight from the mapping; F16 (and anything without a kernel) a row tile at a
        time."""
        t = self.tensor
        if self.type == GGMLType.F32:
            return x @ t.data.view("<f4").reshape(self.n_out, self.n_in).T
        rows = max(1, TILE_BYTES // (4 * self.n_in))
        out = np.empty((x.shape[0], self.n_out), np.float32)
        for r0 in range(0, self.n_out, rows):
            r1 = min(self.n_out, r0 + rows)
            w = dequantize_rows(t.data, t.type, t.shape, slice(r0, r1))
            out[:, r0:r1] = x @ w.T
        return out


def linear_class() -> type:
    return QuantLinear if backend() is not None else Linear
