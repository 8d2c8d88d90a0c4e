"""Fast kernels against the numpy dequantizers (the oracle), on random blocks of every type."""

from __future__ import annotations

import mmap
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.llm import kernels
from agent.llm.formats.ggml_types import LAYOUTS, GGMLType
from agent.llm.formats.modelfile import TensorInfo
from agent.llm.formats.quants import dequantize
from agent.llm.kernels import quant_linear
from agent.llm.kernels import runtime as kernel_backend
from agent.llm.kernels.linear import Linear
from agent.llm.kernels.repack import LANES, PackedMatrix, release_pages, repack

QUANT_TYPES = [
    GGMLType.Q4_0,
    GGMLType.Q4_1,
    GGMLType.Q5_0,
    GGMLType.Q5_1,
    GGMLType.Q8_0,
    GGMLType.Q2_K,
    GGMLType.Q3_K,
    GGMLType.Q4_K,
    GGMLType.Q5_K,
    GGMLType.Q6_K,
]
# Byte ranges of each block's f16 fields: random bytes there could be inf/nan.
F16_FIELDS = {
    GGMLType.Q4_0: [0],
    GGMLType.Q4_1: [0, 2],
    GGMLType.Q5_0: [0],
    GGMLType.Q5_1: [0, 2],
    GGMLType.Q8_0: [0],
    GGMLType.Q2_K: [80, 82],
    GGMLType.Q3_K: [108],
    GGMLType.Q4_K: [0, 2],
    GGMLType.Q5_K: [0, 2],
    GGMLType.Q6_K: [208],
}


TILED = (
    65  # tokens: more than any kernel module's MV_MAX_TOKENS, so products go through tiles + sgemm
)


@pytest.fixture(autouse=True, scope="module", params=sorted(kernels.BACKENDS))
def kernel_module(request: pytest.FixtureRequest):
    """Every test here runs once per kernel module (C and numba) that loads on this machine."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGENT_KERNELS", request.param)
        mp.setenv("AGENT_PREFILL", "float")  # the float tiles here; int8 prefill: test_int8.py
        K = kernels.backend()
        if K is None or K.__name__ != kernels.BACKENDS[request.param]:
            pytest.skip(f"the {request.param} kernels do not load here")
        assert K.MV_MAX_TOKENS < TILED
        yield K


def random_blocks(t: GGMLType, n_rows: int, n_in: int, rng: np.random.Generator) -> np.ndarray:
    """Valid random blocks: random codes, small finite f16 scales."""
    layout = LAYOUTS[t]
    nb = n_rows * n_in // layout.block_size
    raw = rng.integers(0, 256, size=(nb, layout.type_size), dtype=np.uint8)
    for off in F16_FIELDS[t]:
        scale = rng.uniform(-0.02, 0.02, size=nb).astype(np.float16)
        raw[:, off : off + 2] = scale.view(np.uint8).reshape(nb, 2)
    return raw.reshape(-1)


def tensor(t: GGMLType, n_rows: int, n_in: int, seed: int = 0) -> TensorInfo:
    rng = np.random.default_rng(seed)
    if t == GGMLType.F32:
        data = rng.standard_normal((n_rows, n_in)).astype(np.float32).view(np.uint8).reshape(-1)
    elif t == GGMLType.F16:
        data = rng.standard_normal((n_rows, n_in)).astype(np.float16).view(np.uint8).reshape(-1)
    else:
        data = random_blocks(t, n_rows, n_in, rng)
    return TensorInfo(f"test.{t.name}", int(t), (n_rows, n_in), 0, data)


def reference(tinfo: TensorInfo, x: np.ndarray) -> np.ndarray:
    w = dequantize(tinfo.data, tinfo.type, tinfo.shape).astype(np.float64)
    return x.astype(np.float64) @ w.T


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    scale = np.abs(want).max() + 1e-6
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-4 * scale)


@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("n_tokens", [1, 3, TILED])  # fused matvec, and tiles + sgemm
def test_matches_dequantize_then_matmul(t: GGMLType, n_tokens: int) -> None:
    block = LAYOUTS[t].block_size
    n_rows, n_in = 200, 2 * block if block == 256 else 96  # 200 rows: one full group, one padded
    ti = tensor(t, n_rows, n_in, seed=n_tokens)
    x = np.random.default_rng(7).standard_normal((n_tokens, n_in)).astype(np.float32)
    got = kernels.QuantLinear(ti)(x)
    assert got.shape == (n_tokens, n_rows) and got.dtype == np.float32
    assert_close(got, reference(ti, x))


@pytest.mark.parametrize("t", [GGMLType.F32, GGMLType.F16], ids=lambda t: t.name)
@pytest.mark.parametrize("n_tokens", [1, 9])
def test_float_matrices(t: GGMLType, n_tokens: int) -> None:
    ti = tensor(t, 37, 64)
    x = np.random.default_rng(1).standard_normal((n_tokens, 64)).astype(np.float32)
    np.testing.assert_allclose(kernels.QuantLinear(ti)(x), reference(ti, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "t", [GGMLType.Q4_0, GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.Q6_K], ids=lambda t: t.name
)
@pytest.mark.parametrize("n_rows", [1, 127, 129, 2 * LANES + 3])
def test_odd_row_counts(t: GGMLType, n_rows: int) -> None:
    n_in = 3 * LAYOUTS[t].block_size
    ti = tensor(t, n_rows, n_in, seed=n_rows)
    for n_tokens in (1, 6, TILED + 1):
        x = np.random.default_rng(n_tokens).standard_normal((n_tokens, n_in)).astype(np.float32)
        assert_close(kernels.QuantLinear(ti)(x), reference(ti, x))


@pytest.mark.parametrize("threads", [1, 2])
def test_tiled_prefill_over_many_tiles_and_threads(
    monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    monkeypatch.setattr(
        quant_linear, "TILE_BYTES", 1
    )  # one row group per tile: many tiles, all workers busy
    old = kernels.get_threads()
    kernels.set_threads(threads)
    try:
        ti = tensor(GGMLType.Q4_K, 5 * LANES - 7, 512, seed=3)
        x = np.random.default_rng(2).standard_normal((TILED + 2, 512)).astype(np.float32)
        assert_close(kernels.QuantLinear(ti)(x), reference(ti, x))
    finally:
        kernels.set_threads(old)


def test_matvec_and_tiled_paths_agree() -> None:
    ti = tensor(GGMLType.Q6_K, 300, 768, seed=5)
    x = np.random.default_rng(3).standard_normal((TILED, 768)).astype(np.float32)
    lin = kernels.QuantLinear(ti)
    batched = lin(x)  # tiled: dequantize + sgemm
    one_by_one = np.concatenate([lin(x[i : i + 1]) for i in range(len(x))])  # fused matvec
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-4, atol=1e-4 * np.abs(batched).max())


def test_set_threads_caps_kernel_threads_and_keeps_blas_single_threaded(kernel_module) -> None:
    import os

    from threadpoolctl import threadpool_info

    old = kernels.get_threads()
    try:
        kernels.set_threads(1)
        ti = tensor(GGMLType.Q4_0, 64, 64)
        kernels.QuantLinear(ti)(np.ones((1, 64), np.float32))
        assert kernels.get_threads() == 1 and kernel_module.get_num_threads() == 1
        kernels.set_threads(64)  # more than the machine has: capped at its cores
        kernels.QuantLinear(ti)(np.ones((1, 64), np.float32))
        assert kernel_module.get_num_threads() == min(64, os.cpu_count() or 1)
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
        kernels.set_threads(0)
        assert kernels.get_threads() == 1
    finally:
        kernels.set_threads(old)


def test_repacked_size_stays_close_to_the_file_bytes() -> None:
    for t in QUANT_TYPES:
        ti = tensor(
            t, LANES * 2, 2 * LAYOUTS[t].block_size if LAYOUTS[t].block_size == 256 else 256
        )
        pm = repack(ti.data, ti.type, ti.shape)
        assert isinstance(pm, PackedMatrix) and pm.n_out == LANES * 2 and pm.n_groups == 2
        assert ti.data.nbytes <= pm.nbytes <= 1.06 * ti.data.nbytes, (
            t.name,
            pm.nbytes / ti.data.nbytes,
        )


@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
def test_repack_in_pieces_equals_repack_in_one(
    t: GGMLType, kernel_module, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.llm.kernels import repack as repack_module

    ti = tensor(
        t, 3 * LANES + 5, 2 * LAYOUTS[t].block_size if LAYOUTS[t].block_size == 256 else 256
    )
    whole = repack(ti.data, ti.type, ti.shape, release=False, kernels=kernel_module)
    monkeypatch.setattr(repack_module, "CHUNK_ROWS", LANES)  # four pieces, the last one 5 rows
    pieces = repack(ti.data, ti.type, ti.shape, release=False, kernels=kernel_module)
    assert len(pieces.arrays) == len(whole.arrays)
    for a, b in zip(pieces.arrays, whole.arrays, strict=False):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_repack_rejects_what_it_cannot_hold() -> None:
    ti = tensor(GGMLType.Q4_0, 4, 64)
    with pytest.raises(ValueError, match="do not hold a Q4_0 matrix"):
        repack(ti.data[:-1], ti.type, ti.shape)
    with pytest.raises(ValueError, match="do not hold"):
        repack(ti.data, ti.type, (4, 48))  # 48 is not a multiple of the 32-value block
    with pytest.raises(ValueError, match="no repacked layout"):
        repack(ti.data, GGMLType.F16, ti.shape)


def test_bad_shapes_are_reported() -> None:
    lin = kernels.QuantLinear(tensor(GGMLType.Q8_0, 8, 64))
    with pytest.raises(ValueError, match=r"expected activations \[n, 64\]"):
        lin(np.ones((2, 32), np.float32))
    vec = TensorInfo("norm", int(GGMLType.F32), (64,), 0, np.zeros(256, np.uint8))
    with pytest.raises(ValueError, match="not a matrix"):
        kernels.QuantLinear(vec)


def test_release_pages_keeps_mapped_data_readable(tmp_path) -> None:
    ti = tensor(GGMLType.Q4_0, 2 * LANES, 4096, seed=9)
    path = tmp_path / "blocks.bin"
    path.write_bytes(b"\0" * 100 + ti.data.tobytes())  # an unaligned start, as in a model file
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    view = np.frombuffer(mm, np.uint8)[100:]
    pm = repack(view, ti.type, ti.shape)  # releases the pages it copied
    assert np.array_equal(view, ti.data)  # faulted back in from the file
    mapped = TensorInfo("mapped", ti.type, ti.shape, 100, view)
    x = np.random.default_rng(0).standard_normal((1, 4096)).astype(np.float32)
    assert_close(kernels.QuantLinear(mapped)(x), reference(ti, x))
    assert pm.nbytes >= ti.data.nbytes
    anon = ti.data.copy()
    release_pages(anon)  # not a file mapping: must be left alone
    assert np.array_equal(anon, ti.data)
    del view, mapped
    mm.close()


def test_reference_fallback_when_asked_or_when_no_kernels_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setenv("AGENT_KERNELS", "reference")
    assert kernels.linear_class() is Linear
    monkeypatch.delenv("AGENT_KERNELS")
    assert kernels.linear_class() is kernels.QuantLinear
    for name in kernels.BACKENDS.values():
        monkeypatch.setitem(sys.modules, name, None)  # import now raises ImportError
    monkeypatch.setattr(kernel_backend, "_warned", False)
    monkeypatch.setattr(kernel_backend, "_failed", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert kernels.linear_class() is Linear
        assert kernels.linear_class() is Linear
    warned = [str(w.message) for w in caught if "fast kernels unavailable" in str(w.message)]
    assert len(warned) == 1 and "numba" in warned[0]
    assert "\n" not in warned[0] and "agent[numba]" in warned[0]  # one line that says what to do
    ti = tensor(GGMLType.Q5_1, 16, 64)  # QuantLinear still works, through the reference tiles
    x = np.ones((2, 64), np.float32)
    assert_close(kernels.QuantLinear(ti)(x), reference(ti, x))


@settings(max_examples=25, deadline=None)
@given(
    t=st.sampled_from(QUANT_TYPES),
    n_rows=st.integers(1, 300),
    n_blocks=st.integers(1, 3),
    n_tokens=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_fuzz_random_blocks_and_shapes(
    t: GGMLType, n_rows: int, n_blocks: int, n_tokens: int, seed: int
) -> None:
    n_in = n_blocks * LAYOUTS[t].block_size
    ti = tensor(t, n_rows, n_in, seed=seed % 1000)
    x = np.random.default_rng(seed).standard_normal((n_tokens, n_in)).astype(np.float32)
    assert_close(kernels.QuantLinear(ti)(x), reference(ti, x))


def test_engine_with_kernels_matches_reference_engine(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.llm import load_model
    from agent.llm.formats.fixtures import make_model

    path = make_model(tmp_path / "tiny-q4_k_m.gguf", shape="tiny", qtype="q4_k_m")
    ids = list(range(5, 40))
    fast = load_model(path, n_ctx=64)
    assert isinstance(fast.transformer.layers[0].wq, kernels.QuantLinear)
    got = np.concatenate([fast.eval(ids[:20]), fast.eval(ids[20:21]), fast.eval(ids[21:])])
    monkeypatch.setenv("AGENT_KERNELS", "reference")
    slow = load_model(path, n_ctx=64)
    assert type(slow.transformer.layers[0].wq) is Linear
    want = slow.eval(ids)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-3 * np.abs(want).max())


def test_prefill_on_numbas_workqueue_layer_runs_tiles_serially() -> None:
    """workqueue (numba's fallback layer) aborts if two Python threads launch kernels at once."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from agent.llm import kernels\n"
        "from tests.llm.kernels.test_kernels import tensor, reference, assert_close\n"
        "from agent.llm.formats.ggml_types import GGMLType\n"
        "kernels.set_threads(2)\n"
        "from agent.llm.kernels import quant_linear; quant_linear.TILE_BYTES = 1\n"
        "ti = tensor(GGMLType.Q4_0, 600, 256)\n"
        "x = np.ones((70, 256), np.float32)\n"
        "assert_close(kernels.QuantLinear(ti)(x), reference(ti, x))\n"
        "import numba; assert numba.threading_layer() == 'workqueue'\n"
    )
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue", AGENT_KERNELS="numba")
    root = os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    )
    p = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-2000:]


def test_the_c_kernels_build_where_gcc_is_at_hand() -> None:
    """A kernels.c that no longer compiles must fail here: the C-kernel test modules skip when the
    import fails (machines without a compiler), so a build error would only show as skips."""
    import shutil
    import sys

    if not sys.platform.startswith("linux") or shutil.which("gcc") is None:
        pytest.skip("gcc (with OpenMP) is what this guard assumes")
    from agent.llm.kernels import c_backend  # raises with the compiler's message if it fails

    assert c_backend.ISA in {"avx512-vnni", "avx-vnni", "avx2", "portable"}
