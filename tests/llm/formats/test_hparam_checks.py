"""Hostile hyperparameters (issue 19): mutated copies of the golden files are refused at load time
with a ModelFormatError naming the key, the value and the rule, in bounded time, in both formats
and in ``convert``; what only looks odd is a warning in ``agent info``."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from agent.errors import ModelFormatError
from agent.llm import load_model
from agent.llm.formats.convert import convert_ggml_to_gguf
from agent.llm.formats.files import open_model_file
from agent.llm.formats.gguf_writer import GGUFValueType as T
from tests.golden import BUNDLED
from tests.llm.formats.gguf_edit import (
    add_gguf_value,
    gguf_layout,
    set_ggml_field,
    set_gguf_value,
)
from tests.llm.formats.test_formats_readers import write

GGUF = BUNDLED / "models" / "tiny-q4_0.gguf"  # n_embd 256, n_head 4, 2 layers, 21 tensors
GGML = BUNDLED / "models" / "tiny.ggmlv3.q4_K_M.bin"


def refused(path: Path, *patterns: str) -> str:
    """load_model refuses ``path`` with a ModelFormatError naming the file and each pattern."""
    with pytest.raises(ModelFormatError) as e:
        load_model(path, n_ctx=8, threads=1)
    msg = str(e.value)
    assert str(path) in msg, msg
    for pat in patterns:
        assert pat in msg, (pat, msg)
    return msg


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# -- GGUF: each rule names the key, the value and the rule ----------------------------------------


@pytest.mark.parametrize(
    "key, value, patterns",
    [
        ("llama.attention.layer_norm_rms_epsilon", -1.0, ["-1.0", "greater than 0", "RMSNorm"]),
        ("llama.attention.layer_norm_rms_epsilon", 0.0, ["0.0", "greater than 0"]),
        ("llama.attention.head_count", 256, ["256", "head size of 1", "even and at least 2"]),
        ("llama.attention.head_count", 3, ["3", "divide the embedding length 256"]),
        ("llama.attention.head_count", 0, ["at least one attention head"]),
        ("llama.attention.head_count_kv", 8, ["8", "divide the 4 attention heads"]),
        ("llama.attention.head_count_kv", 3, ["3", "divide the 4 attention heads"]),
        ("llama.attention.head_count_kv", 0, ["0", "must be positive"]),
        ("llama.rope.dimension_count", 32, ["32", "equal the head size 64"]),
        ("llama.block_count", 0, ["0", "at least one layer"]),
        ("llama.block_count", 3, ["3", "only 21 tensors", "at most 2 layers"]),
        ("llama.feed_forward_length", 0, ["0", "must be positive"]),
        ("llama.vocab_size", 1000, ["1000", "holds 1024 tokens"]),
        ("llama.embedding_length", 0, ["0", "must be positive"]),
    ],
)
def test_broken_gguf_hyperparameters_are_refused(
    tmp_path: Path, key: str, value: float, patterns: list[str]
) -> None:
    p = write(tmp_path, set_gguf_value(GGUF.read_bytes(), key, value))
    refused(p, key, *patterns)


@pytest.mark.parametrize(
    "key, value, patterns",
    [
        ("llama.rope.freq_base", 0.0, ["0.0", "greater than 0", "RoPE"]),
        ("llama.rope.freq_base", -10000.0, ["-10000.0", "greater than 0"]),
        ("llama.rope.scaling.factor", -2.0, ["-2.0", "scaling factor is positive"]),
    ],
)
def test_broken_rope_keys_are_refused(
    tmp_path: Path, key: str, value: float, patterns: list[str]
) -> None:
    p = write(tmp_path, add_gguf_value(GGUF.read_bytes(), key, value))
    refused(p, key, *patterns)


def test_added_keys_keep_a_good_file_good(tmp_path: Path) -> None:
    """The edit helper itself: a valid added key leaves a file that loads and evaluates."""
    p = write(tmp_path, add_gguf_value(GGUF.read_bytes(), "llama.rope.freq_base", 10000.0))
    m = load_model(p, n_ctx=8, threads=1)
    assert m.info.rope_freq_base == 10000.0 and np.isfinite(m.eval([1, 2, 3, 4])).all()


@pytest.mark.parametrize("value", [1 << 20, (1 << 32) - 1])
def test_a_huge_block_count_is_refused_before_any_per_layer_work(
    tmp_path: Path, value: int
) -> None:
    p = write(tmp_path, set_gguf_value(GGUF.read_bytes(), "llama.block_count", value))
    t0 = time.perf_counter()
    refused(p, "llama.block_count", str(value), "at most 2 layers")
    assert time.perf_counter() - t0 < 0.5  # was 1.5-1.9 s (2^20) and out of memory (2^32-1)


def test_alignment_must_be_a_power_of_two_and_powers_load(tmp_path: Path) -> None:
    """llama.cpp's rule: any power of two, even 1 (tensor data then starts at odd addresses)."""
    reference = load_model(GGUF, n_ctx=8, threads=1).eval([1, 2, 3, 4])
    for good in (1, 2, 4, 8, 16):  # the golden tensor offsets are multiples of 32
        data = add_gguf_value(GGUF.read_bytes(), "general.alignment", good, T.UINT32)
        lay = gguf_layout(data)  # the data section starts on the new boundary: re-pad
        head = data[: lay.info_end] + b"\0" * (-lay.info_end % good)
        p = write(tmp_path, head + data[lay.data_start :], f"a{good}.gguf")
        logits = load_model(p, n_ctx=8, threads=1).eval([1, 2, 3, 4])
        np.testing.assert_array_equal(logits, reference)
    p = write(tmp_path, add_gguf_value(GGUF.read_bytes(), "general.alignment", 48, T.UINT32), "a48")
    refused(p, "general.alignment is 48", "power of two")


def test_overrides_are_checked_by_the_same_rules() -> None:
    for kw, pattern in (
        ({"rms_norm_eps": -1.0}, "the override rms_norm_eps is -1.0"),
        ({"rope_freq_base": 0.0}, "the override rope_freq_base is 0.0"),
        ({"rope_freq_scale": float("nan")}, "the override rope_freq_scale is nan"),
        ({"n_gqa": 3}, "the override n_gqa=3 does not divide the 4 heads"),
        ({"n_gqa": 2}, r"n_gqa=2 means 2 KV heads, but attn_k's shape \(256, 256\) holds 4"),
    ):
        with pytest.raises(ModelFormatError, match=pattern):
            load_model(GGUF, n_ctx=8, threads=1, **kw)
    with pytest.raises(ModelFormatError, match="n_gqa=4 means 1 KV heads"):
        load_model(GGML, n_ctx=8, threads=1, n_gqa=4)  # was a numpy reshape error at eval
    assert load_model(GGML, n_ctx=8, threads=1, n_gqa=1).info.n_head_kv == 4  # agrees: fine


# -- GGML: the header fields are named -------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, patterns",
    [
        ("n_head", 256, ["n_head in the GGML header is 256", "head size of 1"]),
        ("n_head", 3, ["n_head in the GGML header is 3", "divide the embedding length 256"]),
        ("n_rot", 32, ["n_rot in the GGML header is 32", "head size 64"]),
        ("n_layer", 0, ["n_layer 0", "implausible hyperparameters"]),
    ],
)
def test_broken_ggml_headers_are_refused_in_load_info_and_convert(
    tmp_path: Path, capsys: pytest.CaptureFixture, field: str, value: int, patterns: list[str]
) -> None:
    p = write(tmp_path, set_ggml_field(GGML.read_bytes(), field, value), "m.bin")
    refused(p, *patterns)
    code, out, err = run(capsys, "info", str(p))
    assert code == 1 and patterns[0] in err
    dst = tmp_path / "out.gguf"
    with pytest.raises(ModelFormatError, match=patterns[0]):
        convert_ggml_to_gguf(p, dst)
    assert not dst.exists()  # no broken GGUF is written


def test_a_ggml_layer_count_beyond_the_tensors_is_reported_as_truncation(tmp_path: Path) -> None:
    p = write(tmp_path, set_ggml_field(GGML.read_bytes(), "n_layer", 3), "m.bin")
    refused(p, "truncated", f"ends at offset {p.stat().st_size}", "after 21 tensors", "has 30")


def test_a_ggml_file_cut_between_tensor_records_is_a_truncation(tmp_path: Path) -> None:
    data = GGML.read_bytes()
    mf = open_model_file(GGML)
    t = mf.tensors["blk.0.ffn_gate.weight"]
    cut = t.offset + t.nbytes
    msg = refused(write(tmp_path, data[:cut], "cut.bin"), "truncated", f"ends at offset {cut}")
    assert "feed_forward_length" not in msg and "first missing" in msg
    # cut right after the vocabulary: no tensor at all
    first = min(t.offset for t in mf.tensors.values())
    header_end = data.rindex(b"tok_embeddings.weight", 0, first) - 4 * 5
    msg = refused(write(tmp_path, data[:header_end], "vocab.bin"), "truncated")
    assert f"ends at offset {header_end} after 0 tensors" in msg


def test_a_truncated_gguf_reports_both_sizes(tmp_path: Path) -> None:
    data = GGUF.read_bytes()
    cut = len(data) - 1000
    refused(
        write(tmp_path, data[:cut]),
        "truncated",
        f"it is {cut} bytes",
        f"runs to offset {len(data)}",
        "1000 bytes missing",
    )


def test_convert_options_must_be_usable(tmp_path: Path) -> None:
    for kw, pattern in (
        ({"rms_norm_eps": -1.0}, r"rms_norm_eps \(--eps\) is -1.0"),
        ({"rope_freq_base": 0.0}, r"rope_freq_base \(--rope-freq-base\) is 0.0"),
        ({"n_ctx": 0}, r"n_ctx \(--context-length\) is 0"),
    ):
        with pytest.raises(ModelFormatError, match=pattern):
            convert_ggml_to_gguf(GGML, tmp_path / "o.gguf", **kw)
        assert not (tmp_path / "o.gguf").exists()


# -- agent info: warnings, and "will not load" ----------------------------------------------------


def test_info_warns_about_unknown_file_type_and_odd_context(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = set_gguf_value(GGUF.read_bytes(), "general.file_type", 99)
    p = write(tmp_path, set_gguf_value(data, "llama.context_length", 0))
    assert load_model(p, n_ctx=8, threads=1).info.n_layer == 2  # odd, but it runs
    code, out, _ = run(capsys, "info", str(p))
    assert code == 0
    assert "warning       general.file_type is 99, which is not a llama.cpp file type" in out
    assert "warning       llama.context_length is 0, which is not a plausible training" in out
    s = json.loads(run(capsys, "info", "--json", str(p))[1])
    assert len(s["warnings"]) == 2 and "load_error" not in s
    code, out, _ = run(capsys, "info", str(GGUF))
    assert code == 0 and "warning" not in out and "will not load" not in out


def test_info_exits_non_zero_where_load_model_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = GGUF.read_bytes()
    key = b"llama.feed_forward_length"
    p = write(tmp_path, data.replace(key, b"llama.feed_forward_lengtX"))
    msg = refused(p, "'llama.feed_forward_length' is missing")
    code, out, _ = run(capsys, "info", str(p))
    assert code == 1 and f"will not load: {msg}" in out
    s = json.loads(run(capsys, "info", "--json", str(p))[1])
    assert s["load_error"] == msg


def test_info_on_the_eps_campaign_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p = write(
        tmp_path,
        set_gguf_value(GGUF.read_bytes(), "llama.attention.layer_norm_rms_epsilon", -1.0),
    )
    code, _, err = run(capsys, "info", str(p))
    assert code == 1 and "layer_norm_rms_epsilon is -1.0" in err


# -- non-finite logits -----------------------------------------------------------------------------


def nan_embedding_row(data: bytes, token: int) -> bytes:
    """The golden GGUF with the Q4_0 embedding row of ``token`` given NaN scales."""
    mf = open_model_file(GGUF)
    t = mf.tensors["token_embd.weight"]
    assert t.type_name == "Q4_0" and t.shape == (1024, 256)
    row_bytes = 256 // 32 * 18
    out = bytearray(data)
    for b in range(256 // 32):
        pos = t.offset + token * row_bytes + b * 18
        out[pos : pos + 2] = struct.pack("<e", float("nan"))
    return bytes(out)


def test_non_finite_logits_are_an_error_naming_the_position(tmp_path: Path) -> None:
    p = write(tmp_path, nan_embedding_row(GGUF.read_bytes(), 7))
    m = load_model(p, n_ctx=32, threads=1)
    assert np.isfinite(m.eval([1, 5])).all()  # positions 0-1 never see token 7
    with pytest.raises(ModelFormatError, match="logits at position 3 are not finite") as e:
        m.eval([9, 7])
    assert "probably broken" in str(e.value) and str(p) in str(e.value)
    assert len(m.tokens) == 2  # the failed tokens are not kept in the cache's record


def test_generation_on_broken_logits_raises_instead_of_returning_nothing(tmp_path: Path) -> None:
    p = write(tmp_path, nan_embedding_row(GGUF.read_bytes(), 1))  # BOS starts every prompt
    m = load_model(p, n_ctx=64, threads=1)
    for temperature in (0.0, 0.8):
        with pytest.raises(ModelFormatError, match=r"logits at position \d+ are not finite"):
            m.complete("Hi", max_tokens=4, temperature=temperature)


def test_info_names_the_ggml_header_field_in_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    p = write(tmp_path, set_ggml_field(GGML.read_bytes(), "ftype", 77), "m.bin")
    code, out, _ = run(capsys, "info", str(p))
    assert code == 0 and "warning       ftype in the GGML header is 77, which is not" in out
