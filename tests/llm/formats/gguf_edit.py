"""Byte-level edits of model files for the hostile-input tests (mutated golden copies)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.llm.formats.gguf import _GGUFReader
from agent.llm.formats.gguf_writer import GGUFValueType as T

# GGML v3 header: magic, version, then n_vocab n_embd n_mult n_head n_layer n_rot ftype (u32 each)
GGML_FIELD_OFFSETS = {
    "n_vocab": 8,
    "n_embd": 12,
    "n_mult": 16,
    "n_head": 20,
    "n_layer": 24,
    "n_rot": 28,
    "ftype": 32,
}


@dataclass
class GGUFLayout:
    """Where the parts of a GGUF v2/v3 header are."""

    n_tensors: int
    n_kv: int
    values: dict[str, tuple[int, int, int]]  # key -> (value type, value start, value end)
    kv_end: int  # the tensor-info records start here
    info_end: int
    data_start: int
    info_fields: list[tuple[int, int]]  # (position, size) of each n_dims, dim, type and offset


def gguf_layout(data: bytes, alignment: int = 32) -> GGUFLayout:
    r = _GGUFReader(Path("edit"), np.frombuffer(data, np.uint8), 3)
    n_tensors, n_kv = r.u64("n_tensors"), r.u64("n_kv")
    values = {}
    for _ in range(n_kv):
        key = r.string("key")
        vtype = r.u32("type")
        start = r.pos
        r.value(vtype, key)
        values[key] = (vtype, start, r.pos)
    kv_end = r.pos
    fields = []
    for _ in range(n_tensors):
        r.string("name")
        fields.append((r.pos, 4))
        n_dims = r.u32("n_dims")
        for _ in range(n_dims):
            fields.append((r.pos, 8))
            r.u64("dim")
        fields += [(r.pos, 4), (r.pos + 4, 8)]
        r.u32("type")
        r.u64("offset")
    info_end = r.pos
    r.align(alignment)
    return GGUFLayout(n_tensors, n_kv, values, kv_end, info_end, r.pos, fields)


SCALAR_CODES = {T.UINT32: "<I", T.INT32: "<i", T.FLOAT32: "<f", T.UINT64: "<Q", T.FLOAT64: "<d"}


def set_gguf_value(data: bytes, key: str, value: float) -> bytes:
    """``data`` with the existing scalar ``key`` set to ``value`` (same type, in place)."""
    vtype, start, end = gguf_layout(data).values[key]
    packed = struct.pack(SCALAR_CODES[T(vtype)], value)
    assert len(packed) == end - start
    return data[:start] + packed + data[end:]


def add_gguf_value(data: bytes, key: str, value: float | int, vtype: T = T.FLOAT32) -> bytes:
    """``data`` with one more scalar key; the tensor records move, the data section is re-padded."""
    lay = gguf_layout(data)
    entry = struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", vtype)
    entry += struct.pack(SCALAR_CODES[vtype], value)
    head = data[:8] + struct.pack("<QQ", lay.n_tensors, lay.n_kv + 1) + data[24 : lay.kv_end]
    head += entry + data[lay.kv_end : lay.info_end]
    head += b"\0" * (-len(head) % 32)
    return head + data[lay.data_start :]


def set_ggml_field(data: bytes, field: str, value: int) -> bytes:
    pos = GGML_FIELD_OFFSETS[field]
    return data[:pos] + struct.pack("<I", value) + data[pos + 4 :]


def ggml_record_fields(data: bytes, tensors: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(position, 4) of the n_dims, name length, type and shape fields of the GGML v3 tensor
    records whose data starts at the given (offset, n_dims): 3 u32, the dims, the name, padding."""
    fields = []
    for offset, n_dims in tensors:
        name_end = offset
        while name_end > 0 and data[name_end - 1] == 0:  # skip the alignment padding
            name_end -= 1
        for start in range(name_end - 1, max(0, name_end - 200), -1):  # where the name starts
            head = start - 4 * (3 + n_dims)
            n_d, name_len = struct.unpack_from("<2I", data, head)
            if n_d == n_dims and start + name_len == name_end:
                fields += [(head + 4 * i, 4) for i in range(3 + n_dims)]
                break
    return fields
