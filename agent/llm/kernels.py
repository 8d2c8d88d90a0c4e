"""Choice of matrix-product implementation and thread count for the engine.

``linear_class()`` is what the transformer builds its projections with. With a kernel module
(``backend()``: C from ``agent.llm.kernels_c``, or numba from ``agent.llm.kernels_numba``) it is
``QuantLinear``: quantized matrices are repacked once (``agent.llm.repack``) and multiplied by
the kernels -- a fused matrix-vector kernel for a few tokens (decode), and for longer batches
(prefill) tiles of rows dequantized into reused float32 buffers and handed to BLAS sgemm.
Without one (or with ``AGENT_KERNELS=reference``) it is the reference ``Linear`` (dequantize the
whole matrix, then BLAS).

Threads (``set_threads(n)``): decode kernels run on the kernel module's pool of n threads, in
small dynamic chunks so a thread the OS preempts holds up little. BLAS is kept single-threaded:
OpenBLAS's idle workers busy-wait for a long time after each call and would steal the cores
from the kernels' (and vice versa). Prefill gets its parallelism instead from n Python threads,
each dequantizing and multiplying its own tiles (both release the GIL). So n threads means n
busy cores, never 2n.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from agent.llm.ggml_types import GGMLType
from agent.llm.linear import Linear
from agent.llm.modelfile import TensorInfo

# float32 bytes of one dequantized tile (per prefill thread): big enough for an efficient sgemm,
# small enough to stay in L2/L3 between being written and being multiplied (1-8 MB measured
# within noise of each other on 1.1B; 16 MB clearly slower).
TILE_BYTES = 2 << 20

_threads = max(1, os.cpu_count() or 1)
_blas_limit: Any = None  # threadpoolctl's limiter, kept alive so the BLAS cap holds
_local = threading.local()  # per-thread tile buffer
_pool: ThreadPoolExecutor | None = None  # prefill workers
_pool_lock = threading.Lock()
_warned = False


BACKENDS = {"c": "agent.llm.kernels_c", "numba": "agent.llm.kernels_numba"}
_failed: dict[str, str] = {}  # backend module -> why it could not be used (tried once per process)


def backend() -> Any:
    """The kernel module in use, or None (reference path). ``AGENT_KERNELS`` chooses: ``c``,
    ``numba`` or ``reference``; by default C (compiled once with the system compiler, a few MB
    resident) and, where there is no compiler, numba (LLVM in-process, ~130 MB resident)."""
    global _warned
    choice = os.environ.get("AGENT_KERNELS", "").lower()
    if choice == "reference":
        return None
    names = [BACKENDS[choice]] if choice in BACKENDS else list(BACKENDS.values())
    for name in names:
        if name in _failed:
            continue
        try:
            return importlib.import_module(name)
        except (
            Exception
        ) as exc:  # ImportError, a failed compile, or a numba/llvmlite that won't start
            lines = str(exc).strip().splitlines()
            _failed[name] = lines[0] if lines else type(exc).__name__
    if not _warned:
        _warned = True
        why = "; ".join(f"{n.rsplit('.', 1)[-1]}: {_failed[n]}" for n in names)
        warnings.warn(
            f"fast kernels unavailable ({why}); using the slow reference matmul",
            RuntimeWarning,
            stacklevel=3,
        )
    return None


def set_threads(n: int) -> None:
    """Use ``n`` threads (kernels, prefill tiles); BLAS itself stays on one (process-wide)."""
    global _threads, _blas_limit, _pool
    _threads = max(1, int(n))
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=False)
            _pool = None
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return
    # Without kernels the reference path is all BLAS: then it gets the threads.
    blas = 1 if backend() is not None else _threads
    _blas_limit = ThreadpoolController().limit(limits=blas, user_api="blas")


def get_threads() -> int:
    return _threads


def backend_name() -> str:
    """``c``, ``numba`` or ``reference``: the key of ``BACKENDS`` in use (as ``AGENT_KERNELS`` names it)."""
    K = backend()
    return next(
        (key for key, name in BACKENDS.items() if K is not None and K.__name__ == name), "reference"
    )


def describe() -> str:
    """What multiplies the matrices, for a user's log line: "c kernels, 2 threads"."""
    name = backend_name()
    what = f"{name} kernels" if name != "reference" else "reference matmul (slow)"
    return f"{what}, {_threads} thread{'s' if _threads != 1 else ''}"


def _sync_threads(K: Any, n: int) -> None:
    # Kernel thread counts are per calling thread: each thread sets its own, when it changes.
    if getattr(_local, "kernel_threads", None) != (K, n):
        K.set_num_threads(n)
        _local.kernel_threads = (K, n)


def _workers() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_threads, thread_name_prefix="agent-prefill")
        return _pool


def _tile_buffer(n: int) -> np.ndarray:
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < n:
        buf = _local.buf = np.empty(n, np.float32)
    return buf[:n]


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
        self._pack_lock = threading.Lock()
        self.packable = self.type in table
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
                    from agent.llm.repack import repack

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
        if x.shape[0] <= self.kernels.MV_MAX_TOKENS:  # the fused kernel, else tiles + sgemm
            _sync_threads(self.kernels, _threads)
            return self._matvec(x)
        return self._tiled(x)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        pm = self.packed
        xs = x.reshape(x.shape[0], -1, self.sum_size).sum(axis=2, dtype=np.float32)
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

    def _tiled(self, x: np.ndarray) -> np.ndarray:
        pm = self.packed
        lanes = pm.arrays[0].shape[-1]
        per_tile = max(1, TILE_BYTES // (4 * self.n_in * lanes))
        out = np.empty((x.shape[0], pm.n_groups * lanes), np.float32)

        threaded = _threads > 1 and self.kernels.threadsafe()

        def tile(g0: int) -> None:
            _sync_threads(
                self.kernels, 1 if threaded else _threads
            )  # parallel across tiles, or inside each
            g1 = min(pm.n_groups, g0 + per_tile)
            cols = (g1 - g0) * lanes
            wt = _tile_buffer(self.n_in * cols).reshape(self.n_in, cols)
            self.dq(*pm.arrays, self.tab, g0, g1, wt)
            # into a fresh array: numpy's matmul skips BLAS when ``out`` is a strided slice
            out[:, g0 * lanes : g1 * lanes] = x @ wt

        starts = range(0, pm.n_groups, per_tile)
        if threaded and len(starts) > 1:
            list(_workers().map(tile, starts))
        else:
            for g0 in starts:
                tile(g0)
        return out[:, : self.n_out]

    def _plain(self, x: np.ndarray) -> np.ndarray:
        """F32 straight from the mapping; F16 (and anything without a kernel) a row tile at a time."""
        t = self.tensor
        if self.type == GGMLType.F32:
            return x @ t.data.view("<f4").reshape(self.n_out, self.n_in).T
        from agent.llm.quants import dequantize_rows

        rows = max(1, TILE_BYTES // (4 * self.n_in))
        out = np.empty((x.shape[0], self.n_out), np.float32)
        for r0 in range(0, self.n_out, rows):
            r1 = min(self.n_out, r0 + rows)
            w = dequantize_rows(t.data, t.type, t.shape, slice(r0, r1))
            out[:, r0:r1] = x @ w.T
        return out


def attention_kernel(head_dim: int) -> Callable[..., None] | None:
    """The kernel module's attention over the f16 KV cache, if it has one for this head size."""
    K = backend()
    attend = getattr(K, "attention", None)
    return attend if attend is not None and head_dim % K.ATTENTION_HEAD_MULTIPLE == 0 else None


def linear_class() -> type:
    return QuantLinear if backend() is not None else Linear
