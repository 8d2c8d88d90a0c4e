"""The kernels of ``agent.llm.kernels.numba_backend`` in C (``kernels.c``), loaded with ctypes.

Same functions, arguments and results as the numba module, at a few MB of resident memory instead of
the ~130 MB that numba and llvmlite take. The C source is compiled on first import with the system
compiler (``$CC``, else ``cc`` or ``gcc``) for this CPU and cached as a shared library in
``$AGENT_CACHE_DIR`` (else ``$XDG_CACHE_HOME/agent``, else ``~/.cache/agent``), named by a hash of
the source, flags, compiler and CPU, so a home directory shared with another machine or compiler
gets its own build. Without a working compiler the import raises ImportError (the caller then falls
back to numba).

Calls release the GIL (ctypes does) and run on OpenMP threads: ``set_num_threads`` sets the count
for the calling thread's later calls, and several Python threads may call kernels at once. The
wrappers check every array's dtype, shape and contiguity and raise ValueError on a mismatch, so a
wrong argument never reaches C.
"""

from __future__ import annotations

import ctypes
import os
import platform
import shlex
import shutil
import subprocess
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agent.llm.kernels.layout import LANES  # rows per group of the packed layout
from agent.llm.kernels.memo import once_per_frozen

# float32 value of every f16 bit pattern (the kernels convert f16 in hardware where they can).
F16_TABLE = (
    np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
)

# Up to this many tokens the fused matvec kernel beats dequantized tiles + sgemm (measured on a
# 5632x2048 matrix, 2 threads, at 48 tokens: Q4_0, Q4_K, Q8_0, Q2_K 1.1-1.4x faster, Q6_K 0.9x).
MV_MAX_TOKENS = 48
# From this many tokens on, the integer kernels (mm_*) beat the matvec (measured on 5632x2048,
# one thread, CPU time: 0.4-0.8x its time at 4 tokens, 0.2x at 32, 1.3-1.6x at one token). At two
# tokens a whole batched decode step gains too: bench/batch_step.py, 1.1B Q4_0, two rows' step
# against two one-row steps 1.29x with mm (1.11x with the matvec).
MM_MIN_TOKENS = 2
SOURCE = Path(__file__).with_name("kernels.c")
# No -ffast-math: the kernels do not need it (no reductions to reorder), and with -shared gcc 12
# links crtfastmath.o, which would turn on flush-to-zero for the whole process.
# ``AGENT_KERNELS_MARCH`` builds for another instruction set than this CPU's best (e.g. ``x86-64``
# for the portable integer kernels, ``x86-64-v3`` for AVX2): the tests use it to check every path.
MARCH = os.environ.get("AGENT_KERNELS_MARCH", "native")
FLAGS = ("-O3", f"-march={MARCH}", "-fopenmp", "-shared", "-fPIC", "-std=gnu11")
BUILDS = 0  # compilations done by this process (the tests check that the cache is used)

_F32, _F16, _U8, _I8, _U16 = (
    np.dtype(np.float32),
    np.dtype(np.float16),
    np.dtype(np.uint8),
    np.dtype(np.int8),
    np.dtype(np.uint16),
)
_ADVICE = (
    "install a C compiler with OpenMP (e.g. gcc) or point $CC at one; until then numba is used"
)


# ---------------------------------------------------------------------------------------------
# Build and cache
# ---------------------------------------------------------------------------------------------


def _compiler() -> list[str]:
    """The compiler command, its program resolved to a full path."""
    cmd = shlex.split(os.environ.get("CC", ""))
    if not cmd:
        cmd = [next((c for c in ("cc", "gcc") if shutil.which(c)), "cc")]
    path = shutil.which(cmd[0])
    if path is None:
        raise ImportError(f"C kernels: compiler {cmd[0]!r} not found; {_ADVICE}")
    return [os.path.realpath(path), *cmd[1:]]


def _cpu_id() -> str:
    """What -march=native depends on: this CPU's model and feature flags."""
    keys = ("model name", "flags", "Features", "CPU implementer", "CPU part")
    seen: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            seen.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return "\n".join([platform.machine(), platform.processor(), *(seen.get(k, "") for k in keys)])


def cache_dir() -> Path:
    if os.environ.get("AGENT_CACHE_DIR"):
        return Path(os.environ["AGENT_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agent"


def build(directory: Path | None = None) -> Path:
    """The shared library for this source, compiler and CPU: from the cache, else compiled now."""
    global BUILDS
    cmd = _compiler()
    try:
        version = subprocess.run(
            [*cmd, "--version"], capture_output=True, text=True, timeout=60
        ).stdout
        source = SOURCE.read_bytes()
    except (OSError, subprocess.SubprocessError) as exc:
        raise ImportError(
            f"C kernels: cannot run {cmd[0]} or read {SOURCE.name} ({exc}); {_ADVICE}"
        ) from None
    # zlib's checksums, not hashlib: that loads OpenSSL, 3.6 MB resident the engine has no other use
    # for
    blob = b"\0".join([source, *(part.encode() for part in (*FLAGS, *cmd, version, _cpu_id()))])
    name = f"kernels_c-{zlib.crc32(blob):08x}{zlib.adler32(blob):08x}.so"
    directory = Path(directory) if directory is not None else cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / name).is_file():
            return directory / name
        writable = os.access(directory, os.W_OK)
    except OSError:
        writable = False
    if not writable:  # a private directory for this process: rebuilt next time, but it works
        import tempfile

        directory = Path(tempfile.mkdtemp(prefix="agent-kernels-"))
    # Compile to a unique temporary name, then rename: concurrent builders never see half a file.
    tmp = directory / f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        proc = subprocess.run(
            [*cmd, *FLAGS, "-o", str(tmp), str(SOURCE), "-lm"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip()[-1500:]
            raise ImportError(
                f"C kernels: {' '.join(cmd)} failed (exit {proc.returncode}):\n{tail}\n{_ADVICE}"
            )
        os.replace(tmp, directory / name)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ImportError(
            f"C kernels: could not compile with {' '.join(cmd)} ({exc}); {_ADVICE}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    BUILDS += 1
    return directory / name


def _load() -> ctypes.CDLL:
    path = build()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise ImportError(
            f"C kernels: cannot load {path} ({exc}); delete it to rebuild, or {_ADVICE}"
        ) from None
    if lib.kernels_lanes() != LANES:
        raise ImportError(f"C kernels: {path} was built for another LANES; delete it to rebuild")
    return lib


_lib = _load()
_lib.kernels_set_threads.argtypes = [ctypes.c_int]
_lib.kernels_set_threads.restype = None
_lib.kernels_get_threads.restype = _lib.kernels_procs.restype = ctypes.c_int


# ---------------------------------------------------------------------------------------------
# Checked wrappers
# ---------------------------------------------------------------------------------------------


def _problem(a: Any, dtype: np.dtype, shape: tuple[int, ...], write: bool) -> str:
    if not isinstance(a, np.ndarray):
        return f"must be a numpy array, got {type(a).__name__}"
    if a.dtype != dtype:
        return f"must be {dtype}, got {a.dtype}"
    if a.ndim != len(shape):
        return f"must have {len(shape)} dimensions, got shape {a.shape}"
    if a.shape != shape:
        return f"must have shape {shape}, got {a.shape}"
    if not a.flags.c_contiguous:
        return "must be C-contiguous"
    return "must be writable" if write else "is fine"


_from_buffer, _addressof = ctypes.c_char.from_buffer, ctypes.addressof


def _address(a: np.ndarray) -> int:
    # a.ctypes.data costs ~0.8 us, a sixth of a small kernel call: this route is 3x faster, but
    # wants a writable, contiguous, non-empty buffer (else TypeError / ValueError).
    try:
        return _addressof(_from_buffer(a))  # type: ignore[arg-type]  # (numpy stubs: 3.12+ only)
    except (TypeError, ValueError):
        return a.ctypes.data


def _ptr(
    fn: str, what: str, a: Any, dtype: np.dtype, shape: tuple[int, ...], write: bool = False
) -> int:
    """The data address of ``a`` once it is a C-contiguous array of this dtype and shape."""
    if (
        not isinstance(a, np.ndarray)
        or a.dtype != dtype
        or a.shape != shape
        or not a.flags.c_contiguous
        or (write and not a.flags.writeable)
    ):
        raise ValueError(f"{fn}: {what} {_problem(a, dtype, shape, write)}")
    return _address(a)


def _tab_ptr(fn: str, tab: Any) -> int:
    if tab is F16_TABLE:
        return _F16_TABLE_PTR
    return _ptr(fn, "tab", tab, _F32, (1 << 16,))


_F16_TABLE_PTR = F16_TABLE.ctypes.data


def _dims(a: Any, n: int) -> tuple[int, ...]:
    shape = getattr(a, "shape", ())
    return shape if len(shape) == n else (-1,) * n


def _field_ptrs(
    fn: str, fields: tuple[Any, ...], spec: tuple[tuple[str, np.dtype, tuple[int, ...]], ...]
) -> tuple[int, int, list[int]]:
    """Check a matrix's fields against their spec; return n_groups, n_blocks and the addresses."""
    G, nb = _dims(fields[0], len(spec[0][2]) + 2)[:2]
    return (
        G,
        nb,
        [
            _ptr(fn, what, a, dtype, (G, nb, *tail))
            for a, (what, dtype, tail) in zip(fields, spec, strict=False)
        ],
    )


def _kernels(
    t: str, block: int, sum_size: int, fields: tuple[tuple[str, np.dtype, int], ...]
) -> tuple[Callable, Callable]:
    n = len(fields)
    # each field's shape after [n_groups, n_blocks]
    spec = tuple((what, dtype, (rows, LANES) if rows else (LANES,)) for what, dtype, rows in fields)
    pad = [None] * (6 - n)
    cmv, cdq = getattr(_lib, "mv_" + t), getattr(_lib, "dq_" + t)
    vp, i64 = ctypes.c_void_p, ctypes.c_int64
    cmv.argtypes = [vp] * 10 + [i64] * 3
    cdq.argtypes = [vp] * 7 + [i64, i64, vp, i64]
    cmv.restype = cdq.restype = None
    mv_name, dq_name = "mv_" + t, "dq_" + t

    def bind_mv(
        *fields: Any, tab: Any = F16_TABLE
    ) -> Callable[[np.ndarray, np.ndarray, np.ndarray], None]:
        """``mv`` with the matrix's fields and the f16 table checked once, for repeated calls:
        per call only x, xs and out are checked (decode makes ~150 such calls a token)."""
        G, nb, ptrs = _field_ptrs(mv_name, fields, spec)
        tab_ptr, n_in = _tab_ptr(mv_name, tab), nb * block

        def bound(x: np.ndarray, xs: np.ndarray, out: np.ndarray) -> None:
            nt = _dims(x, 2)[0]
            cmv(
                *ptrs,
                *pad,
                tab_ptr,
                _ptr(mv_name, "x", x, _F32, (nt, n_in)),
                _ptr(mv_name, "xs", xs, _F32, (nt, n_in // sum_size)),
                _ptr(mv_name, "out", out, _F32, (nt, G * LANES), write=True),
                G,
                nb,
                nt,
            )

        bound.keep = (fields, tab)  # type: ignore[attr-defined]  # the arrays behind the pointers
        return bound

    def mv(*args: Any) -> None:
        if len(args) != n + 4:
            raise TypeError(f"{mv_name} takes {n} fields, tab, x, xs, out ({len(args)} given)")
        bind_mv(*args[:n], tab=args[n])(*args[n + 1 :])

    mv.bind = bind_mv  # type: ignore[attr-defined]

    def dq(*args: Any) -> None:
        if len(args) != n + 4:
            raise TypeError(f"{dq_name} takes {n} fields, tab, g0, g1, wt ({len(args)} given)")
        G, nb, ptrs = _field_ptrs(dq_name, args[:n], spec)
        tab, g0, g1, wt = args[n:]
        g0, g1 = int(g0), int(g1)
        if not 0 <= g0 <= g1 <= G:
            raise ValueError(f"{dq_name}: row groups {g0}..{g1} outside 0..{G}")
        cdq(
            *ptrs,
            *pad,
            _tab_ptr(dq_name, tab),
            g0,
            g1,
            _ptr(dq_name, "wt", wt, _F32, (nb * block, (g1 - g0) * LANES), write=True),
            nb,
        )

    mv.__name__, dq.__name__ = mv_name, dq_name
    mv.__doc__ = (
        f"out[t] = W @ x[t] for a {t} matrix repacked by agent.llm.kernels.repack "
        f"(as kernels_numba.{mv_name})."
    )
    dq.__doc__ = (
        f"Dequantize row groups g0..g1 of a repacked {t} matrix into wt [n_in, rows] "
        f"(as kernels_numba.{dq_name})."
    )
    return mv, dq


# Per type: values per block, size of the sub-blocks xs sums, and the fields in repack.FIELDS order
# as (name, dtype, rows per block); rows 0 for a per-block value ([G, nb, LANES]).
_TYPES = {
    "q4_0": (32, 32, (("qs", _U8, 16), ("d", _U16, 0))),
    "q4_1": (32, 32, (("qs", _U8, 16), ("d", _U16, 0), ("m", _U16, 0))),
    "q5_0": (32, 32, (("qs", _U8, 16), ("qh", _U8, 4), ("d", _U16, 0))),
    "q5_1": (32, 32, (("qs", _U8, 16), ("qh", _U8, 4), ("d", _U16, 0), ("m", _U16, 0))),
    "q8_0": (32, 32, (("qs", _I8, 32), ("d", _U16, 0))),
    "q2_k": (256, 16, (("qs", _U8, 64), ("sc", _U8, 16), ("d", _U16, 0), ("dm", _U16, 0))),
    "q3_k": (256, 16, (("qs", _U8, 64), ("hm", _U8, 32), ("sc", _I8, 16), ("d", _U16, 0))),
    "q4_k": (
        256,
        32,
        (("qs", _U8, 128), ("sc", _U8, 8), ("mn", _U8, 8), ("d", _U16, 0), ("dm", _U16, 0)),
    ),
    "q5_k": (
        256,
        32,
        (
            ("qs", _U8, 128),
            ("qh", _U8, 32),
            ("sc", _U8, 8),
            ("mn", _U8, 8),
            ("d", _U16, 0),
            ("dm", _U16, 0),
        ),
    ),
    "q6_k": (256, 16, (("ql", _U8, 128), ("qh", _U8, 64), ("sc", _I8, 16), ("d", _U16, 0))),
}

mv_q4_0, dq_q4_0 = _kernels("q4_0", *_TYPES["q4_0"])
mv_q4_1, dq_q4_1 = _kernels("q4_1", *_TYPES["q4_1"])
mv_q5_0, dq_q5_0 = _kernels("q5_0", *_TYPES["q5_0"])
mv_q5_1, dq_q5_1 = _kernels("q5_1", *_TYPES["q5_1"])
mv_q8_0, dq_q8_0 = _kernels("q8_0", *_TYPES["q8_0"])
mv_q2_k, dq_q2_k = _kernels("q2_k", *_TYPES["q2_k"])
mv_q3_k, dq_q3_k = _kernels("q3_k", *_TYPES["q3_k"])
mv_q4_k, dq_q4_k = _kernels("q4_k", *_TYPES["q4_k"])
mv_q5_k, dq_q5_k = _kernels("q5_k", *_TYPES["q5_k"])
mv_q6_k, dq_q6_k = _kernels("q6_k", *_TYPES["q6_k"])


# ---------------------------------------------------------------------------------------------
# Repacking helpers (as repack._interleave / _interleave_u16) and threads
# ---------------------------------------------------------------------------------------------

_lib.interleave.argtypes = (
    [ctypes.c_void_p] + [ctypes.c_int64] * 5 + [ctypes.c_void_p] + [ctypes.c_int64] * 3
)
_lib.interleave_u16.argtypes = (
    [ctypes.c_void_p] + [ctypes.c_int64] * 5 + [ctypes.c_void_p] + [ctypes.c_int64] * 2
)
_lib.interleave.restype = _lib.interleave_u16.restype = None


def _blocks(
    fn: str, blocks: Any, start: int, width: int, nb: int
) -> tuple[int, int, int, int, int]:
    """Address, row count and byte strides of a (possibly read-only or strided) uint8 [rows, blocks,
    bytes]."""
    if not isinstance(blocks, np.ndarray) or blocks.dtype != _U8 or blocks.ndim != 3:
        raise ValueError(
            f"{fn}: blocks must be a uint8 array [rows, blocks, bytes], got "
            f"{getattr(blocks, 'dtype', type(blocks).__name__)} {getattr(blocks, 'shape', '')}"
        )
    if nb > blocks.shape[1] or start < 0 or start + width > blocks.shape[2]:
        raise ValueError(
            f"{fn}: {nb} blocks of bytes {start}..{start + width} do not fit blocks {blocks.shape}"
        )
    return (_address(blocks), blocks.shape[0], *blocks.strides)


def interleave(blocks: np.ndarray, start: int, out: np.ndarray) -> None:
    """out[g, b, k, r] = blocks[g * LANES + r, b, start + k]; rows past the end read as zero."""
    G, nb, width = _dims(out, 4)[:3]
    dst = _ptr("interleave", "out", out, _U8, (G, nb, width, LANES), write=True)
    _lib.interleave(
        *_blocks("interleave", blocks, int(start), width, nb), int(start), dst, G, nb, width
    )


def interleave_u16(blocks: np.ndarray, start: int, out: np.ndarray) -> None:
    """out[g, b, r] = the little-endian uint16 at byte ``start`` of row g * LANES + r, block b."""
    G, nb = _dims(out, 3)[:2]
    dst = _ptr("interleave_u16", "out", out, _U16, (G, nb, LANES), write=True)
    _lib.interleave_u16(
        *_blocks("interleave_u16", blocks, int(start), 2, nb), int(start), dst, G, nb
    )


# ---------------------------------------------------------------------------------------------
# Attention over the f16 KV cache (decode)
# ---------------------------------------------------------------------------------------------

_lib.attention_f16.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 5 + [ctypes.c_float]
_lib.attention_f16.restype = None
ATTENTION_HEAD_MULTIPLE = (
    _lib.kernels_vector_width()
)  # head sizes attention() takes: multiples of the vector width


def attention(k: np.ndarray, v: np.ndarray, q: np.ndarray, n_past: int, out: np.ndarray) -> None:
    """Causal attention of q [n, n_head, hd] (rows at positions n_past..) over one layer's KV cache
    k, v [positions, n_kv, hd] float16, into out [n, n_head, hd] float32."""
    n, n_head, hd = _dims(q, 3)
    positions, n_kv = _dims(k, 3)[:2]
    if (
        n_kv <= 0
        or n_head % n_kv
        or hd % ATTENTION_HEAD_MULTIPLE
        or not 0 <= n_past <= positions - n
    ):
        raise ValueError(
            f"attention: q {getattr(q, 'shape', None)} at position {n_past} does not fit "
            f"a cache {getattr(k, 'shape', None)} (heads a multiple of KV heads, head size "
            f"a multiple of {ATTENTION_HEAD_MULTIPLE})"
        )
    cache = (positions, n_kv, hd)
    _lib.attention_f16(
        _ptr("attention", "k", k, _F16, cache),
        _ptr("attention", "v", v, _F16, cache),
        _ptr("attention", "q", q, _F32, (n, n_head, hd)),
        _ptr("attention", "out", out, _F32, (n, n_head, hd), write=True),
        _F16_TABLE_PTR,
        n,
        int(n_past),
        n_head,
        n_kv,
        hd,
        float(1.0 / np.sqrt(hd)),
    )


def set_num_threads(n: int) -> None:
    """Threads for the calling thread's later kernel calls, 1 to the processors this process may
    run on (as kernels_numba's, capped at numba's pool)."""
    _lib.kernels_set_threads(max(1, min(int(n), _lib.kernels_procs())))


def get_num_threads() -> int:
    return int(_lib.kernels_get_threads())


_lib.kernels_release_threads.restype = None


def release_threads() -> None:
    """Free the calling thread's OpenMP workers: a thread done with the kernels for a while must
    not leave a pool that slows every other thread's kernel calls (see kernels.c)."""
    _lib.kernels_release_threads()


def threadsafe() -> bool:
    """Kernels may run from several Python threads at once (each gets its own OpenMP team)."""
    return True


_lib.attention_rows.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int64] * 4 + [ctypes.c_float]
_lib.attention_rows.restype = None


class AttentionRows:
    """Attention for the rows of a batched step, each row in its own sequence's KV cache: the
    caches are checked once a step, then ``self(li, q, out)`` is one kernel call a layer (instead
    of one per sequence, whose fixed cost grew with the batch)."""

    def __init__(self, k_caches: list, v_caches: list, pos: np.ndarray, n_head: int):
        """Row i: caches k_caches[i], v_caches[i] [n_layer, positions, n_kv, hd] float16 (every
        cache the same shape), position pos[i] (it sees 0..pos[i])."""
        n = len(k_caches)
        shape = getattr(k_caches[0], "shape", None) if n else None
        if not n or len(v_caches) != n or shape is None or len(shape) != 4:
            raise ValueError(
                "AttentionRows: one k and one v cache [layers, positions, kv, hd] a row"
            )
        n_layer, positions, n_kv, hd = shape
        for c in (*k_caches, *v_caches):
            _ptr("AttentionRows", "a cache", c, _F16, shape)
        self.pos = np.ascontiguousarray(pos, dtype=np.int64)
        if (
            self.pos.shape != (n,)
            or n_kv <= 0
            or n_head % n_kv
            or hd % ATTENTION_HEAD_MULTIPLE
            or self.pos.min() < 0
            or self.pos.max() >= positions
        ):
            raise ValueError(
                f"AttentionRows: {n} rows at positions {self.pos.tolist()[:8]} do not fit caches "
                f"{shape} with {n_head} heads (a multiple of KV heads, head size a multiple of "
                f"{ATTENTION_HEAD_MULTIPLE})"
            )
        self.caches = (k_caches, v_caches)  # kept alive while their addresses are used
        self.k = np.array([c.ctypes.data for c in k_caches], np.uint64)
        self.v = np.array([c.ctypes.data for c in v_caches], np.uint64)
        self.layer_bytes, self.n_layer = k_caches[0].strides[0], n_layer
        self.dims = (n, n_head, n_kv, hd)

    def __call__(self, li: int, q: np.ndarray, out: np.ndarray) -> None:
        """out [n, n_head, hd] float32 = attention of q [n, n_head, hd] in layer ``li``."""
        n, n_head, n_kv, hd = self.dims
        if not 0 <= li < self.n_layer:
            raise ValueError(f"AttentionRows: layer {li} of {self.n_layer}")
        k = self.k + np.uint64(li * self.layer_bytes)
        v = self.v + np.uint64(li * self.layer_bytes)
        _lib.attention_rows(
            _address(k),
            _address(v),
            _address(self.pos),
            _ptr("AttentionRows", "q", q, _F32, (n, n_head, hd)),
            _ptr("AttentionRows", "out", out, _F32, (n, n_head, hd), write=True),
            _F16_TABLE_PTR,
            n,
            n_head,
            n_kv,
            hd,
            float(1.0 / np.sqrt(hd)),
        )


# ---------------------------------------------------------------------------------------------
# Element-wise steps of a layer (kernels.c: rms_norm, rope, silu_mul)
# ---------------------------------------------------------------------------------------------

_lib.rms_norm.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 2 + [ctypes.c_double]
_lib.rope.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 3
_lib.silu_mul.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_int64]
_lib.rms_norm.restype = _lib.rope.restype = _lib.silu_mul.restype = None


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """x [nt, n] / sqrt(mean(x^2) + eps) * w [n], a new array (as Transformer.rms_norm)."""
    nt, n = _dims(x, 2)
    xp = _ptr("rms_norm", "x", x, _F32, (nt, n))
    wp = _ptr("rms_norm", "w", w, _F32, (n,))
    out = np.empty((nt, n), np.float32)
    if nt and n:
        _lib.rms_norm(xp, wp, _address(out), nt, n, float(eps))
    return out


def rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """x [nt, n_head, hd] rotated in place by cos, sin [nt, 1, hd / 2] (as Transformer.rope);
    returns x."""
    nt, n_head, hd = _dims(x, 3)
    xp = _ptr("rope", "x", x, _F32, (nt, n_head, hd), write=True)
    cp = _ptr("rope", "cos", cos, _F32, (nt, 1, hd // 2))
    sp = _ptr("rope", "sin", sin, _F32, (nt, 1, hd // 2))
    if hd % 2:
        raise ValueError(f"rope: head size {hd} is odd")
    if x.size:
        _lib.rope(xp, cp, sp, nt, n_head, hd)
    return x


def silu_mul(g: np.ndarray, u: np.ndarray) -> np.ndarray:
    """g = silu(g) * u in place (g, u float32 of one shape); returns g."""
    shape = getattr(g, "shape", ())
    gp = _ptr("silu_mul", "g", g, _F32, shape, write=True)
    up = _ptr("silu_mul", "u", u, _F32, shape)
    if g.size:
        _lib.silu_mul(gp, up, g.size)
    return g


# ---------------------------------------------------------------------------------------------
# Integer prefill: int8 activations times the weight codes (kernels.c, "Integer prefill")
# ---------------------------------------------------------------------------------------------

_lib.kernels_isa.restype = ctypes.c_char_p
ISA = _lib.kernels_isa().decode()  # "avx512-vnni", "avx-vnni", "avx2" or "portable"
_lib.quantize_q8.argtypes = [ctypes.c_void_p] + [ctypes.c_int64] * 4 + [ctypes.c_void_p] * 3
_lib.quantize_q8.restype = None


def quantize_q8(x: np.ndarray, qb: int, ss: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x float32 [nt, n] -> int8 q [nt, n], one scale per ``qb`` values d [nt, n / qb] (q * d
    approximates x), and the int32 sums of q over every ``ss`` values [nt, n / ss]."""
    nt, n = _dims(x, 2)
    xp = _ptr("quantize_q8", "x", x, _F32, (nt, n))
    if qb <= 0 or ss <= 0 or n <= 0 or n % qb or n % ss:
        raise ValueError(
            f"quantize_q8: rows of {n} values do not split into blocks of {qb} and {ss}"
        )
    q = np.empty((nt, n), np.int8)
    d = np.empty((nt, n // qb), np.float32)
    qsum = np.empty((nt, n // ss), np.int32)
    _lib.quantize_q8(xp, nt, n, qb, ss, _address(q), _address(d), _address(qsum))
    return q, d, qsum


_lib.round_q8.argtypes = [ctypes.c_void_p] + [ctypes.c_int64] * 3 + [ctypes.c_void_p]
_lib.round_q8.restype = None


def round_q8(x: np.ndarray, qb: int) -> np.ndarray:
    """x float32 [nt, n] rounded to its int8 quantization (q * d, one scale per ``qb`` values)."""
    nt, n = _dims(x, 2)
    xp = _ptr("round_q8", "x", x, _F32, (nt, n))
    if qb <= 0 or n % qb:
        raise ValueError(f"round_q8: rows of {n} values do not split into blocks of {qb}")
    y = np.empty((nt, n), np.float32)
    _lib.round_q8(xp, nt, n, qb, _address(y))
    return y


_lib.mm_x.argtypes = [ctypes.c_void_p] * 10 + [ctypes.c_int64] * 6
_lib.mm_x.restype = ctypes.c_int


def _int8_kernel(t: str, block: int, sum_size: int, fields: tuple) -> Callable:
    spec = tuple((what, dtype, (rows, LANES) if rows else (LANES,)) for what, dtype, rows in fields)
    pad = [None] * (6 - len(fields))
    # FUSED_TYPES have fused kernels for a few tokens (mms_*: the buffered mm for more tokens,
    # and on CPUs without AVX-512 VBMI/VNNI)
    name = "mm_" + t
    cmm = getattr(_lib, ("mms_" if t in FUSED_TYPES else "mm_") + t)
    cmm_address = ctypes.cast(cmm, ctypes.c_void_p).value
    mm_x = _lib.mm_x

    def bind_mm(*fields: Any, tab: Any = F16_TABLE) -> Callable[[np.ndarray], np.ndarray]:
        """``x -> x @ W.T`` ([nt, G * LANES], padded rows included) for many tokens at once: x is
        quantized to int8 (one scale per block of the type, as llama.cpp's Q8_0, or per 256
        values for K-quants, as its Q8_K), then multiplied with integer dot products -- both
        in one kernel call (``mm_x``)."""
        G, nb, ptrs = _field_ptrs(name, fields, spec)
        tab_ptr, n_in = _tab_ptr(name, tab), nb * block
        head = (cmm_address, *ptrs, *pad, tab_ptr)

        def matmul(x: np.ndarray) -> np.ndarray:
            nt = _dims(x, 2)[0]
            xp = _ptr(name, "x", x, _F32, (nt, n_in))
            out = np.empty((nt, G * LANES), np.float32)
            # a read-only activation seen last by this thread (memo.py) is unchanged: mm_x may
            # keep its int8 rows from the previous projection (q, k, v; gate, up)
            first = object()
            reuse = once_per_frozen(x, "q8 rows", lambda: first) is not first
            if nt and mm_x(*head, xp, _address(out), G, nb, nt, block, sum_size, reuse):
                raise MemoryError(f"{name}: no memory for {nt} quantized activation rows")
            return out

        matmul.keep = (fields, tab)  # type: ignore[attr-defined]
        # what decode_layers needs to make this product itself (the addresses stay valid while
        # ``matmul`` holds ``fields``)
        matmul.descriptor = (  # type: ignore[attr-defined]
            cmm_address,
            *ptrs,
            *[0] * len(pad),
            G,
            nb,
            block,
            sum_size,
        )
        return matmul

    bind_mm.__name__ = name
    return bind_mm


_lib.kernels_fused_types.restype = ctypes.c_char_p
FUSED_TYPES = ("q4_0", "q4_k", "q6_k")  # types with an mms_* entry point (fused or not)
# Types whose integer kernel beats the matvec from one token on (decode too): the ones fused on
# this CPU (AVX-512 VBMI/VNNI: all three; AVX2: Q4_0, Q4_K). AVX-512, 5632x2048 from memory, 2
# threads, one row: Q4_0 0.31 -> 0.18-0.21 ms, Q4_K 0.30 -> 0.23-0.25; 11008x4096: Q6_K 2.53 ->
# 1.63 ms. AVX2 figures in kernels.c.
MM_MIN_TOKENS_FOR = {t: 1 for t in _lib.kernels_fused_types().decode().split()}

# AMX tiles (Sapphire Rapids and later) for Q4_0 with 7-16 tokens: batched decode, short prompts
_lib.kernels_amx.restype = ctypes.c_int
AMX = _lib.kernels_amx()  # 1 in use, 0 not built for this CPU, -1 refused by the OS, -2 AGENT_AMX=0
if AMX == -1:
    warnings.warn(
        "C kernels: this CPU has AMX but the operating system refused the tile state "
        "(arch_prctl ARCH_REQ_XCOMP_PERM); batched Q4_0 products use AVX-512 VNNI instead, "
        "slower from 7 tokens on",
        RuntimeWarning,
        stacklevel=2,
    )

# Per type: the bound integer matmul maker (fields in repack.FIELDS order, as the matvec's).
MM = {t: _int8_kernel(t, *spec) for t, spec in _TYPES.items()}


# ---------------------------------------------------------------------------------------------
# A decode token through every layer in one call (kernels.c, decode_layers)
# ---------------------------------------------------------------------------------------------

if hasattr(_lib, "decode_layers"):  # built where F16C converts K and V to half precision
    DECODE_LINEAR, DECODE_LAYER = 11, 2 + 7 * 11  # int64 words, as in kernels.c
    _vp, _i64 = ctypes.c_void_p, ctypes.c_int64
    _lib.decode_layers.argtypes = (
        [_vp] + [_i64] * 2 + [_vp] * 5 + [_i64] + [_vp] + [_i64] * 5 + [ctypes.c_double] + [_vp] * 2
    )
    _lib.decode_layers.restype = ctypes.c_int

    class DecodeLayers:
        """``self(x, cos, sin, k_caches, v_caches, pos)``: decode rows x [nt, dim] (one token each,
        row r of its own sequence: caches k_caches[r], v_caches[r] [n_layer, positions, n_kv, hd]
        float16, position pos[r]) through every layer in one kernel call, x updated in place and
        each row's K and V written at its position. Built from the layers' norm weights and their
        projections' ``descriptor`` (each an integer kernel with no padded output rows)."""

        def __init__(
            self,
            norms: list[tuple[np.ndarray, np.ndarray]],
            descriptors: list[list[tuple[int, ...]]],
            n_head: int,
            n_kv: int,
            head_dim: int,
            ff: int,
            eps: float,
        ):
            dim = n_head * head_dim
            plan = np.zeros((len(norms), DECODE_LAYER), np.int64)
            if len(descriptors) != len(norms) or n_kv * head_dim > dim or n_head % n_kv:
                raise ValueError(f"DecodeLayers: {len(descriptors)} layers for {len(norms)} norms")
            for li, ((attn_norm, ffn_norm), lins) in enumerate(
                zip(norms, descriptors, strict=True)
            ):
                if len(lins) != 7 or any(len(d) != DECODE_LINEAR for d in lins):
                    raise ValueError("DecodeLayers: 7 projection descriptors a layer")
                plan[li, 0] = _ptr("DecodeLayers", "attn_norm", attn_norm, _F32, (dim,))
                plan[li, 1] = _ptr("DecodeLayers", "ffn_norm", ffn_norm, _F32, (dim,))
                plan[li, 2:] = np.array(lins, np.int64).reshape(-1)
            self.plan, self.norms = plan, norms  # the norms behind the plan's addresses
            self.dims = (len(norms), dim, n_head, n_kv, head_dim, ff)
            self.eps = float(eps)

        def __call__(
            self,
            x: np.ndarray,
            cos: np.ndarray,
            sin: np.ndarray,
            k_caches: list[np.ndarray],
            v_caches: list[np.ndarray],
            pos: np.ndarray,
        ) -> None:
            n_layer, dim, n_head, n_kv, hd, ff = self.dims
            nt = _dims(x, 2)[0]
            xp = _ptr("DecodeLayers", "x", x, _F32, (nt, dim), write=True)
            cp = _ptr("DecodeLayers", "cos", cos, _F32, (nt, 1, hd // 2))
            sp = _ptr("DecodeLayers", "sin", sin, _F32, (nt, 1, hd // 2))
            positions = _dims(k_caches[0] if len(k_caches) else None, 4)[1]
            shape = (n_layer, positions, n_kv, hd)
            rows = np.ascontiguousarray(pos, dtype=np.int64)
            if (
                not nt
                or len(k_caches) != nt
                or len(v_caches) != nt
                or rows.shape != (nt,)
                or rows.min() < 0
                or rows.max() >= positions
            ):
                raise ValueError(
                    f"DecodeLayers: {nt} rows need {nt} caches of {positions} positions and a "
                    f"position each inside them, got {len(k_caches)} caches, positions "
                    f"{rows.tolist()[:8]}"
                )
            k_base = np.array(
                [_ptr("DecodeLayers", "a k cache", c, _F16, shape, write=True) for c in k_caches],
                np.int64,
            )
            v_base = np.array(
                [_ptr("DecodeLayers", "a v cache", c, _F16, shape, write=True) for c in v_caches],
                np.int64,
            )
            scratch = np.empty(nt * (5 * dim + 2 * ff), np.float32)
            err = _lib.decode_layers(
                _address(self.plan),
                n_layer,
                nt,
                xp,
                cp,
                sp,
                _address(k_base),
                _address(v_base),
                positions * n_kv * hd,
                _address(rows),
                dim,
                n_head,
                n_kv,
                hd,
                ff,
                self.eps,
                _F16_TABLE_PTR,
                _address(scratch),
            )
            if err:
                raise MemoryError("decode_layers: no memory for the quantized activations")
