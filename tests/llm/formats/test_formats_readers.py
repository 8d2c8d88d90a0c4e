"""Reader hardening: malformed, truncated, old and unsupported files give ModelFormatError naming
the file and the place (offset / tensor), never IndexError, struct.error or a numpy crash."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import ModelFormatError
from agent.llm.formats.convert import add_vocab_keys
from agent.llm.formats.files import open_model_file
from agent.llm.formats.fixtures import ModelShape, make_model, synthetic_vocab
from agent.llm.formats.ggml_types import GGMLType
from agent.llm.formats.ggml_writer import GGMLHParams, GGMLWriter
from agent.llm.formats.gguf_writer import GGUFValueType as T
from agent.llm.formats.gguf_writer import GGUFWriter
from agent.llm.hparams import model_info
from tests.golden import model_paths, vocab_dir

SMALL = ModelShape(n_vocab=300, n_embd=64, n_layer=1, n_head=2, n_head_kv=1, n_ff=96)


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("small")
    return {
        "gguf": make_model(
            d / "s.gguf", SMALL, "q8_0_mix"
        ).read_bytes(),  # F32 norms, Q8_0, F16 output
        "ggml": make_model(d / "s.bin", SMALL, "q8_0", format="ggml").read_bytes(),
    }


def write(tmp_path: Path, data: bytes, name: str = "m") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def fails(path: Path, *patterns: str) -> str:
    with pytest.raises(ModelFormatError) as e:
        open_model_file(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    for pat in patterns:
        assert pat in msg, (pat, msg)
    return msg


def gguf_info_pos(data: bytes, name: str) -> int:
    """Position of a tensor info record (just after its name) in a GGUF v2/v3 header."""
    key = struct.pack("<Q", len(name)) + name.encode()
    pos = data.index(key)
    return pos + len(key)


# -- containers: empty, magic, versions ----------------------------------------------------------


def test_empty_and_missing_files(tmp_path: Path) -> None:
    fails(write(tmp_path, b""), "empty")
    with pytest.raises(ModelFormatError, match="cannot open"):
        open_model_file(tmp_path / "nope.gguf")


@pytest.mark.parametrize(
    "data", [b"\x89PNG\r\n\x1a\n" + b"\0" * 64, b"GGU", b"ggjt" + b"\0" * 40, b"PK\x03\x04"]
)
def test_wrong_magic(tmp_path: Path, data: bytes) -> None:
    fails(write(tmp_path, data), "magic")


@pytest.mark.parametrize(
    "version, hint", [(0, "GGUF v1-v3"), (4, "GGUF v1-v3"), (3 << 24, "big-endian")]
)
def test_unsupported_gguf_versions(
    tmp_path: Path, small_files: dict, version: int, hint: str
) -> None:
    data = bytearray(small_files["gguf"])
    data[4:8] = struct.pack("<I", version)
    fails(write(tmp_path, bytes(data)), f"version {version}", hint)


@pytest.mark.parametrize("kind, version", [("ggmf", 2), ("ggjt", 4), ("ggjt", 0)])
def test_unsupported_ggml_versions(
    tmp_path: Path, small_files: dict, kind: str, version: int
) -> None:
    data = bytearray(small_files["ggml"])
    data[0:4] = {"ggmf": b"fmgg", "ggjt": b"tjgg"}[kind]
    data[4:8] = struct.pack("<I", version)
    fails(write(tmp_path, bytes(data)), f"{kind} version {version}")


@pytest.mark.parametrize("version", [1, 2])
def test_gguf_v1_and_v2_read_like_v3(tmp_path: Path, version: int) -> None:
    old = open_model_file(
        make_model(tmp_path / "old.gguf", "tiny", "q4_k_m", gguf_version=version, seed=3)
    )
    new = open_model_file(make_model(tmp_path / "new.gguf", "tiny", "q4_k_m", seed=3))
    assert old.format == f"gguf-v{version}"
    assert old.vocab.tokens == new.vocab.tokens
    assert {k: v for k, v in old.metadata.items() if not isinstance(v, (list, np.ndarray))} == {
        k: v for k, v in new.metadata.items() if not isinstance(v, (list, np.ndarray))
    }
    for name, t in new.tensors.items():
        assert (old.tensors[name].type, old.tensors[name].shape) == (t.type, t.shape)
        assert old.tensors[name].data.tobytes() == t.data.tobytes()
    info = model_info(old)
    assert (info.n_head_kv, info.file_type) == (4, "MOSTLY_Q4_K_M")


# -- old GGML containers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, version, fmt",
    [("ggml", 0, "ggml"), ("ggmf", 1, "ggmf-v1"), ("ggjt", 1, "ggjt-v1"), ("ggjt", 2, "ggjt-v2")],
)
def test_old_ggml_containers_with_float_tensors_are_read(
    tmp_path: Path, kind: str, version: int, fmt: str
) -> None:
    path = make_model(
        tmp_path / "m.bin", "tiny", "f16", format="ggml", ggml_kind=kind, ggml_version=version
    )
    mf = open_model_file(path)
    assert mf.format == fmt and len(mf.tensors) == 2 + 9 * 2 + 1
    assert model_info(mf).n_ff == 768


@pytest.mark.parametrize(
    "kind, version, qtype",
    [
        ("ggml", 0, "q4_0"),
        ("ggmf", 1, "q8_0"),
        ("ggjt", 1, "q5_1"),
        ("ggjt", 2, "q4_0"),
        ("ggjt", 2, "q4_1"),
        ("ggjt", 2, "q8_0"),
    ],
)
def test_old_quantized_block_layouts_are_rejected(
    tmp_path: Path, kind: str, version: int, qtype: str
) -> None:
    path = make_model(
        tmp_path / "m.bin", "tiny", qtype, format="ggml", ggml_kind=kind, ggml_version=version
    )
    fails(path, "'tok_embeddings.weight'", f"old {qtype.upper()} block layout", "ggjt v3")


def test_ggjt_v2_q5_blocks_are_unchanged_and_read(tmp_path: Path) -> None:
    path = make_model(
        tmp_path / "m.bin", "tiny", "q5_0", format="ggml", ggml_kind="ggjt", ggml_version=2
    )
    assert open_model_file(path).tensors["blk.0.attn_q.weight"].type == GGMLType.Q5_0


# -- truncation -------------------------------------------------------------------------------


def cut_points(data: bytes, mf_sizes: list[tuple[int, int]], head_end: int) -> list[int]:
    """Every 5th byte of the header, plus both sides of every tensor boundary and mid-tensor."""
    points = set(range(1, head_end, 5)) | {head_end - 1, head_end}
    for start, n in mf_sizes:
        points |= {start - 1, start, start + 1, start + n // 2, start + n - 1}
    return sorted(p for p in points if 0 < p < len(data))


@pytest.mark.parametrize("kind", ["gguf", "ggml"])
def test_truncation_at_many_offsets(tmp_path: Path, small_files: dict, kind: str) -> None:
    data = small_files[kind]
    mf = open_model_file(write(tmp_path, data, "full"))
    spans = sorted((t.offset, t.nbytes) for t in mf.tensors.values())
    data_end = max(o + n for o, n in spans)
    cuts = cut_points(data, spans, spans[0][0])
    assert len(cuts) > 100
    for cut in cuts:
        p = write(tmp_path, data[:cut], "cut")
        if cut >= data_end:  # only padding after the last tensor is gone
            open_model_file(p)
            continue
        msg = fails(p)
        assert "offset" in msg or "missing" in msg, msg


def test_truncated_tensor_data_names_the_tensor(tmp_path: Path, small_files: dict) -> None:
    data = small_files["gguf"]
    mf = open_model_file(write(tmp_path, data, "full"))
    last = max(mf.tensors.values(), key=lambda t: t.offset)
    fails(
        write(tmp_path, data[: last.offset + 10]),
        repr(last.name),
        f"offset {last.offset}",
        "truncated",
    )


def test_ggml_cut_between_tensor_records_reports_missing_tensors(
    tmp_path: Path, small_files: dict
) -> None:
    data = small_files["ggml"]
    mf = open_model_file(write(tmp_path, data, "full"))
    t = mf.tensors["output_norm.weight"]
    fails(write(tmp_path, data[: t.offset + t.nbytes]), "missing", "output.weight", "truncated")


# -- tensor records ---------------------------------------------------------------------------


def small_gguf(
    tmp_path: Path,
    tensors: list[tuple[str, tuple[int, ...], int]],
    *,
    alignment: int = 32,
    extra: dict | None = None,
) -> Path:
    w = GGUFWriter(tmp_path / "t.gguf", alignment=alignment)
    add_vocab_keys(w, synthetic_vocab(300))
    for k, v in (extra or {}).items():
        w.add(k, v)
    for name, shape, ttype in tensors:
        nbytes = None if ttype in (0, 1, 8) else 64
        n = int(np.prod(shape)) * (4 if ttype == 0 else 2) if ttype in (0, 1) else (nbytes or 0)
        if ttype == 8:
            n = int(np.prod(shape)) // 32 * 34
        w.add_tensor(name, [b"\0" * n], shape=shape, type=ttype, nbytes=nbytes)
    w.write()
    return tmp_path / "t.gguf"


def test_unknown_tensor_type_is_named(tmp_path: Path) -> None:
    p = small_gguf(tmp_path, [("a", (32,), 0), ("blk.0.iq2", (256,), 16)])  # 16 = IQ2_XXS in GGUF
    fails(p, "'blk.0.iq2'", "tensor type 16", "re-quantize")


def test_unknown_tensor_type_in_ggml(tmp_path: Path) -> None:
    hp = GGMLHParams(300, 64, 256, 2, 1, 32, 0)
    w = GGMLWriter(tmp_path / "m.bin", hp)
    w.set_vocab(synthetic_vocab(300))
    w.add_tensor("tok_embeddings.weight", [b"\0" * 300 * 64 * 4], shape=(300, 64), type=0)
    w.write()
    data = bytearray((tmp_path / "m.bin").read_bytes())
    pos = (
        data.index(b"tok_embeddings.weight") - 4 * 4
    )  # n_dims, name_len, type, ne0, ne1 precede the name
    data[pos + 8 - 4 : pos + 12 - 4] = struct.pack("<I", 23)
    fails(write(tmp_path, bytes(data)), "'token_embd.weight'", "tensor type 23")


def test_rows_that_do_not_fit_blocks(tmp_path: Path) -> None:
    p = small_gguf(tmp_path, [("a", (64,), 8)])
    data = bytearray(p.read_bytes())
    pos = gguf_info_pos(data, "a") + 4  # the first dim (row length) follows n_dims
    data[pos : pos + 8] = struct.pack("<Q", 48)
    fails(write(tmp_path, bytes(data)), "'a'", "not a multiple of its block size 32")


def test_dimension_zero(tmp_path: Path) -> None:
    p = small_gguf(tmp_path, [("a", (8, 4), 0)])
    data = bytearray(p.read_bytes())
    pos = gguf_info_pos(data, "a") + 4 + 8
    data[pos : pos + 8] = struct.pack("<Q", 0)
    fails(write(tmp_path, bytes(data)), "'a'", "invalid dimension")


def test_huge_dimension_is_a_truncation_not_a_crash(tmp_path: Path) -> None:
    p = small_gguf(tmp_path, [("a", (8, 4), 0)])
    data = bytearray(p.read_bytes())
    pos = gguf_info_pos(data, "a") + 4 + 8
    data[pos : pos + 8] = struct.pack("<Q", 1 << 62)
    fails(write(tmp_path, bytes(data)), "'a'", "truncated")


def test_overlapping_tensors(tmp_path: Path) -> None:
    p = small_gguf(tmp_path, [("a", (64,), 0), ("b", (64,), 0)])
    data = bytearray(p.read_bytes())
    pos = gguf_info_pos(data, "b") + 4 + 8 + 4  # n_dims, ne[0], type, then the offset
    assert struct.unpack_from("<Q", data, pos)[0] == 256
    data[pos : pos + 8] = struct.pack("<Q", 128)
    fails(write(tmp_path, bytes(data)), "'a'", "overlaps", "'b'")


def test_duplicate_tensor_names(tmp_path: Path) -> None:
    p = small_gguf(tmp_path, [("aa", (64,), 0), ("ab", (64,), 0)])
    data = p.read_bytes().replace(struct.pack("<Q", 2) + b"ab", struct.pack("<Q", 2) + b"aa")
    fails(write(tmp_path, data), "'aa'", "twice")


@pytest.mark.parametrize(
    "value, pattern",
    [
        (12, "power of two"),
        (0, "power of two"),
        (24, "power of two"),
        (96, "power of two"),
        ("x", "integer"),
        (32.0, "integer"),
    ],
)
def test_bad_alignment_values(tmp_path: Path, value: object, pattern: str) -> None:
    p = small_gguf(tmp_path, [("a", (64,), 0)], extra={"general.alignment": value})
    fails(p, "general.alignment", pattern)


def test_misaligned_tensor_offset(tmp_path: Path) -> None:
    p = small_gguf(tmp_path, [("a", (64,), 0), ("b", (64,), 0)], alignment=64)
    data = bytearray(p.read_bytes())
    pos = gguf_info_pos(data, "b") + 4 + 8 + 4
    data[pos : pos + 8] = struct.pack("<Q", 256 + 32)
    fails(write(tmp_path, bytes(data)), "'b'", "not aligned to 64")


# -- shapes vs hyperparameters ------------------------------------------------------------------


def test_shape_that_contradicts_the_hyperparameters(tmp_path: Path) -> None:
    p = make_model(tmp_path / "m.gguf", SMALL, "f32")
    data = bytearray(p.read_bytes())
    pos = gguf_info_pos(data, "blk.0.ffn_gate.weight") + 4 + 8  # ne[1] = n_ff rows
    data[pos : pos + 8] = struct.pack("<Q", 48)
    fails(write(tmp_path, bytes(data)), "'blk.0.ffn_gate.weight'", "shape (48, 64)", "(96, 64)")


def test_head_count_kv_that_contradicts_attn_k(tmp_path: Path) -> None:
    w_path = make_model(tmp_path / "m.gguf", SMALL, "f32")
    data = w_path.read_bytes()
    key = struct.pack("<Q", 29) + b"llama.attention.head_count_kv" + struct.pack("<II", T.UINT32, 1)
    assert key in data
    fails(
        write(tmp_path, data.replace(key, key[:-4] + struct.pack("<I", 2))),
        "'blk.0.attn_k.weight'",
        "n_head_kv 2",
    )


def test_ggml_shape_mismatch(tmp_path: Path, small_files: dict) -> None:
    data = bytearray(small_files["ggml"])
    name = b"layers.0.feed_forward.w2.weight"
    pos = data.index(name) - 8  # ne = (n_ff, n_embd) precede the name
    assert struct.unpack_from("<2I", data, pos) == (96, 64)
    data[pos : pos + 8] = struct.pack("<2I", 64, 96)
    fails(write(tmp_path, bytes(data)), "'blk.0.ffn_down.weight'", "shape (96, 64)")


@pytest.mark.parametrize(
    "field, value, pattern",
    [
        ("llama.block_count", "two", "non-negative integer"),
        ("llama.attention.layer_norm_rms_epsilon", "x", "number"),
        ("tokenizer.ggml.bos_token_id", 5000, "outside the vocab"),
        ("tokenizer.ggml.scores", ["a"], "numeric array"),
        ("general.architecture", 7, "string"),
    ],
)
def test_mistyped_metadata(tmp_path: Path, field: str, value: object, pattern: str) -> None:
    fails(small_gguf(tmp_path, [], extra={field: value}), field, pattern)


def test_ggml_implausible_header_and_vocab(tmp_path: Path, small_files: dict) -> None:
    data = bytearray(small_files["ggml"])
    bad = bytes(data[:12]) + struct.pack("<I", 0) + bytes(data[16:])  # n_embd 0
    fails(write(tmp_path, bad), "implausible hyperparameters")
    first_len = 8 + 28
    data[first_len : first_len + 4] = struct.pack("<I", 1 << 20)
    fails(write(tmp_path, bytes(data)), "vocab entry #0", "offset 40")  # where its text would start


def test_every_golden_file_reads(tmp_path: Path) -> None:
    paths = model_paths() + [vocab_dir() / "ggml-vocab-llama-spm.gguf"]
    present = [p for p in paths if p.exists()]
    if not present:
        pytest.skip("no golden files")
    for p in present:
        mf = open_model_file(p)
        assert mf.format in ("gguf-v3", "ggjt-v3")
        assert len(mf.tensors) in (0, 21)


# -- fuzz ---------------------------------------------------------------------------------------


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["gguf", "ggml"]),
    cut=st.one_of(st.none(), st.integers(0, 100_000)),
    edits=st.lists(
        st.tuples(st.integers(0, 100_000), st.binary(min_size=1, max_size=8)), max_size=4
    ),
    focus=st.booleans(),
)
def test_mutated_files_give_a_model_file_or_a_format_error(
    tmp_path: Path, small_files: dict, kind: str, cut: int | None, edits: list, focus: bool
) -> None:
    data = bytearray(small_files[kind])
    head = 4000 if focus else len(data)  # most edits hit the header, where the parsing happens
    for offset, b in edits:
        pos = offset % head
        data[pos : pos + len(b)] = b
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    p = write(tmp_path, bytes(data), "fuzz")
    try:
        mf = open_model_file(p)
    except ModelFormatError as exc:
        assert str(p) in str(exc)
        return
    try:
        model_info(mf)
    except ModelFormatError:
        pass
