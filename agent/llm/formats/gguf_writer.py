"""GGUF v1-v3 writer that streams tensor data to disk.

Usage::

    w = GGUFWriter(path)                       # GGUF v3, alignment 32
    w.add("general.architecture", "llama")
    w.add("llama.block_count", 32, GGUFValueType.UINT32)
    w.add_tensor("token_embd.weight", shape=(32000, 4096), type=GGMLType.Q4_K, data=chunks)
    w.write()

Tensor infos (with sizes and offsets) precede the data in a GGUF file, so every tensor's type and
shape must be known before ``write``; its bytes can come later, piece by piece, from an iterable or
a callable returning one, so a 7B model is never held in RAM.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import AgentError
from agent.llm.formats import gguf_keys as K
from agent.llm.formats.atomic import atomic_write
from agent.llm.formats.ggml_types import LAYOUTS, GGMLType, tensor_nbytes, type_name

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32


class WriterError(AgentError):
    """A model file could not be written as asked (bad value, size mismatch, unsupported type)."""


class GGUFValueType(IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


_SCALAR_CODES: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
}
_V2_TYPES = {GGUFValueType.UINT64, GGUFValueType.INT64, GGUFValueType.FLOAT64}  # added in GGUF v2
_NUMPY_TYPES: dict[str, GGUFValueType] = {
    "u1": GGUFValueType.UINT8,
    "i1": GGUFValueType.INT8,
    "u2": GGUFValueType.UINT16,
    "i2": GGUFValueType.INT16,
    "u4": GGUFValueType.UINT32,
    "i4": GGUFValueType.INT32,
    "f4": GGUFValueType.FLOAT32,
    "b1": GGUFValueType.BOOL,
    "u8": GGUFValueType.UINT64,
    "i8": GGUFValueType.INT64,
    "f8": GGUFValueType.FLOAT64,
}

# Tensor bytes: raw bytes, an array (uint8 raw blocks, or floats for F32/F16 tensors), an iterable
# of such chunks, or a callable returning that iterable (called only when the data is written).
Chunk = bytes | bytearray | memoryview | np.ndarray
TensorSource = Chunk | Iterable[Chunk] | Callable[[], Iterable[Chunk]]


@dataclass
class PendingTensor:
    """A declared tensor whose bytes are written later (shared by the GGUF and GGML writers)."""

    name: str
    shape: tuple[int, ...]  # numpy order: (rows, row_length)
    type: int
    nbytes: int
    source: TensorSource
    offset: int = 0  # relative to the start of the data section


def infer_type(value: Any) -> GGUFValueType:
    """The GGUF type ``add`` stores a Python value as when no type is given."""
    if isinstance(value, (bool, np.bool_)):
        return GGUFValueType.BOOL
    if isinstance(value, (int, np.integer)):
        v = int(value)
        if 0 <= v < 1 << 32:
            return GGUFValueType.UINT32  # llama.cpp's own integer keys are uint32
        if -(1 << 31) <= v < 0:
            return GGUFValueType.INT32
        return GGUFValueType.UINT64 if v > 0 else GGUFValueType.INT64
    if isinstance(value, (float, np.floating)):
        return GGUFValueType.FLOAT32
    if isinstance(value, str):
        return GGUFValueType.STRING
    if isinstance(value, (list, tuple, np.ndarray)):
        return GGUFValueType.ARRAY
    raise WriterError(
        f"cannot store a {type(value).__name__} in GGUF metadata; use int, float, bool, str or a "
        "list"
    )


def _infer_elem_type(values: Any) -> GGUFValueType:
    if isinstance(values, np.ndarray):
        key = values.dtype.kind + str(values.dtype.itemsize) if values.dtype.kind != "b" else "b1"
        if key not in _NUMPY_TYPES:
            raise WriterError(f"numpy dtype {values.dtype} has no GGUF array element type")
        return _NUMPY_TYPES[key]
    if len(values) == 0:
        return GGUFValueType.UINT32
    kinds = {infer_type(v) for v in values}
    if kinds <= {
        GGUFValueType.UINT32,
        GGUFValueType.INT32,
        GGUFValueType.UINT64,
        GGUFValueType.INT64,
    }:
        lo, hi = min(int(v) for v in values), max(int(v) for v in values)
        if lo >= 0:
            return GGUFValueType.UINT32 if hi < 1 << 32 else GGUFValueType.UINT64
        return GGUFValueType.INT32 if lo >= -(1 << 31) and hi < 1 << 31 else GGUFValueType.INT64
    if len(kinds) == 1:
        return kinds.pop()
    raise WriterError(f"array mixes element types {sorted(k.name for k in kinds)}; pass elem_type")


class GGUFWriter:
    """Collects metadata and tensor declarations, then streams the file out in one pass."""

    def __init__(
        self,
        path: str | Path,
        *,
        version: int = 3,
        alignment: int = DEFAULT_ALIGNMENT,
        progress: Callable[[int, int], None] | None = None,
    ):
        if version not in (1, 2, 3):
            raise WriterError(f"GGUF version {version} cannot be written (1, 2 or 3)")
        if alignment <= 0 or alignment % 8:
            raise WriterError(f"alignment {alignment} must be a positive multiple of 8")
        self.path = Path(path)
        self.version = version
        self.alignment = alignment
        self.progress = progress  # called with (bytes of tensor data written, total)
        self._kv: dict[str, tuple[GGUFValueType, Any, GGUFValueType | None]] = {}
        self._tensors: dict[str, PendingTensor] = {}

    # -- metadata ------------------------------------------------------------------------------
    def add(
        self,
        key: str,
        value: Any,
        vtype: GGUFValueType | None = None,
        *,
        elem_type: GGUFValueType | None = None,
    ) -> None:
        """Add one metadata key; the type is inferred unless given (see ``infer_type``)."""
        vtype = GGUFValueType(vtype) if vtype is not None else infer_type(value)
        if vtype == GGUFValueType.ARRAY and elem_type is None:
            elem_type = _infer_elem_type(value)
        self._check_type(key, vtype, elem_type)
        self._kv[key] = (vtype, value, elem_type)

    def _check_type(self, key: str, vtype: GGUFValueType, elem: GGUFValueType | None) -> None:
        if self.version == 1 and (vtype in _V2_TYPES or elem in _V2_TYPES):
            raise WriterError(f"metadata {key!r}: 64-bit value types need GGUF v2 or later")

    # -- tensors -------------------------------------------------------------------------------
    def add_tensor(
        self,
        name: str,
        data: TensorSource | None = None,
        *,
        shape: tuple[int, ...] | None = None,
        type: int | None = None,
        nbytes: int | None = None,
    ) -> None:
        """Declare a tensor. ``shape`` is numpy order (rows, row_length); for an ndarray ``data`` it
        and the type (F32/F16 from the dtype) may be left out. ``nbytes`` is only needed for types
        this project does not know (to write files that readers must reject)."""
        if name in self._tensors:
            raise WriterError(f"tensor {name!r} added twice")
        if isinstance(data, np.ndarray) and shape is None:
            if data.dtype == np.uint8:
                raise WriterError(
                    f"tensor {name!r}: raw uint8 blocks need an explicit shape and type"
                )
            shape = data.shape
        if type is None:
            if not isinstance(data, np.ndarray) or data.dtype not in (np.float32, np.float16):
                raise WriterError(
                    f"tensor {name!r}: give its type (only float arrays imply F32/F16)"
                )
            type = GGMLType.F16 if data.dtype == np.float16 else GGMLType.F32
        if shape is None or not shape or any(int(d) <= 0 for d in shape):
            raise WriterError(
                f"tensor {name!r}: shape {shape} must be non-empty with positive dimensions"
            )
        shape = tuple(int(d) for d in shape)
        if nbytes is None:
            try:
                layout = LAYOUTS[GGMLType(type)]
            except (ValueError, KeyError):
                raise WriterError(
                    f"tensor {name!r}: unknown tensor type {type}; pass nbytes to write it anyway"
                ) from None
            if shape[-1] % layout.block_size:
                raise WriterError(
                    f"tensor {name!r}: row length {shape[-1]} is not a multiple of the "
                    f"{type_name(type)} block size {layout.block_size}"
                )
            nbytes = tensor_nbytes(type, shape)
        if isinstance(data, np.ndarray) and data.dtype != np.uint8:
            data = float_tensor_bytes(name, data, int(type))
        self._tensors[name] = PendingTensor(
            name, shape, int(type), int(nbytes), data if data is not None else b""
        )

    # -- output --------------------------------------------------------------------------------
    def write(self) -> int:
        """Write the file (via a temporary ``.part`` file, renamed at the end); returns its size."""
        offset = 0
        for t in self._tensors.values():
            t.offset = offset
            offset += _pad(t.nbytes, self.alignment)
        total = sum(t.nbytes for t in self._tensors.values())
        with atomic_write(self.path) as f:
            f.write(self._header())
            f.write(b"\0" * (-f.tell() % self.alignment))
            done = 0
            for t in self._tensors.values():
                done = write_tensor_data(f, t, done, total, self.progress)
                f.write(b"\0" * (-t.nbytes % self.alignment))
            size = f.tell()
        return size

    def _header(self) -> bytes:
        count = "I" if self.version == 1 else "Q"  # v1 used 32-bit counts and lengths
        kv = dict(self._kv)
        if self.alignment != DEFAULT_ALIGNMENT and K.GENERAL_ALIGNMENT not in kv:
            kv[K.GENERAL_ALIGNMENT] = (GGUFValueType.UINT32, self.alignment, None)
        out = [
            GGUF_MAGIC,
            struct.pack(f"<I{count}{count}", self.version, len(self._tensors), len(kv)),
        ]
        for key, (vtype, value, elem) in kv.items():
            out.append(self._string(key))
            out.append(struct.pack("<I", vtype))
            out.append(self._value(key, vtype, value, elem))
        for t in self._tensors.values():
            ne = t.shape[::-1]  # ggml order: row length first
            out.append(self._string(t.name))
            out.append(struct.pack(f"<I{len(ne)}{count}IQ", len(ne), *ne, t.type, t.offset))
        return b"".join(out)

    def _string(self, s: str) -> bytes:
        data = s.encode("utf-8")
        return struct.pack("<I" if self.version == 1 else "<Q", len(data)) + data

    def _value(
        self, key: str, vtype: GGUFValueType, value: Any, elem: GGUFValueType | None
    ) -> bytes:
        try:
            if vtype in _SCALAR_CODES:
                return struct.pack("<" + _SCALAR_CODES[vtype], value)
            if vtype == GGUFValueType.STRING:
                return self._string(value)
            if vtype == GGUFValueType.ARRAY:
                assert elem is not None
                head = struct.pack("<I" + ("I" if self.version == 1 else "Q"), elem, len(value))
                if elem in _SCALAR_CODES:
                    code = _SCALAR_CODES[elem]
                    dtype = np.dtype("?" if code == "?" else "<" + code)
                    return head + np.asarray(value).astype(dtype).tobytes()
                if elem == GGUFValueType.ARRAY:
                    parts = []
                    for v in value:
                        sub = _infer_elem_type(v)
                        self._check_type(key, GGUFValueType.ARRAY, sub)
                        parts.append(self._value(key, GGUFValueType.ARRAY, v, sub))
                    return head + b"".join(parts)
                return head + b"".join(self._value(key, elem, v, None) for v in value)
        except (struct.error, TypeError, ValueError, OverflowError, AttributeError) as exc:
            raise WriterError(
                f"metadata {key!r}: cannot store {value!r:.80} as {vtype.name}: {exc}"
            ) from None
        raise WriterError(f"metadata {key!r}: unknown value type {vtype}")


def _pad(n: int, alignment: int) -> int:
    return n + (-n % alignment)


def float_tensor_bytes(name: str, data: np.ndarray, type_id: int) -> bytes:
    if type_id == GGMLType.F32:
        return np.ascontiguousarray(data, dtype="<f4").tobytes()
    if type_id == GGMLType.F16:
        return np.ascontiguousarray(data, dtype="<f2").tobytes()
    raise WriterError(
        f"tensor {name!r}: float data can only be written as F32 or F16, not "
        f"{type_name(type_id)}; pass the quantized blocks as uint8"
    )


def write_tensor_data(
    f: Any, t: PendingTensor, done: int, total: int, progress: Callable[[int, int], None] | None
) -> int:
    """Stream one tensor's bytes to ``f``, checking their count; returns the running byte total."""
    written = 0
    for chunk in iter_chunks(t.source):
        b = chunk_bytes(t, chunk)
        written += len(b)
        if written > t.nbytes:
            raise WriterError(
                f"tensor {t.name!r}: got more than the {t.nbytes} bytes its "
                f"{type_name(t.type)} shape {t.shape} needs"
            )
        f.write(b)
        done += len(b)
        if progress:
            progress(done, total)
    if written != t.nbytes:
        raise WriterError(
            f"tensor {t.name!r}: got {written} bytes, its {type_name(t.type)} "
            f"shape {t.shape} needs {t.nbytes}"
        )
    return done


def iter_chunks(source: TensorSource) -> Iterable[Chunk]:
    if isinstance(source, (bytes, bytearray, memoryview, np.ndarray)):
        return [source]
    if callable(source):
        return source()
    return source


def chunk_bytes(t: PendingTensor, chunk: Chunk) -> bytes | bytearray | memoryview:
    if isinstance(chunk, np.ndarray):
        if chunk.dtype != np.uint8:
            return float_tensor_bytes(t.name, chunk, t.type)
        return np.ascontiguousarray(chunk).data.cast("B")
    return chunk
