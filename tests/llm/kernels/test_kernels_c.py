"""The C kernels (agent.llm.kernels.c_backend) against the numpy dequantizers and the numba
kernels."""

from __future__ import annotations

import mmap
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

try:
    from agent.llm.kernels import c_backend as C
except ImportError as exc:  # no working C compiler: kernels.py falls back to numba
    pytest.skip(f"C kernels unavailable: {exc}", allow_module_level=True)

from agent.llm.formats.ggml_types import GGMLType
from agent.llm.formats.quants import dequantize
from agent.llm.kernels import numba_backend as N
from agent.llm.kernels.repack import LANES, repack
from tests.llm.kernels.test_kernels import QUANT_TYPES, random_blocks

ROOT = Path(__file__).resolve().parents[3]
SUM16 = {GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q6_K}  # types whose xs sums 16 values, not 32
N_OUT = 4 * LANES + 45  # five row groups, the last one padded


def matrix(t: GGMLType, n_out: int, n_in: int, seed: int = 0):
    raw = random_blocks(t, n_out, n_in, np.random.default_rng(seed))
    return raw, repack(raw, t, (n_out, n_in), release=False, kernels=C)


def activations(t: GGMLType, n_tok: int, n_in: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((n_tok, n_in)).astype(np.float32)
    return x, x.reshape(n_tok, -1, 16 if t in SUM16 else 32).sum(axis=2, dtype=np.float32)


def matvec(K, t: GGMLType, pm, x: np.ndarray, xs: np.ndarray) -> np.ndarray:
    out = np.full((len(x), pm.n_groups * LANES), np.nan, np.float32)  # the kernel must write it all
    getattr(K, f"mv_{t.name.lower()}")(*pm.arrays, K.F16_TABLE, x, xs, out)
    return out


@pytest.mark.parametrize("n_in", [256, 512])
@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
def test_matvec_matches_dequantize_and_numba(t: GGMLType, n_in: int) -> None:
    raw, pm = matrix(t, N_OUT, n_in, seed=n_in)
    w = dequantize(raw, t, (N_OUT, n_in)).astype(np.float64)
    for n_tok in (1, 3, 32):
        x, xs = activations(t, n_tok, n_in, seed=n_tok)
        got = matvec(C, t, pm, x, xs)
        want = x.astype(np.float64) @ w.T
        tol = 2e-5 * np.abs(want).max()
        np.testing.assert_allclose(got[:, :N_OUT], want, rtol=0, atol=tol)
        assert not got[:, N_OUT:].any()  # padded rows are zero blocks
        np.testing.assert_allclose(got, matvec(N, t, pm, x, xs), rtol=0, atol=tol)


@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
def test_dequantize_tiles_match_dequantize_and_numba(t: GGMLType) -> None:
    n_in = 512
    raw, pm = matrix(t, N_OUT, n_in, seed=3)
    w = dequantize(raw, t, (N_OUT, n_in))
    name = f"dq_{t.name.lower()}"
    for g0, g1 in ((1, 4), (4, 5), (2, 2)):  # middle groups, the padded last one, none
        wt = np.full((n_in, (g1 - g0) * LANES), np.nan, np.float32)
        getattr(C, name)(*pm.arrays, C.F16_TABLE, g0, g1, wt)
        rows = min(g1 * LANES, N_OUT) - g0 * LANES
        np.testing.assert_allclose(
            wt[:, : max(rows, 0)], w[g0 * LANES : g0 * LANES + max(rows, 0)].T, rtol=1e-6, atol=1e-9
        )
        assert not wt[:, max(rows, 0) :].any()
        ref = np.empty_like(wt)
        getattr(N, name)(*pm.arrays, N.F16_TABLE, g0, g1, ref)
        np.testing.assert_allclose(wt, ref, rtol=1e-6, atol=1e-9)


def test_the_f16_table_may_be_any_equal_array() -> None:
    _, pm = matrix(GGMLType.Q4_0, 200, 256)
    x, xs = activations(GGMLType.Q4_0, 2, 256)
    out = np.empty((2, pm.n_groups * LANES), np.float32)
    C.mv_q4_0(*pm.arrays, C.F16_TABLE.copy(), x, xs, out)
    np.testing.assert_array_equal(out, matvec(C, GGMLType.Q4_0, pm, x, xs))
    np.testing.assert_array_equal(C.F16_TABLE, N.F16_TABLE)


def test_interleave_matches_numba_on_read_only_and_strided_blocks(tmp_path: Path) -> None:
    n_rows, nb, size = 2 * LANES + 44, 3, 34  # not a multiple of LANES: the last group is padded
    blocks = np.random.default_rng(0).integers(0, 256, (n_rows, nb, size), dtype=np.uint8)
    path = tmp_path / "blocks.bin"
    path.write_bytes(b"\0" * 7 + blocks.tobytes())  # unaligned, as tensors in a model file
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    mapped = np.frombuffer(mm, np.uint8, offset=7).reshape(blocks.shape)
    wide = np.zeros((n_rows, nb + 2, size + 5), np.uint8)
    wide[:, 1:-1, 2:-3] = blocks
    views = {"mapped": mapped, "strided": wide[:, 1:-1, 2:-3], "plain": blocks}
    G = -(-n_rows // LANES)
    for label, src in views.items():
        assert not mapped.flags.writeable
        for start, width in ((2, 32), (0, 1), (30, 4)):
            got, want = (np.full((G, nb, width, LANES), 7, np.uint8) for _ in range(2))
            C.interleave(src, start, got)
            N.interleave(blocks, start, want)
            np.testing.assert_array_equal(got, want, err_msg=label)
        got16, want16 = (np.full((G, nb, LANES), 7, np.uint16) for _ in range(2))
        C.interleave_u16(src, 4, got16)
        N.interleave_u16(blocks, 4, want16)
        np.testing.assert_array_equal(got16, want16, err_msg=label)
    del mapped, views
    mm.close()


@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
def test_repacking_with_c_equals_repacking_with_numba(t: GGMLType) -> None:
    raw = random_blocks(t, N_OUT, 512, np.random.default_rng(5))
    ours, theirs = (repack(raw, t, (N_OUT, 512), release=False, kernels=K) for K in (C, N))
    for a, b in zip(ours.arrays, theirs.arrays, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_thread_counts_are_per_thread_and_do_not_change_results() -> None:
    t = GGMLType.Q6_K
    _, pm = matrix(t, N_OUT, 512)
    x, xs = activations(t, 3, 512)
    old = C.get_num_threads()
    try:
        C.set_num_threads(1)
        assert C.get_num_threads() == 1
        one = matvec(C, t, pm, x, xs)
        seen = {}

        def worker(n: int) -> None:
            C.set_num_threads(n)
            seen[n] = (C.get_num_threads(), matvec(C, t, pm, x, xs))

        threads = [threading.Thread(target=worker, args=(n,)) for n in (2, 3, 2, 1)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert C.get_num_threads() == 1  # the other threads' settings did not leak here
        procs = len(os.sched_getaffinity(0))
        for n, (count, out) in seen.items():
            assert count == min(n, procs)
            np.testing.assert_array_equal(out, one)  # each row group is summed by one thread
        assert C.threadsafe() is True
        C.set_num_threads(0)
        assert C.get_num_threads() == 1
        C.set_num_threads(10**6)  # capped at the processors, as numba's pool caps kernels_numba's
        assert C.get_num_threads() == procs
    finally:
        C.set_num_threads(old)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: no worker threads")
def test_release_threads_frees_the_calling_threads_workers_and_kernels_still_work() -> None:
    t = GGMLType.Q4_0
    _, pm = matrix(t, N_OUT, 512)
    x, xs = activations(t, 2, 512)
    want = matvec(C, t, pm, x, xs)
    counts: dict[str, int] = {}
    release, done = threading.Event(), threading.Event()

    def threads_now() -> int:
        return len(os.listdir("/proc/self/task"))

    def idle_kernel_user() -> None:  # as the batch scheduler: runs kernels, then waits
        C.set_num_threads(2)
        matvec(C, t, pm, x, xs)
        counts["with pool"] = threads_now()
        release.wait()
        C.release_threads()
        deadline = time.monotonic() + 10  # the workers exit just after the call returns
        while threads_now() >= counts["with pool"] and time.monotonic() < deadline:
            time.sleep(0.01)
        counts["released"] = threads_now()
        np.testing.assert_array_equal(matvec(C, t, pm, x, xs), want)  # workers come back
        C.release_threads()
        done.set()

    th = threading.Thread(target=idle_kernel_user)
    th.start()
    try:
        while "with pool" not in counts and th.is_alive():
            th.join(0.01)
        release.set()
        th.join(30)
    finally:
        release.set()
    assert done.is_set()
    assert counts["released"] < counts["with pool"]  # its OpenMP worker is gone


def test_wrong_arguments_raise_value_errors() -> None:
    t = GGMLType.Q4_K
    _, pm = matrix(t, 200, 512)
    x, xs = activations(t, 2, 512)
    out = np.empty((2, pm.n_groups * LANES), np.float32)
    tab = C.F16_TABLE
    mv = C.mv_q4_k
    with pytest.raises(ValueError, match="x must be float32, got float64"):
        mv(*pm.arrays, tab, x.astype(np.float64), xs, out)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        mv(*pm.arrays, tab, np.repeat(x, 2, axis=1)[:, ::2], xs, out)
    with pytest.raises(ValueError, match="x must have 2 dimensions"):
        mv(*pm.arrays, tab, x[0], xs, out)
    with pytest.raises(ValueError, match=r"xs must have shape \(2, 16\)"):
        mv(*pm.arrays, tab, x, xs[:, :8], out)
    with pytest.raises(ValueError, match=r"out must have shape \(2, 256\)"):
        mv(*pm.arrays, tab, x, xs, out[:, :200])
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writable"):
        mv(*pm.arrays, tab, x, xs, out)
    out.flags.writeable = True
    with pytest.raises(ValueError, match="qs must be uint8, got int8"):
        mv(pm.arrays[0].view(np.int8), *pm.arrays[1:], tab, x, xs, out)
    with pytest.raises(ValueError, match="sc must have shape"):
        mv(pm.arrays[0], pm.arrays[1][:1], *pm.arrays[2:], tab, x, xs, out)
    with pytest.raises(ValueError, match="mn must be a numpy array"):
        mv(pm.arrays[0], pm.arrays[1], pm.arrays[2].tolist(), *pm.arrays[3:], tab, x, xs, out)
    with pytest.raises(ValueError, match="tab must be float32"):
        mv(*pm.arrays, np.zeros(1 << 16), x, xs, out)
    with pytest.raises(TypeError, match="takes 5 fields"):
        mv(*pm.arrays[:4], tab, x, xs, out)
    wt = np.empty((512, LANES), np.float32)
    with pytest.raises(ValueError, match="row groups 1..3 outside 0..2"):
        C.dq_q4_k(*pm.arrays, tab, 1, 3, wt)
    with pytest.raises(ValueError, match=r"wt must have shape \(512, 128\)"):
        C.dq_q4_k(*pm.arrays, tab, 0, 1, wt.T)
    blocks = np.zeros((200, 2, 144), np.uint8)
    with pytest.raises(ValueError, match="blocks must be a uint8 array"):
        C.interleave(blocks.view(np.int8), 0, np.empty((2, 2, 4, LANES), np.uint8))
    with pytest.raises(ValueError, match="do not fit"):
        C.interleave(blocks, 142, np.empty((2, 2, 4, LANES), np.uint8))
    with pytest.raises(ValueError, match="out must be uint16"):
        C.interleave_u16(blocks, 0, np.empty((2, 2, LANES), np.uint8))
    empty = np.empty((0, pm.n_groups * LANES), np.float32)  # no tokens: nothing to do, no error
    mv(*pm.arrays, tab, x[:0], xs[:0], empty)


def test_build_is_cached_and_survives_an_unwritable_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = C.BUILDS
    first = C.build(tmp_path)
    assert (
        C.BUILDS == builds + 1 and first.parent == tmp_path and first.name.startswith("kernels_c-")
    )
    stamp = first.stat().st_mtime_ns
    assert (
        C.build(tmp_path) == first and C.BUILDS == builds + 1 and first.stat().st_mtime_ns == stamp
    )
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary files left behind
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    elsewhere = C.build(blocked / "cache")  # cannot be created: built in a private temp dir
    assert elsewhere.is_file() and elsewhere.name == first.name and elsewhere.parent != tmp_path
    shutil.rmtree(elsewhere.parent)
    monkeypatch.setenv("AGENT_CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert C.cache_dir() == tmp_path / "xdg" / "agent"
    monkeypatch.setenv("AGENT_CACHE_DIR", str(tmp_path / "own"))
    assert C.cache_dir() == tmp_path / "own"


def test_a_failing_compiler_gives_an_import_error_with_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "badcc"
    script.write_text("#!/bin/sh\necho 'fatal: this compiler is broken' >&2\nexit 3\n")
    script.chmod(0o755)
    monkeypatch.setenv("CC", str(script))
    with pytest.raises(ImportError, match=r"(?s)failed \(exit 3\).*this compiler is broken.*\$CC"):
        C.build(tmp_path / "cache")


def test_missing_compiler_makes_the_import_fail_helpfully(tmp_path: Path) -> None:
    env = dict(os.environ, CC="/nonexistent", AGENT_CACHE_DIR=str(tmp_path))
    p = subprocess.run(
        [sys.executable, "-c", "import agent.llm.kernels.c_backend"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode != 0
    assert "ImportError" in p.stderr and "'/nonexistent' not found" in p.stderr, p.stderr[-2000:]
    assert "install a C compiler" in p.stderr and "$CC" in p.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("n_head, n_kv", [(8, 2), (4, 4)])  # grouped-query and plain multi-head
@pytest.mark.parametrize("n, n_past", [(1, 0), (1, 70), (5, 33)])
def test_attention_matches_the_numpy_path(n_head: int, n_kv: int, n: int, n_past: int) -> None:
    check_attention(n_head, n_kv, n, n_past, positions=128)


# a decode row over >= 1 MB of one layer's K (8 KV heads x 64 x f16 = 1 KB a position): the
# threads split the positions (attend_streamed), each position's heads read together
@pytest.mark.parametrize("n_head, n_kv", [(16, 8), (8, 8)])
@pytest.mark.parametrize("n_past", [1023, 1200])
def test_long_context_decode_attention_matches_the_numpy_path(
    n_head: int, n_kv: int, n_past: int
) -> None:
    check_attention(n_head, n_kv, 1, n_past, positions=1201)


def check_attention(n_head: int, n_kv: int, n: int, n_past: int, positions: int) -> None:
    from types import SimpleNamespace

    from agent.llm.transformer import Transformer

    rng = np.random.default_rng(n_past)
    hd = 64
    cache = SimpleNamespace(
        info=SimpleNamespace(n_head_kv=n_kv),
        attend=None,  # numpy and sgemm
        k_cache=rng.standard_normal((1, positions, n_kv, hd)).astype(np.float16),
        v_cache=rng.standard_normal((1, positions, n_kv, hd)).astype(np.float16),
    )
    q = rng.standard_normal((n, n_head, hd)).astype(np.float32)
    want = Transformer.attention(cache, q, 0, n_past)
    out = np.full_like(q, np.nan)
    C.attention(cache.k_cache[0], cache.v_cache[0], q, n_past, out)
    np.testing.assert_allclose(out.reshape(n, -1), want, rtol=0, atol=1e-5)


def test_attention_rejects_what_does_not_fit() -> None:
    k = np.zeros((16, 2, 64), np.float16)
    q, out = np.zeros((2, 8, 64), np.float32), np.zeros((2, 8, 64), np.float32)
    with pytest.raises(ValueError, match="does not fit"):
        C.attention(k, k, q, 15, out)  # rows at positions 15 and 16 of a 16-position cache
    with pytest.raises(ValueError, match="does not fit"):
        C.attention(k, k, np.zeros((2, 7, 64), np.float32), 0, out)  # 7 heads over 2 KV heads
    with pytest.raises(ValueError, match="float16"):
        C.attention(k.astype(np.float32), k, q, 0, out)
    with pytest.raises(ValueError, match="writable"):
        out.flags.writeable = False
        C.attention(k, k, q, 0, out)


def test_attention_rows_equals_one_call_per_sequence() -> None:
    rng = np.random.default_rng(7)
    n_layer, positions, n_head, n_kv, hd = 3, 96, 8, 2, 64
    caches = [
        tuple(rng.standard_normal((n_layer, positions, n_kv, hd)).astype(np.float16) for _ in "kv")
        for _ in range(3)
    ]
    # a decode row in cache 0 at 40, a 3-row prompt chunk in cache 1 at 10.., a row in cache 2 at 0
    owner, pos = [0, 1, 1, 1, 2], np.array([40, 10, 11, 12, 0])
    rows = C.AttentionRows(
        [caches[c][0] for c in owner], [caches[c][1] for c in owner], pos, n_head
    )
    q = rng.standard_normal((len(owner), n_head, hd)).astype(np.float32)
    for li in range(n_layer):
        got = np.full_like(q, np.nan)
        rows(li, q, got)
        want = np.full_like(q, np.nan)
        for c, (a, b) in enumerate([(0, 1), (1, 4), (4, 5)]):
            k, v = caches[c]
            C.attention(k[li], v[li], q[a:b], int(pos[a]), want[a:b])
        np.testing.assert_array_equal(got, want)  # the same arithmetic, item by item


def test_attention_rows_rejects_what_does_not_fit() -> None:
    k = np.zeros((2, 16, 2, 64), np.float16)
    q, out = np.zeros((1, 8, 64), np.float32), np.zeros((1, 8, 64), np.float32)
    with pytest.raises(ValueError, match="do not fit"):
        C.AttentionRows([k], [k], np.array([16]), 8)  # position 16 of a 16-position cache
    with pytest.raises(ValueError, match="do not fit"):
        C.AttentionRows([k], [k], np.array([0]), 7)  # 7 heads over 2 KV heads
    with pytest.raises(ValueError, match="a cache"):
        C.AttentionRows([k], [np.zeros((2, 8, 2, 64), np.float16)], np.array([0]), 8)
    with pytest.raises(ValueError, match="one k and one v"):
        C.AttentionRows([], [], np.array([], np.int64), 8)
    rows = C.AttentionRows([k], [k], np.array([3]), 8)
    with pytest.raises(ValueError, match="layer 2 of 2"):
        rows(2, q, out)
    with pytest.raises(ValueError, match="q must have shape"):
        rows(0, np.zeros((2, 8, 64), np.float32), out)


def test_bound_matvec_checks_its_activations_and_matches_the_plain_call() -> None:
    raw, pm = matrix(GGMLType.Q4_K, N_OUT, 512)
    x, xs = activations(GGMLType.Q4_K, 3, 512)
    bound = C.mv_q4_k.bind(*pm.arrays)
    out = np.full((3, pm.n_groups * LANES), np.nan, np.float32)
    bound(x, xs, out)
    np.testing.assert_array_equal(out, matvec(C, GGMLType.Q4_K, pm, x, xs))
    with pytest.raises(ValueError, match="x must have shape"):
        bound(x[:, :256].copy(), xs, out)
    with pytest.raises(ValueError, match="must have shape"):
        C.mv_q4_k.bind(pm.arrays[0][:, :1].copy(), *pm.arrays[1:])  # fields that disagree
