"""Mutated golden files through ``load_model`` and a 4-token eval (issue 19): every mutation of the
header, the metadata or the tensor-info records gives a model whose logits are finite, or a
ModelFormatError; never another exception, never more than 2 s."""

from __future__ import annotations

import itertools
import math
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import ModelFormatError
from agent.llm import load_model
from agent.llm.formats.files import open_model_file
from agent.llm.formats.gguf_writer import GGUFValueType as T
from tests.golden import BUNDLED
from tests.llm.formats.gguf_edit import ggml_record_fields, gguf_layout

FILES = {
    "gguf": BUNDLED / "models" / "tiny-q4_0.gguf",
    "ggml": BUNDLED / "models" / "tiny.ggmlv3.q4_K_M.bin",
}
TIME_LIMIT = 2.0

# Values that sit on the rules' edges, packed as the fields they land on are stored.
INTS = [0, 1, 2, 3, 4, 7, 32, 64, 255, 256, 1024, 1 << 16, 1 << 20, (1 << 31) - 1, (1 << 32) - 1]
FLOATS = [-1.0, 0.0, -0.0, 1e-45, 1e-30, 1e30, 3.4e38, math.inf, -math.inf, math.nan, -10000.0]
FLOAT_TYPES = {T.FLOAT32, T.FLOAT64}


@dataclass(frozen=True)
class Spot:
    """One header field: where it is, how wide, and whether it holds a float."""

    pos: int
    size: int
    is_float: bool = False


def spots(data: bytes, kind: str, path: Path) -> list[Spot]:
    """Every field the loader's rules read: the counts, each scalar metadata value and each
    tensor-info field (GGUF); the 7 header fields and the tensor records' fields (GGML)."""
    if kind == "ggml":
        mf = open_model_file(path)
        records = sorted((t.offset, len(t.shape)) for t in mf.tensors.values())
        fields = [(8 + 4 * i, 4) for i in range(7)] + ggml_record_fields(data, records)
        return [Spot(pos, size) for pos, size in fields]
    lay = gguf_layout(data)
    found = [Spot(8, 8), Spot(16, 8)]  # tensor and metadata counts
    for vtype, start, end in lay.values.values():
        if vtype not in (8, 9):  # scalars (strings and arrays are read, not ruled)
            found.append(Spot(start, end - start, T(vtype) in FLOAT_TYPES))
    return found + [Spot(pos, size) for pos, size in lay.info_fields]


# The hyperparameter fields come first in each list: GGUF counts and llama.* scalars, GGML header.
HEADER_SPOTS = {"gguf": 11, "ggml": 7}


def edit_strategy(n_fields: int, n_header: int) -> st.SearchStrategy:
    """One edit: (field index, value, shift). Values: an edge integer or float packed to the
    field's width, a copy of a header field (n_head = n_embd...), or raw bytes."""
    index = st.one_of(st.integers(0, n_header - 1), st.integers(0, n_fields - 1))
    value = st.one_of(
        st.sampled_from(INTS).map(lambda v: ("int", v)),
        st.sampled_from(FLOATS).map(lambda v: ("float", v)),
        st.integers(1, n_header - 1).map(lambda k: ("copy", k)),  # the k-th next header field
        st.binary(min_size=1, max_size=4).map(lambda b: ("raw", b)),
    )
    shift = st.one_of(st.just(0), st.sampled_from([1, -1, 2, 3]))  # mostly on the field
    return st.tuples(index, value, shift)


def payload(data: bytes, fields: list[Spot], index: int, value: tuple, n_header: int) -> bytes:
    how, v = value
    spot = fields[index]
    src = fields[(index + v) % n_header] if how == "copy" else spot
    if how == "copy" and src.size == spot.size:
        return data[src.pos : src.pos + spot.size]
    if how == "float" or (how == "copy" and spot.is_float):
        return struct.pack("<f" if spot.size == 4 else "<d", v if how == "float" else math.nan)
    if how == "int":
        code = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[spot.size]
        return struct.pack(code, v % (1 << (8 * spot.size)))
    raw = v if how == "raw" else b"\xff"
    return (raw * spot.size)[: spot.size]


@dataclass
class Golden:
    data: bytes = field(repr=False)  # (a failing example's report stays short)
    fields: list[Spot] = field(repr=False)


@pytest.fixture(scope="module")
def golden() -> dict[str, Golden]:
    return {
        kind: Golden(p.read_bytes(), spots(p.read_bytes(), kind, p)) for kind, p in FILES.items()
    }


_names = itertools.count()


def load_and_eval(path: Path) -> None:
    """The property: finite logits from a 4-token eval, or a ModelFormatError; within 2 s."""
    t0 = time.perf_counter()
    try:
        m = load_model(path, n_ctx=8, threads=1)
        ids = [i % m.info.n_vocab for i in (1, 2, 3, 4)]
        logits = m.eval(ids)
        assert logits.shape == (4, m.info.n_vocab) and np.isfinite(logits).all()
        del m
    except ModelFormatError as exc:
        assert str(path) in str(exc), exc
    elapsed = time.perf_counter() - t0
    assert elapsed <= TIME_LIMIT, elapsed


def mutate(data: bytes, fields: list[Spot], edits: list, n_header: int) -> bytes:
    out = bytearray(data)
    for index, value, shift in edits:
        spot = fields[index]
        chunk = payload(data, fields, index, value, n_header)
        out[spot.pos + shift : spot.pos + shift + len(chunk)] = chunk
    return bytes(out[: len(data)])


def check_mutations(tmp_path: Path, golden: dict, draw: st.DataObject) -> None:
    kind = draw.draw(st.sampled_from(["gguf", "ggml"]), label="kind")
    data, fields = golden[kind].data, golden[kind].fields
    edit = edit_strategy(len(fields), HEADER_SPOTS[kind])
    edits = draw.draw(st.lists(edit, min_size=1, max_size=3), label="edits")
    path = tmp_path / f"fuzz{next(_names)}.{kind}"  # a fresh name: an old model may still map one
    path.write_bytes(mutate(data, fields, edits, HEADER_SPOTS[kind]))
    try:
        load_and_eval(path)
    finally:
        path.unlink()


SETTINGS = dict(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@settings(max_examples=80, **SETTINGS)
@given(draw=st.data())
def test_mutated_golden_files_load_finite_or_fail_cleanly(
    tmp_path: Path, golden: dict, draw: st.DataObject
) -> None:
    check_mutations(tmp_path, golden, draw)


@pytest.mark.slow
@settings(max_examples=2000, **SETTINGS)
@given(draw=st.data())
def test_mutation_campaign(tmp_path: Path, golden: dict, draw: st.DataObject) -> None:
    check_mutations(tmp_path, golden, draw)


def test_the_spots_are_the_fields_the_rules_read(golden: dict) -> None:
    """The mutation targets are the header fields (so the fuzz test can find a broken value)."""
    data, fields = golden["gguf"].data, golden["gguf"].fields
    lay = gguf_layout(data)
    _, eps_start, _ = lay.values["llama.attention.layer_norm_rms_epsilon"]
    assert Spot(eps_start, 4, True) in fields
    assert len(fields) == 2 + 16 + 16 * 5 + 5 * 4  # counts, scalars, tensor infos (5 are 1-D)
    data, fields = golden["ggml"].data, golden["ggml"].fields
    assert [struct.unpack_from("<I", data, s.pos)[0] for s in fields[:7]] == [
        1024,
        256,
        256,
        4,
        2,
        64,
        15,
    ]
    assert len(fields) == 7 + 16 * 5 + 5 * 4  # header; n_dims, name length, type, dims


def single_field_edits(kind: str, golden: dict) -> list[tuple[int, tuple]]:
    """Every hyperparameter field with every edge value and every other header field's value."""
    n_header = HEADER_SPOTS[kind]
    values = [("int", v) for v in INTS] + [("float", v) for v in FLOATS]
    values += [("copy", k) for k in range(1, n_header)]
    fields = golden[kind].fields
    return [
        (index, value)
        for index in range(n_header)
        for value in values
        if value[0] != "float" or fields[index].is_float
    ]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gguf", "ggml"])
def test_every_header_field_with_every_edge_value(tmp_path: Path, golden: dict, kind: str) -> None:
    """The systematic half of the campaign: one field changed at a time, every value tried."""
    data, fields = golden[kind].data, golden[kind].fields
    for index, value in single_field_edits(kind, golden):
        path = tmp_path / f"field{next(_names)}.{kind}"
        path.write_bytes(mutate(data, fields, [(index, value, 0)], HEADER_SPOTS[kind]))
        try:
            load_and_eval(path)
        except BaseException as exc:
            exc.add_note(f"{kind} field #{index} at offset {fields[index].pos} set to {value}")
            raise
        finally:
            path.unlink()
