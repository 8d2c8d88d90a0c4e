"""Which kernel module multiplies the matrices (C, numba or the reference path), and on how many
threads.

Threads (``set_threads(n)``): decode kernels run on the kernel module's pool of n threads, in
small dynamic chunks so a thread the OS preempts holds up little. BLAS is kept single-threaded:
OpenBLAS's idle workers busy-wait for a long time after each call and would steal the cores
from the kernels' (and vice versa). Prefill gets its parallelism instead from n Python threads,
each dequantizing and multiplying its own tiles (both release the GIL). So n threads means n
busy cores, never 2n.
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

_threads = max(1, os.cpu_count() or 1)
_blas_limit: Any = None  # threadpoolctl's limiter, kept alive so the BLAS cap holds
_local = threading.local()  # per-thread tile buffer
_pool: ThreadPoolExecutor | None = None  # prefill workers
_pool_lock = threading.Lock()
_warned = False


BACKENDS = {"c": "agent.llm.kernels.c_backend", "numba": "agent.llm.kernels.numba_backend"}
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
        # ImportError, a failed compile, or a numba/llvmlite that won't start: try the next one
        except Exception as exc:  # noqa: BLE001
            lines = str(exc).strip().splitlines()
            _failed[name] = lines[0] if lines else type(exc).__name__
    if not _warned:
        _warned = True
        why = "; ".join(f"{n.rsplit('.', 1)[-1]}: {_failed[n]}" for n in names)
        warnings.warn(
            f"fast kernels unavailable ({why}); using the slow reference matmul. Install a C "
            "compiler (gcc, or set $CC) or the numba extra (pip install 'agent[numba]')",
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
    """``c``, ``numba`` or ``reference``: the key of ``BACKENDS`` in use (as ``AGENT_KERNELS`` names
    it)."""
    K = backend()
    return next(
        (key for key, name in BACKENDS.items() if K is not None and K.__name__ == name), "reference"
    )


def describe() -> str:
    """What multiplies the matrices, for a user's log line: "c kernels, 2 threads"."""
    name = backend_name()
    what = f"{name} kernels" if name != "reference" else "reference matmul (slow)"
    return f"{what}, {_threads} thread{'s' if _threads != 1 else ''}"


def sync_threads(K: Any, n: int) -> None:
    # Kernel thread counts are per calling thread: each thread sets its own, when it changes.
    if getattr(_local, "kernel_threads", None) != (K, n):
        K.set_num_threads(n)
        _local.kernel_threads = (K, n)


def release_threads() -> None:
    """Free the calling thread's kernel worker threads, where the kernel module keeps a pool per
    calling thread (C/OpenMP): call it when a thread is done with the kernels for a while (a
    generation ended, the batch scheduler went idle), so idle pools do not slow the live one."""
    release = getattr(backend(), "release_threads", None)
    if release is not None:
        release()


def workers() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_threads, thread_name_prefix="agent-prefill")
        return _pool


def tile_buffer(n: int) -> np.ndarray:
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < n:
        buf = _local.buf = np.empty(n, np.float32)
    return buf[:n]


def attention_rows_kernel(head_dim: int) -> Callable[..., Any] | None:
    """The kernel module's attention for a batched step's rows in several KV caches (a class:
    ``AttentionRows(k_caches, v_caches, pos, n_head)(layer, q, out)``), if it has one."""
    K = backend()
    rows = getattr(K, "AttentionRows", None)
    return rows if rows is not None and head_dim % K.ATTENTION_HEAD_MULTIPLE == 0 else None


def layer_ops() -> Any:
    """The kernel module, if it has the element-wise steps of a layer (rms_norm, rope,
    silu_mul), for ``Transformer(ops=...)``; else None (numpy does them)."""
    K = backend()
    return K if all(hasattr(K, f) for f in ("rms_norm", "rope", "silu_mul")) else None


def attention_kernel(head_dim: int) -> Callable[..., None] | None:
    """The kernel module's attention over the f16 KV cache, if it has one for this head size."""
    K = backend()
    attend = getattr(K, "attention", None)
    return attend if attend is not None and head_dim % K.ATTENTION_HEAD_MULTIPLE == 0 else None
