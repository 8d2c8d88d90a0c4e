"""``agent info`` and ``agent convert`` through the real command dispatcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from agent.llm.formats.convert import add_vocab_keys
from agent.llm.formats.files import open_model_file
from agent.llm.formats.fixtures import make_model, synthetic_vocab
from agent.llm.formats.gguf_writer import GGUFWriter
from tests.golden import model_paths, vocab_dir

ALL_GOLDEN = [p for p in model_paths() + [vocab_dir() / "ggml-vocab-llama-spm.gguf"] if p.exists()]


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.skipif(not ALL_GOLDEN, reason="no golden files")
@pytest.mark.parametrize("path", ALL_GOLDEN, ids=lambda p: p.name)
def test_info_on_every_golden_file(capsys: pytest.CaptureFixture, path: Path) -> None:
    code, out, err = run(capsys, "info", str(path))
    assert code == 0, err
    mf = open_model_file(path)
    container, version = mf.format.split("-v")
    assert f"format        {container} v{version}" in out
    assert f"vocab         {len(mf.vocab)} tokens" in out
    assert f"({path.stat().st_size:,} bytes)" in out
    code, out, err = run(capsys, "info", "--json", str(path))
    s = json.loads(out)
    assert (s["container"], s["version"], s["vocab_size"], s["file_size"]) == (
        container,
        int(version),
        len(mf.vocab),
        path.stat().st_size,
    )
    assert sum(s["tensor_types"].values()) == s["n_tensors"] == len(mf.tensors)
    hp = s["hparams"]
    if path.name.startswith("tiny"):
        assert (hp["n_embd"], hp["n_layer"], hp["n_head"], hp["n_head_kv"], hp["n_ff"]) == (
            256,
            2,
            4,
            4,
            768,
        )
        assert "n_layer       2" in run(capsys, "info", str(path))[1]
    else:  # the vocab-only file describes Llama-2 7B
        assert (hp["n_embd"], hp["n_layer"], s["n_tensors"]) == (4096, 32, 0)
    assert "tokenizer.ggml.tokens" not in s["metadata"]  # big arrays are left out


def test_info_names_the_mix(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    path = make_model(tmp_path / "m.bin", "tiny_gqa", "q4_k_m", format="ggml")
    code, out, _ = run(capsys, "info", str(path))
    assert code == 0
    assert "file type     MOSTLY_Q4_K_M" in out and "n_head        8 (kv 1, head dim 32)" in out
    assert "tensors       21: F32 5, Q4_K 13, Q6_K 3" in out and "format        ggjt v3" in out
    assert "n_head_kv and n_ff come from tensor shapes" in out


def test_info_without_hyperparameters(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    w = GGUFWriter(tmp_path / "v.gguf")
    add_vocab_keys(w, synthetic_vocab(300))
    w.write()
    code, out, _ = run(capsys, "info", str(tmp_path / "v.gguf"))
    assert code == 0
    assert (
        "hparams       unavailable" in out
        and "llama.embedding_length" in out
        and "300 tokens" in out
    )


def test_info_errors(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code, _, err = run(capsys, "info", str(tmp_path / "missing.gguf"))
    assert code == 1 and err.startswith("agent info: error: cannot open model file")
    (tmp_path / "junk").write_bytes(b"GGUF\x03\x00\x00\x00\x01")
    code, _, err = run(capsys, "info", str(tmp_path / "junk"))
    assert code == 1 and "tensor count" in err and "truncated" in err


def test_convert_command(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    src = make_model(tmp_path / "m.bin", "tiny_gqa", "q5_k_m", format="ggml")
    dst = tmp_path / "m.gguf"
    code, _, err = run(
        capsys,
        "convert",
        str(src),
        str(dst),
        "--name",
        "mine",
        "--context-length",
        "2048",
        "--eps",
        "1e-6",
        "--n-gqa",
        "8",
    )
    assert code == 0 and f"wrote {dst}" in err
    info = json.loads(run(capsys, "info", "--json", str(dst))[1])
    assert info["hparams"]["name"] == "mine" and info["hparams"]["n_ctx_train"] == 2048
    assert info["hparams"]["n_head_kv"] == 1 and info["hparams"]["rms_norm_eps"] == pytest.approx(
        1e-6
    )
    code, _, err = run(capsys, "convert", str(src), str(dst))
    assert code == 1 and "--force" in err
    assert run(capsys, "convert", "--quiet", "--force", str(src), str(dst))[0] == 0
    code, _, err = run(capsys, "convert", "--force", "--eps", "0", str(src), str(dst))
    assert code == 1 and "must be positive" in err
    code, _, err = run(capsys, "convert", str(dst), str(tmp_path / "again.gguf"))
    assert code == 1 and "already a GGUF" in err


def test_commands_are_listed(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "info" in out and "convert" in out
