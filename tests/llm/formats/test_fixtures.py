"""Random-weight fixtures: real shapes, llama.cpp's type mixes, valid blocks, sane weights,
vocabs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from agent.errors import ModelFormatError
from agent.llm.formats.files import open_model_file
from agent.llm.formats.fixtures import (
    QTYPES,
    SHAPES,
    FixtureError,
    ModelShape,
    main,
    make_model,
    synthetic_vocab,
    tensor_shapes,
    tensor_type,
    use_more_bits,
)
from agent.llm.formats.ggml_types import GGMLType
from agent.llm.formats.quants import dequantize
from agent.llm.hparams import model_info
from tests.golden import model_paths, vocab_dir

G = GGMLType
GOLDEN = {p.name: p for p in model_paths()}


def types_of(path: Path) -> dict[str, str]:
    return {n: t.type_name for n, t in open_model_file(path).tensors.items()}


@pytest.mark.parametrize("fmt", ["gguf", "ggml"])
@pytest.mark.parametrize("qtype", list(QTYPES))
def test_every_type_writes_a_readable_model(tmp_path: Path, qtype: str, fmt: str) -> None:
    path = make_model(tmp_path / f"m.{fmt}", "tiny_gqa", qtype, format=fmt)
    mf = open_model_file(path)
    info = model_info(mf)
    s = SHAPES["tiny_gqa"]
    assert (info.n_vocab, info.n_embd, info.n_layer, info.n_head, info.n_head_kv, info.n_ff) == (
        s.n_vocab,
        s.n_embd,
        s.n_layer,
        s.n_head,
        s.n_head_kv,
        s.n_ff,
    )
    assert mf.metadata["general.file_type"] == QTYPES[qtype].ftype
    assert mf.format == ("gguf-v3" if fmt == "gguf" else "ggjt-v3")
    assert [n for n, _ in tensor_shapes(s)] == list(mf.tensors)
    base = QTYPES[qtype].base
    assert mf.tensors["blk.0.attn_q.weight"].type == base


@pytest.mark.parametrize(
    "golden, qtype",
    [
        ("tiny.ggmlv3.q2_K.bin", "q2_k_mix"),
        ("tiny.ggmlv3.q3_K_M.bin", "q3_k_m"),
        ("tiny.ggmlv3.q4_K_M.bin", "q4_k_m"),
        ("tiny.ggmlv3.q5_K_S.bin", "q5_k_s"),
        ("tiny.ggmlv3.q6_K.bin", "q6_k_mix"),
        ("tiny.ggmlv3.q4_0.bin", "q4_0_mix"),
        ("tiny.ggmlv3.q5_1.bin", "q5_1_mix"),
        ("tiny.ggmlv3.q8_0.bin", "q8_0_mix"),
        ("tiny.ggmlv3.f16.bin", "f16_mix"),
    ],
)
def test_mixes_match_llama_cpp_quantizer_output(tmp_path: Path, golden: str, qtype: str) -> None:
    """The golden GGML files were written by llama.cpp's quantize tool: same shape, same per-tensor
    types."""
    if golden not in GOLDEN:
        pytest.skip(f"{golden} not present")
    ours = make_model(tmp_path / "m.bin", "tiny", qtype, format="ggml")
    assert types_of(ours) == types_of(GOLDEN[golden])
    assert (
        open_model_file(ours).metadata["general.file_type"]
        == open_model_file(GOLDEN[golden]).metadata["general.file_type"]
    )


def test_use_more_bits_layers() -> None:
    assert [i for i in range(32) if use_more_bits(i, 32)] == [
        0,
        1,
        2,
        3,
        6,
        9,
        12,
        15,
        18,
        21,
        24,
        27,
        28,
        29,
        30,
        31,
    ]
    assert [i for i in range(2) if use_more_bits(i, 2)] == [1]


def test_mix_rules_on_real_shapes() -> None:
    s7 = SHAPES["7b"]
    shapes = dict(tensor_shapes(s7))

    def t(name: str, q: str, s: ModelShape = s7) -> G:
        return tensor_type(
            name, dict(tensor_shapes(s))[name], QTYPES[q], s.n_layer, s.n_head_kv, s.n_head
        )

    assert (
        t("blk.0.attn_v.weight", "q4_k_m") == G.Q6_K
        and t("blk.4.attn_v.weight", "q4_k_m") == G.Q4_K
    )
    assert (
        t("blk.6.ffn_down.weight", "q5_k_m") == G.Q6_K
        and t("blk.7.ffn_down.weight", "q5_k_m") == G.Q5_K
    )
    assert (
        t("blk.4.attn_q.weight", "q4_k_m") == G.Q4_K and t("token_embd.weight", "q4_k_m") == G.Q4_K
    )
    assert t("output.weight", "q4_k_m") == G.Q6_K and t("output.weight", "q4_0") == G.Q4_0
    assert (
        t("blk.5.attn_output.weight", "q3_k_l") == G.Q5_K
        and t("blk.5.ffn_down.weight", "q3_k_l") == G.Q5_K
    )
    assert (
        t("blk.5.attn_output.weight", "q2_k_mix") == G.Q4_K
        and t("blk.5.ffn_up.weight", "q2_k_mix") == G.Q2_K
    )
    assert t("blk.5.ffn_norm.weight", "q2_k_mix") == G.F32
    assert len(shapes) == 2 + 9 * 32 + 1
    # 70B: attn_v shared by 8 query heads gets Q5_K where a 7B would get Q4_K/Q3_K.
    s70 = SHAPES["70b"]
    assert (
        t("blk.11.attn_v.weight", "q4_k_m", s70) == G.Q5_K
        and t("blk.4.attn_v.weight", "q3_k_s", s70) == G.Q5_K
    )
    assert t("blk.11.attn_v.weight", "q4_k_m") == G.Q4_K  # the same layer of a 32-layer model
    assert t("blk.0.attn_v.weight", "q4_k_m", s70) == G.Q6_K
    assert dict(tensor_shapes(s70))["blk.0.attn_k.weight"] == (1024, 8192)


def test_k_fallbacks_for_dims_that_do_not_fit_256() -> None:
    s = ModelShape(1000, 256, 1, 4, 4, 768)
    spec = QTYPES["q4_k_m"]
    assert tensor_type("output.weight", (1000, 256), spec, 1, 4, 4) == G.F16
    assert tensor_type("token_embd.weight", (1000, 256), spec, 1, 4, 4) == G.Q4_0
    with pytest.raises(FixtureError, match="multiples of 256"):
        tensor_type("blk.0.attn_q.weight", (128, 128), QTYPES["q4_k"], 1, 4, 4)
    with pytest.raises(FixtureError, match="multiples of 256"):
        make_model("/nonexistent/never-written.gguf", ModelShape(300, 128, 1, 2, 2, 256), "q6_k")
    assert s.head_dim == 64


@pytest.mark.parametrize(
    "qtype",
    ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "f16", "f32"],
)
def test_weights_are_finite_and_near_n_0_002(tmp_path: Path, qtype: str) -> None:
    mf = open_model_file(make_model(tmp_path / "m.gguf", "tiny", qtype, seed=5))
    for name, t in mf.tensors.items():
        w = dequantize(t.data, t.type, t.shape)
        assert np.isfinite(w).all(), name
        if len(t.shape) == 1:
            assert abs(w.mean() - 1.0) < 0.02 and w.std() < 0.1, name
        else:
            assert 0.015 < w.std() < 0.025, (name, w.std())
            assert abs(w.mean()) < 0.001, (name, w.mean())


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = make_model(tmp_path / "a.gguf", "tiny", "q4_k_m", seed=1).read_bytes()
    b = make_model(tmp_path / "b.gguf", "tiny", "q4_k_m", seed=1).read_bytes()
    c = make_model(tmp_path / "c.gguf", "tiny", "q4_k_m", seed=2).read_bytes()
    assert a == b and a != c and len(a) == len(c)


def test_synthetic_vocab() -> None:
    v = synthetic_vocab(300)
    assert (
        v.tokens[:3] == ["<unk>", "<s>", "</s>"]
        and v.tokens[3] == "<0x00>"
        and v.tokens[258] == "<0xFF>"
    )
    assert (
        v.tokens[259] == "\u2581tok259" and list(v.types[:4]) == [2, 3, 3, 6] and v.types[299] == 1
    )
    assert np.all(np.diff(v.scores[259:]) < 0)
    with pytest.raises(FixtureError, match="259"):
        synthetic_vocab(100)


def test_borrowed_vocab_is_the_real_one(tmp_path: Path) -> None:
    spm = vocab_dir() / "ggml-vocab-llama-spm.gguf"
    if not spm.exists() or "tiny-f32.gguf" not in GOLDEN:
        pytest.skip("golden vocab not present")
    mf = open_model_file(make_model(tmp_path / "m.gguf", "tiny", "q4_0", vocab=spm))
    golden = open_model_file(
        GOLDEN["tiny-f32.gguf"]
    ).vocab  # the first 1024 pieces of the same vocab
    assert mf.vocab.tokens == golden.tokens
    np.testing.assert_array_equal(mf.vocab.scores, golden.scores)
    # Borrowing from a GGML file works too, and a short vocab is padded with fillers.
    small = make_model(tmp_path / "s.bin", ModelShape(300, 64, 1, 2, 2, 96), "f16", format="ggml")
    mf2 = open_model_file(
        make_model(tmp_path / "p.gguf", ModelShape(400, 64, 1, 2, 2, 96), "f16", vocab=small)
    )
    assert len(mf2.vocab) == 400 and mf2.vocab.tokens[:300] == open_model_file(small).vocab.tokens
    assert mf2.vocab.tokens[300] == "\u2581tok300"


def test_bad_requests(tmp_path: Path) -> None:
    with pytest.raises(FixtureError, match="unknown shape 'huge'"):
        make_model(tmp_path / "m", "huge")
    with pytest.raises(FixtureError, match="unknown type 'q9_9'"):
        make_model(tmp_path / "m", "tiny", "q9_9")
    with pytest.raises(FixtureError, match="unknown format"):
        make_model(tmp_path / "m", "tiny", "q4_0", format="onnx")
    with pytest.raises(ModelFormatError, match="n_head_kv"):  # hyperparameters no model has
        ModelShape(300, 64, 1, 4, 3, 96)
    with pytest.raises(ModelFormatError, match="positive"):
        ModelShape(300, 64, 0, 4, 4, 96)
    with pytest.raises(ModelFormatError, match="even-sized heads"):
        ModelShape(300, 60, 1, 4, 4, 96)  # head_dim 15: RoPE rotates pairs
    assert list(tmp_path.iterdir()) == []


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "m.bin"
    assert (
        main(
            [
                "--shape",
                "tiny_gqa",
                "--type",
                "q3_k_m",
                "--format",
                "ggml",
                "--seed",
                "4",
                "--quiet",
                str(out),
            ]
        )
        == 0
    )
    info = model_info(open_model_file(out))
    assert info.format == "ggjt-v3" and info.n_head_kv == 1 and info.file_type == "MOSTLY_Q3_K_M"
    assert main(["--vocab", str(tmp_path / "missing.gguf"), str(tmp_path / "x.gguf")]) == 1
    assert "fixtures: error:" in capsys.readouterr().err


def test_fixture_runs_through_the_engine(tmp_path: Path) -> None:
    try:
        from agent.llm.model import load_model
    except ImportError:
        pytest.skip("engine not available")
    m = load_model(make_model(tmp_path / "m.gguf", "tiny_gqa", "q4_k_m"), n_ctx=32)
    logits = m.eval([1, 300, 301, 302])
    assert logits.shape == (4, 1024) and np.isfinite(logits).all()
    assert 0.01 < logits.std() < 10  # sane activations: neither vanishing nor exploding


@pytest.mark.slow
def test_1b_file_is_streamed_quickly(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    path = make_model(tmp_path / "1b.gguf", "1b", "q4_0")
    elapsed = time.perf_counter() - t0
    info = model_info(open_model_file(path))
    assert (info.n_embd, info.n_layer, info.n_head_kv, info.n_ff, info.n_vocab) == (
        2048,
        22,
        4,
        5632,
        32000,
    )
    assert 550e6 < path.stat().st_size < 700e6
    assert elapsed < 40, elapsed
