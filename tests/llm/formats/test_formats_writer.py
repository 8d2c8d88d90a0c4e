"""GGUFWriter / GGMLWriter: byte layout, every value type, versions, alignment, streaming,
errors."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import ModelFormatError
from agent.llm.formats.files import open_model_file
from agent.llm.formats.ggml import ggml_piece_to_spm, read_ggml
from agent.llm.formats.ggml_types import GGMLType
from agent.llm.formats.ggml_writer import (
    GGMLHParams,
    GGMLWriter,
    find_n_mult,
    ggml_tensor_name,
    spm_to_ggml_piece,
)
from agent.llm.formats.gguf import read_gguf
from agent.llm.formats.gguf_writer import GGUFValueType as T
from agent.llm.formats.gguf_writer import GGUFWriter, WriterError, infer_type
from tests.golden import model_paths

GOLDEN = {p.name: p for p in model_paths()}


def need(name: str) -> Path:
    if name not in GOLDEN:
        pytest.skip(f"golden file {name} not present")
    return GOLDEN[name]


def vocab_keys(w: GGUFWriter, n: int = 4) -> None:
    w.add("tokenizer.ggml.tokens", [f"t{i}" for i in range(n)])


# -- exact bytes --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2, 3])
def test_header_bytes_follow_the_spec(tmp_path: Path, version: int) -> None:
    w = GGUFWriter(tmp_path / "m.gguf", version=version)
    w.add("k", 7, T.UINT32)
    w.add_tensor("t", np.arange(8, dtype=np.float32).reshape(2, 4))
    w.write()
    data = (tmp_path / "m.gguf").read_bytes()
    c = "<I" if version == 1 else "<Q"  # v1: 32-bit counts, string lengths and dims
    expect = b"GGUF" + struct.pack("<I", version) + struct.pack(c, 1) + struct.pack(c, 1)
    expect += struct.pack(c, 1) + b"k" + struct.pack("<II", T.UINT32, 7)
    expect += (
        struct.pack(c, 1) + b"t" + struct.pack("<I", 2) + struct.pack(c, 4) + struct.pack(c, 2)
    )
    expect += struct.pack("<IQ", GGMLType.F32, 0)
    expect += b"\0" * (-len(expect) % 32)
    expect += np.arange(8, dtype="<f4").tobytes()
    assert data == expect


def test_tensor_data_is_padded_to_the_alignment(tmp_path: Path) -> None:
    w = GGUFWriter(tmp_path / "m.gguf", alignment=64)
    vocab_keys(w)
    w.add_tensor("a", np.ones(3, np.float32))  # 12 bytes -> next tensor at 64
    w.add_tensor("b", np.full(5, 2, np.float16))
    size = w.write()
    mf = read_gguf(tmp_path / "m.gguf")
    assert mf.metadata["general.alignment"] == 64
    assert mf.tensors["b"].offset - mf.tensors["a"].offset == 64
    assert all(t.offset % 64 == 0 for t in mf.tensors.values())
    assert size == (tmp_path / "m.gguf").stat().st_size == mf.tensors["b"].offset + 64
    np.testing.assert_array_equal(mf.tensors["b"].data.view("<f2"), np.full(5, 2, np.float16))


# -- metadata values ------------------------------------------------------------------------------

SCALARS = [
    (T.UINT8, 255),
    (T.INT8, -128),
    (T.UINT16, 65535),
    (T.INT16, -32768),
    (T.UINT32, 4_000_000_000),
    (T.INT32, -2_000_000_000),
    (T.FLOAT32, 0.5),
    (T.BOOL, True),
    (T.STRING, "héllo ▁wörld"),
    (T.UINT64, 1 << 60),
    (T.INT64, -(1 << 60)),
    (T.FLOAT64, 1e-300),
]


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_scalar_type_round_trips(tmp_path: Path, version: int) -> None:
    w = GGUFWriter(tmp_path / "m.gguf", version=version)
    vocab_keys(w)
    expected = {}
    for vtype, value in SCALARS:
        if version == 1 and vtype in (T.UINT64, T.INT64, T.FLOAT64):
            with pytest.raises(WriterError, match="v2"):
                w.add(f"s.{vtype.name}", value, vtype)
            continue
        w.add(f"s.{vtype.name}", value, vtype)
        expected[f"s.{vtype.name}"] = value
    w.write()
    md = read_gguf(tmp_path / "m.gguf").metadata
    for key, value in expected.items():
        assert md[key] == value, key
    assert read_gguf(tmp_path / "m.gguf").format == f"gguf-v{version}"


@pytest.mark.parametrize(
    "dtype, vtype",
    [
        (np.uint8, T.UINT8),
        (np.int8, T.INT8),
        (np.uint16, T.UINT16),
        (np.int16, T.INT16),
        (np.uint32, T.UINT32),
        (np.int32, T.INT32),
        (np.float32, T.FLOAT32),
        (np.uint64, T.UINT64),
        (np.int64, T.INT64),
        (np.float64, T.FLOAT64),
    ],
)
def test_numeric_arrays_keep_their_element_type(tmp_path: Path, dtype: type, vtype: T) -> None:
    values = np.arange(-3, 5).astype(dtype)
    w = GGUFWriter(tmp_path / "m.gguf")
    vocab_keys(w)
    w.add("a", values)
    w.write()
    got = read_gguf(tmp_path / "m.gguf").metadata["a"]
    assert got.dtype == np.dtype(dtype).newbyteorder("<")
    np.testing.assert_array_equal(got, values)


def test_string_bool_nested_and_empty_arrays(tmp_path: Path) -> None:
    w = GGUFWriter(tmp_path / "m.gguf", version=2)
    vocab_keys(w)
    w.add("strings", ["a", "▁b", "", "<0x0A>"])
    w.add("bools", [True, False, True])
    w.add("nested", [[1, 2, 3], [-1], ["x", "y"], [[0.5]]])
    w.add("empty", [], elem_type=T.INT32)
    w.write()
    md = read_gguf(tmp_path / "m.gguf").metadata
    assert md["strings"] == ["a", "▁b", "", "<0x0A>"]
    assert md["bools"] == [True, False, True]
    assert [list(x) if isinstance(x, np.ndarray) else x for x in md["nested"][:3]] == [
        [1, 2, 3],
        [-1],
        ["x", "y"],
    ]
    assert md["nested"][1].dtype == np.int32 and md["nested"][0].dtype == np.uint32
    assert md["nested"][3][0][0] == pytest.approx(0.5)
    assert len(md["empty"]) == 0 and md["empty"].dtype == np.int32


def test_type_inference() -> None:
    assert infer_type(True) == T.BOOL
    assert infer_type(3) == T.UINT32 and infer_type(-3) == T.INT32
    assert infer_type(1 << 40) == T.UINT64 and infer_type(-(1 << 40)) == T.INT64
    assert (
        infer_type(1.5) == T.FLOAT32 and infer_type("s") == T.STRING and infer_type([1]) == T.ARRAY
    )
    with pytest.raises(WriterError, match="dict"):
        infer_type({"a": 1})


def test_bad_metadata_values_are_reported(tmp_path: Path) -> None:
    w = GGUFWriter(tmp_path / "m.gguf")
    with pytest.raises(WriterError, match="mixes element types"):
        w.add("mixed", [1, "a"])
    w.add("big", 300, T.UINT8)
    with pytest.raises(WriterError, match="'big'.*UINT8"):
        w.write()
    assert not (tmp_path / "m.gguf").exists() and not (tmp_path / "m.gguf.part").exists()


# -- tensors --------------------------------------------------------------------------------------


def test_tensor_data_streams_from_lazy_chunks(tmp_path: Path) -> None:
    calls = []
    rows = np.random.default_rng(0).integers(0, 256, (64, 18), dtype=np.uint8)  # 64 Q4_0 blocks

    def chunks():
        calls.append("called")
        for i in range(0, 64, 16):
            yield rows[i : i + 16]

    w = GGUFWriter(tmp_path / "m.gguf")
    vocab_keys(w)
    w.add_tensor("q", chunks, shape=(8, 256), type=GGMLType.Q4_0)
    assert calls == []  # nothing is generated before write()
    w.write()
    assert calls == ["called"]
    t = read_gguf(tmp_path / "m.gguf").tensors["q"]
    assert t.type == GGMLType.Q4_0 and t.shape == (8, 256)
    assert t.data.tobytes() == rows.tobytes()


@pytest.mark.parametrize("n", [17, 19])
def test_wrong_amount_of_tensor_data_fails_and_leaves_no_file(tmp_path: Path, n: int) -> None:
    w = GGUFWriter(tmp_path / "m.gguf")
    w.add_tensor("q", [b"\0" * n], shape=(32,), type=GGMLType.Q4_0)  # needs 18 bytes
    with pytest.raises(WriterError, match="'q'.*18"):
        w.write()
    assert list(tmp_path.iterdir()) == []


def test_add_tensor_errors(tmp_path: Path) -> None:
    w = GGUFWriter(tmp_path / "m.gguf")
    w.add_tensor("a", np.zeros(4, np.float32))
    with pytest.raises(WriterError, match="twice"):
        w.add_tensor("a", np.zeros(4, np.float32))
    with pytest.raises(WriterError, match="block size 256"):
        w.add_tensor("b", b"", shape=(2, 100), type=GGMLType.Q4_K)
    with pytest.raises(WriterError, match="unknown tensor type 16"):
        w.add_tensor("c", b"", shape=(4,), type=16)
    with pytest.raises(WriterError, match="shape"):
        w.add_tensor("d", b"", shape=(0, 4), type=GGMLType.F32)
    with pytest.raises(WriterError, match="explicit shape"):
        w.add_tensor("e", np.zeros(4, np.uint8))
    with pytest.raises(WriterError, match="only be written as F32 or F16"):
        w.add_tensor("f", np.zeros(32, np.float32), type=GGMLType.Q8_0)
    with pytest.raises(WriterError, match="version 4"):
        GGUFWriter(tmp_path / "x", version=4)
    with pytest.raises(WriterError, match="multiple of 8"):
        GGUFWriter(tmp_path / "x", alignment=12)


def test_float_data_is_converted_to_the_tensor_type(tmp_path: Path) -> None:
    x = np.linspace(-1, 1, 64, dtype=np.float64).reshape(4, 16)
    w = GGUFWriter(tmp_path / "m.gguf")
    vocab_keys(w)
    w.add_tensor("h", x, type=GGMLType.F16)
    w.add_tensor("f", x.astype(np.float32))
    w.write()
    mf = read_gguf(tmp_path / "m.gguf")
    np.testing.assert_array_equal(
        mf.tensors["h"].data.view("<f2").reshape(4, 16), x.astype(np.float16)
    )
    np.testing.assert_array_equal(
        mf.tensors["f"].data.view("<f4").reshape(4, 16), x.astype(np.float32)
    )


@pytest.mark.parametrize("name", ["tiny-f32.gguf", "tiny-q4_K_M.gguf", "tiny-q6_K.gguf"])
def test_rewriting_golden_gguf_files_reproduces_llama_cpp_bytes(tmp_path: Path, name: str) -> None:
    src = read_gguf(need(name))
    w = GGUFWriter(tmp_path / "copy.gguf")
    for key, value in src.metadata.items():
        w.add(key, value)
    for t in src.tensors.values():
        w.add_tensor(t.name, t.data, shape=t.shape, type=t.type)
    w.write()
    dst = read_gguf(tmp_path / "copy.gguf")
    assert list(dst.tensors) == list(src.tensors)
    for tname, t in src.tensors.items():
        assert dst.tensors[tname].data.tobytes() == t.data.tobytes()
    assert dst.vocab.tokens == src.vocab.tokens
    np.testing.assert_array_equal(dst.vocab.scores, src.vocab.scores)
    np.testing.assert_array_equal(dst.vocab.types, src.vocab.types)
    assert dst.metadata.keys() == src.metadata.keys()
    # With the inferred types (uint32 ints, float32 floats, int32/float32 arrays) the file is the
    # one llama.cpp's gguf-py wrote, byte for byte.
    assert (tmp_path / "copy.gguf").read_bytes() == need(name).read_bytes()


# -- hypothesis: any metadata round-trips ---------------------------------------------------------

scalar = st.one_of(
    st.booleans(),
    st.integers(-(1 << 31), (1 << 32) - 1),
    st.floats(allow_nan=False, width=32),
    st.text(max_size=20),
)
values = st.one_of(
    scalar, st.lists(st.integers(0, 1000), max_size=5), st.lists(st.text(max_size=5), max_size=5)
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    md=st.dictionaries(
        st.text(min_size=1, max_size=30).filter(
            lambda k: not k.startswith(("general.", "llama.", "tokenizer."))
        ),
        values,
        max_size=8,
    ),
    version=st.sampled_from([1, 2, 3]),
)
def test_metadata_round_trip_fuzz(tmp_path: Path, md: dict, version: int) -> None:
    w = GGUFWriter(tmp_path / "f.gguf", version=version)
    vocab_keys(w)
    for k, v in md.items():
        w.add(k, v)
    w.write()
    got = read_gguf(tmp_path / "f.gguf").metadata
    for k, v in md.items():
        g = got[k]
        if isinstance(v, list) and v and isinstance(v[0], int):
            assert list(g) == v
        elif isinstance(v, list) and not v:
            assert len(g) == 0
        else:
            assert g == v, k


# -- GGML writer ----------------------------------------------------------------------------------


def test_ggml_names_and_pieces_invert_the_reader() -> None:
    for name in [
        "token_embd.weight",
        "output_norm.weight",
        "output.weight",
        "blk.3.attn_q.weight",
        "blk.0.ffn_down.weight",
        "blk.12.ffn_norm.weight",
    ]:
        from agent.llm.formats.ggml import gguf_tensor_name

        assert gguf_tensor_name(ggml_tensor_name(name)) == name
    assert ggml_tensor_name("blk.1.ffn_gate.weight") == "layers.1.feed_forward.w1.weight"
    for i, (piece, tt) in enumerate([("<unk>", 2), ("<s>", 3), ("</s>", 3)]):
        assert ggml_piece_to_spm(spm_to_ggml_piece(piece, tt), i) == (piece, tt)
    assert spm_to_ggml_piece("<0x0A>", 6) == b"\n" and ggml_piece_to_spm(b"\n", 13) == ("<0x0A>", 6)
    assert spm_to_ggml_piece("▁the", 1) == b" the" and ggml_piece_to_spm(b" the", 500) == (
        "▁the",
        1,
    )
    for n_ff, n_embd in [(11008, 4096), (13824, 5120), (28672, 8192), (768, 256), (5632, 2048)]:
        m = find_n_mult(n_ff, n_embd)  # llama.cpp's formula must give n_ff back
        assert ((8 * n_embd) // 3 + m - 1) // m * m == n_ff
    assert find_n_mult(28672, 8192) == 7168  # what HF-converted 70B GGML files carry


@pytest.mark.parametrize(
    "name", ["tiny.ggmlv3.q4_0.bin", "tiny.ggmlv3.q4_K_M.bin", "tiny.ggmlv3.f16.bin"]
)
def test_ggml_writer_reproduces_golden_files_byte_for_byte(tmp_path: Path, name: str) -> None:
    path = need(name)
    raw = path.read_bytes()
    hp = GGMLHParams(*struct.unpack_from("<7I", raw, 8))
    src = read_ggml(path)
    w = GGMLWriter(tmp_path / name, hp)
    w.set_vocab(src.vocab)
    for t in src.tensors.values():
        w.add_tensor(t.name, t.data, shape=t.shape, type=t.type)
    w.write()
    assert (tmp_path / name).read_bytes() == raw


@pytest.mark.parametrize(
    "kind, version, fmt",
    [
        ("ggml", 0, "ggml"),
        ("ggmf", 1, "ggmf-v1"),
        ("ggjt", 1, "ggjt-v1"),
        ("ggjt", 2, "ggjt-v2"),
        ("ggjt", 3, "ggjt-v3"),
    ],
)
def test_every_ggml_container_round_trips(
    tmp_path: Path, kind: str, version: int, fmt: str
) -> None:
    from agent.llm.formats.fixtures import make_model

    path = make_model(
        tmp_path / "m.bin", "tiny", "f16", format="ggml", ggml_kind=kind, ggml_version=version
    )
    ref = make_model(tmp_path / "m.gguf", "tiny", "f16")
    mf, gg = open_model_file(path), open_model_file(ref)
    assert mf.format == fmt
    assert mf.vocab.tokens == gg.vocab.tokens
    if kind == "ggml":  # unversioned files store no scores
        assert not mf.vocab.scores.any()
    else:
        np.testing.assert_array_equal(mf.vocab.scores, gg.vocab.scores)
    for t in gg.tensors.values():
        assert mf.tensors[t.name].data.tobytes() == t.data.tobytes()
        if kind == "ggjt":
            assert mf.tensors[t.name].offset % 32 == 0


def test_ggml_writer_errors(tmp_path: Path) -> None:
    hp = GGMLHParams(3, 32, 256, 1, 1, 32, 0)
    with pytest.raises(WriterError, match="ggmf version 2"):
        GGMLWriter(tmp_path / "m.bin", hp, kind="ggmf", version=2)
    w = GGMLWriter(tmp_path / "m.bin", hp)
    w.set_raw_vocab([(b"a", 0.0)])
    with pytest.raises(WriterError, match="n_vocab is 3"):
        w.write()
    w.set_raw_vocab([(b"a", 0.0)] * 3)
    w.add_tensor("norm.weight", [b"\0" * 10], shape=(32,), type=GGMLType.F32)
    with pytest.raises(WriterError, match="needs 128"):
        w.write()
    assert not (tmp_path / "m.bin").exists()
    with pytest.raises(ModelFormatError):
        open_model_file(tmp_path / "m.bin")
