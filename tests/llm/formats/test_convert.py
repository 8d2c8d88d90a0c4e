"""GGML -> GGUF conversion: tensors byte for byte, vocab, hyperparameters, options, logits."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from agent.errors import ModelFormatError
from agent.llm.formats.convert import convert_ggml_to_gguf, stderr_progress, tensor_chunks
from agent.llm.formats.files import open_model_file
from agent.llm.formats.fixtures import make_model
from agent.llm.hparams import model_info
from tests.golden import model_paths

GGML_GOLDEN = [p for p in model_paths() if p.name.endswith(".bin")]


def comparable_info(mf) -> dict:
    d = asdict(model_info(mf))
    for k in ("format", "path", "file_size", "name"):
        d.pop(k)
    d["rms_norm_eps"] = np.float32(
        d["rms_norm_eps"]
    )  # GGUF stores it as float32, GGML defaults are float64
    return d


@pytest.mark.skipif(not GGML_GOLDEN, reason="no golden GGML files")
@pytest.mark.parametrize("src", GGML_GOLDEN, ids=lambda p: p.name)
def test_golden_ggml_converts_losslessly(tmp_path: Path, src: Path) -> None:
    dst = convert_ggml_to_gguf(src, tmp_path / "out.gguf")
    a, b = open_model_file(src), open_model_file(dst)
    assert b.format == "gguf-v3"
    assert list(b.tensors) == list(a.tensors)
    for name, t in a.tensors.items():
        u = b.tensors[name]
        assert (u.type, u.shape) == (t.type, t.shape)
        assert u.data.tobytes() == t.data.tobytes(), name
        assert u.offset % 32 == 0
    assert b.vocab.tokens == a.vocab.tokens
    np.testing.assert_array_equal(b.vocab.scores, a.vocab.scores)
    np.testing.assert_array_equal(b.vocab.types, a.vocab.types)
    assert (b.vocab.bos_id, b.vocab.eos_id, b.vocab.unk_id) == (1, 2, 0)
    assert comparable_info(b) == comparable_info(a)
    md = b.metadata
    assert md["general.architecture"] == "llama" and md["general.name"] == src.stem
    assert md["llama.context_length"] == 4096 and md["llama.rope.freq_base"] == 10000.0
    assert md["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    assert md["general.file_type"] == a.metadata["general.file_type"]
    assert "converted from ggjt-v3" in md["general.description"]


def test_converted_file_matches_llama_cpp_gguf_metadata(tmp_path: Path) -> None:
    """The golden GGUF (written by llama.cpp) and our conversion of the GGML file agree key by
    key."""
    names = {p.name: p for p in model_paths()}
    if "tiny.ggmlv3.q4_0.bin" not in names or "tiny-q4_0.gguf" not in names:
        pytest.skip("golden files not present")
    ours = open_model_file(
        convert_ggml_to_gguf(names["tiny.ggmlv3.q4_0.bin"], tmp_path / "o.gguf")
    ).metadata
    theirs = open_model_file(names["tiny-q4_0.gguf"]).metadata
    for key in (
        "llama.embedding_length",
        "llama.block_count",
        "llama.feed_forward_length",
        "llama.attention.head_count",
        "llama.attention.head_count_kv",
        "llama.rope.dimension_count",
        "llama.attention.layer_norm_rms_epsilon",
        "tokenizer.ggml.model",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id",
        "general.file_type",
    ):
        assert ours[key] == theirs[key], key
    assert ours["tokenizer.ggml.tokens"] == theirs["tokenizer.ggml.tokens"]
    np.testing.assert_array_equal(
        ours["tokenizer.ggml.token_type"], theirs["tokenizer.ggml.token_type"]
    )


def test_options_override_what_ggml_files_lack(tmp_path: Path) -> None:
    src = make_model(tmp_path / "m.bin", "tiny", "q4_0", format="ggml")
    dst = convert_ggml_to_gguf(
        src,
        tmp_path / "m.gguf",
        name="custom",
        n_ctx=2048,
        rms_norm_eps=1e-6,
        rope_freq_base=5e5,
        rope_freq_scale=0.25,
    )
    mf = open_model_file(dst)
    info = model_info(mf)
    assert (info.name, info.n_ctx_train, info.rope_freq_base, info.rope_freq_scale) == (
        "custom",
        2048,
        5e5,
        0.25,
    )
    assert info.rms_norm_eps == pytest.approx(1e-6)
    assert mf.metadata["llama.rope.scaling.type"] == "linear"


def test_gqa_is_inferred_from_attn_k(tmp_path: Path) -> None:
    src = make_model(tmp_path / "g.bin", "tiny_gqa", "q8_0", format="ggml")
    mf = open_model_file(convert_ggml_to_gguf(src, tmp_path / "g.gguf"))
    assert mf.metadata["llama.attention.head_count_kv"] == 1 and model_info(mf).n_head_kv == 1
    convert_ggml_to_gguf(src, tmp_path / "g8.gguf", n_gqa=8)  # agrees with the shape: fine
    with pytest.raises(ModelFormatError, match="--n-gqa 2 means 4 KV heads.*says 1"):
        convert_ggml_to_gguf(src, tmp_path / "bad.gguf", n_gqa=2)
    with pytest.raises(ModelFormatError, match="--n-gqa 3 does not divide"):
        convert_ggml_to_gguf(src, tmp_path / "bad.gguf", n_gqa=3)
    assert not (tmp_path / "bad.gguf").exists()


@pytest.mark.parametrize("kind, version", [("ggml", 0), ("ggmf", 1), ("ggjt", 1), ("ggjt", 2)])
def test_older_containers_convert(tmp_path: Path, kind: str, version: int) -> None:
    src = make_model(
        tmp_path / "m.bin", "tiny", "f16", format="ggml", ggml_kind=kind, ggml_version=version
    )
    mf = open_model_file(convert_ggml_to_gguf(src, tmp_path / "m.gguf"))
    assert mf.metadata["general.description"].startswith(
        f"converted from {open_model_file(src).format}"
    )
    assert (
        mf.tensors["output.weight"].data.tobytes()
        == open_model_file(src).tensors["output.weight"].data.tobytes()
    )


def test_refuses_gguf_input_and_same_path(tmp_path: Path) -> None:
    g = make_model(tmp_path / "m.gguf", "tiny", "q4_0")
    with pytest.raises(ModelFormatError, match="already a GGUF"):
        convert_ggml_to_gguf(g, tmp_path / "x.gguf")
    b = make_model(tmp_path / "m.bin", "tiny", "q4_0", format="ggml")
    with pytest.raises(ModelFormatError, match="must differ"):
        convert_ggml_to_gguf(b, b)
    with pytest.raises(ModelFormatError, match="unknown file type"):
        (tmp_path / "junk.bin").write_bytes(b"junkjunk")
        convert_ggml_to_gguf(tmp_path / "junk.bin", tmp_path / "y.gguf")


def test_progress_and_chunked_copy(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = make_model(tmp_path / "m.bin", "tiny", "q8_0", format="ggml")
    t = open_model_file(src).tensors["token_embd.weight"]
    pieces = list(tensor_chunks(t, chunk=1000)())
    assert [len(p) for p in pieces[:-1]] == [1000] * (len(pieces) - 1)
    assert b"".join(p.tobytes() for p in pieces) == t.data.tobytes()
    seen: list[tuple[int, int]] = []
    convert_ggml_to_gguf(src, tmp_path / "m.gguf", progress=lambda d, n: seen.append((d, n)))
    total = sum(x.nbytes for x in open_model_file(src).tensors.values())
    assert seen[-1] == (total, total) and all(
        a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False)
    )
    report = stderr_progress("converting", min_bytes=0)
    report(total // 2, total)
    report(total, total)
    err = capsys.readouterr().err
    assert "converting:" in err and "(100%)" in err and err.endswith("\n")
    quiet = stderr_progress("x")  # small files print nothing
    quiet(1, 10)
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(not GGML_GOLDEN, reason="no golden GGML files")
def test_converted_model_gives_identical_logits(tmp_path: Path) -> None:
    try:
        from agent.llm.model import load_model
    except ImportError:
        pytest.skip("agent.llm.model not available")
    src = next(p for p in GGML_GOLDEN if p.name == "tiny.ggmlv3.q4_K_M.bin")
    dst = convert_ggml_to_gguf(src, tmp_path / "c.gguf")
    a, b = load_model(src, n_ctx=64), load_model(dst, n_ctx=64)
    ids = a.tokenize("What color are blueberries?")
    assert ids == b.tokenize("What color are blueberries?")
    np.testing.assert_array_equal(a.eval(ids), b.eval(ids))
