"""GGUF v1-v3 reader (little-endian), memory-mapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import ModelFormatError
from agent.llm.formats import gguf_keys as K
from agent.llm.formats.hparam_checks import check_llama_hparams
from agent.llm.formats.modelfile import (
    TOKEN_NORMAL,
    ByteReader,
    ModelFile,
    TensorInfo,
    Vocab,
    check_llama_shapes,
    check_metadata_types,
    map_file,
    tensor_nbytes,
    tensor_view,
)

GGUF_MAGIC = b"GGUF"

# value type id -> (struct code, name); 8 STRING and 9 ARRAY are handled apart.
SCALAR_TYPES: dict[int, tuple[str, str]] = {
    0: ("B", "UINT8"),
    1: ("b", "INT8"),
    2: ("H", "UINT16"),
    3: ("h", "INT16"),
    4: ("I", "UINT32"),
    5: ("i", "INT32"),
    6: ("f", "FLOAT32"),
    7: ("?", "BOOL"),
    10: ("Q", "UINT64"),
    11: ("q", "INT64"),
    12: ("d", "FLOAT64"),
}
STRING, ARRAY = 8, 9
MAX_STRING = 1 << 30  # sanity bound: a longer string means a corrupt length field
MAX_NESTING = (
    8  # arrays of arrays deeper than this mean a corrupt file (and would exhaust the stack)
)


class _GGUFReader(ByteReader):
    def __init__(self, path: Path, buf: np.ndarray, version: int):
        super().__init__(path, buf, pos=8)
        self.version = version

    def count(self, what: str) -> int:  # v1 used 32-bit counts and lengths
        return self.u32(what) if self.version == 1 else self.u64(what)

    def string(self, what: str) -> str:
        n = self.count(f"length of {what}")
        if n > MAX_STRING:
            raise self.fail(f"{what} claims a length of {n} bytes", "the file is corrupt")
        data = self.raw(n, what)
        return data.decode("utf-8", errors="replace")

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype in SCALAR_TYPES:
            return self.unpack(SCALAR_TYPES[vtype][0], what)[0]
        if vtype == STRING:
            return self.string(what)
        if vtype == ARRAY:
            if depth > MAX_NESTING:
                raise self.fail(
                    f"{what} nests arrays more than {MAX_NESTING} deep", "the file is corrupt"
                )
            etype = self.u32(f"element type of {what}")
            n = self.count(f"length of {what}")
            if etype in SCALAR_TYPES and etype != 7:
                code = SCALAR_TYPES[etype][0]
                dtype = np.dtype("<" + code)
                self.need(n * dtype.itemsize, what)
                arr = np.frombuffer(self.buf, dtype=dtype, count=n, offset=self.pos).copy()
                self.pos += n * dtype.itemsize
                return arr
            if n > self.size:  # each element takes at least one byte
                raise self.fail(f"{what} claims {n} elements", "the file is corrupt")
            return [self.value(etype, f"{what}[{i}]", depth + 1) for i in range(n)]
        raise self.fail(
            f"unknown metadata value type {vtype} in {what}",
            "the file is corrupt or from a newer GGUF version",
        )


def read_gguf(path: str | Path) -> ModelFile:
    path = Path(path)
    mm, buf = map_file(path)
    if len(buf) < 8 or bytes(buf[:4]) != GGUF_MAGIC:
        raise ModelFormatError(f"{path}: not a GGUF file (magic {bytes(buf[:4])!r})")
    version = int(buf[4:8].view("<u4")[0])
    if version not in (1, 2, 3):
        hint = (
            "big-endian GGUF files are not supported"
            if version >= 1 << 16
            else "this engine reads GGUF v1-v3"
        )
        raise ModelFormatError(f"{path}: unsupported GGUF version {version}; {hint}")
    r = _GGUFReader(path, buf, version)
    n_tensors = r.count("tensor count")
    n_kv = r.count("metadata count")
    if n_tensors > r.size or n_kv > r.size:
        raise r.fail(
            f"implausible counts ({n_tensors} tensors, {n_kv} metadata keys)", "the file is corrupt"
        )
    metadata: dict[str, Any] = {}
    for i in range(n_kv):
        key = r.string(f"metadata key #{i}")
        vtype = r.u32(f"value type of {key!r}")
        metadata[key] = r.value(vtype, f"metadata {key!r}")
    check_metadata_types(path, metadata)
    if metadata.get(K.GENERAL_ARCHITECTURE, "llama") == "llama":  # before any per-tensor work
        tokens = metadata.get(K.TOKENIZER_GGML_TOKENS)
        n_vocab = len(tokens) if isinstance(tokens, list) else None
        check_llama_hparams(path, metadata, n_tensors=n_tensors, n_vocab=n_vocab)

    infos = []
    seen: set[str] = set()
    for i in range(n_tensors):
        name = r.string(f"name of tensor #{i}")
        n_dims = r.u32(f"dimension count of tensor {name!r}")
        if not 1 <= n_dims <= 4:
            raise r.fail(
                f"tensor {name!r} has {n_dims} dimensions (expected 1-4)", "the file is corrupt"
            )
        ne = [r.count(f"shape of tensor {name!r}") for _ in range(n_dims)]
        ttype = r.u32(f"type of tensor {name!r}")
        offset = r.u64(f"data offset of tensor {name!r}")
        if name in seen:
            raise r.fail(f"tensor {name!r} appears twice", "the file is corrupt")
        seen.add(name)
        infos.append((name, ttype, tuple(reversed(ne)), offset))

    alignment = int(metadata.get(K.GENERAL_ALIGNMENT, 32))
    if alignment <= 0 or alignment & (alignment - 1):
        raise ModelFormatError(
            f"{path}: general.alignment is {alignment}, but it must be a power of two "
            "(as llama.cpp requires); the file is corrupt"
        )
    r.align(alignment)
    data_start = r.pos
    for name, _, _, offset in infos:
        if offset % alignment:
            raise ModelFormatError(
                f"{path}: tensor {name!r} data offset {offset} is not aligned to {alignment}"
            )
    check_data_size(path, infos, data_start, r.size)
    tensors: dict[str, TensorInfo] = {}
    for name, ttype, shape, offset in infos:
        tensors[name] = tensor_view(r, name, ttype, shape, data_start + offset)
    check_no_overlap(path, tensors)
    mf = ModelFile(
        path, f"gguf-v{version}", metadata, tensors, gguf_vocab(path, metadata), len(buf), mm
    )
    check_llama_shapes(mf)
    return mf


def check_data_size(
    path: Path, infos: list[tuple[str, int, tuple[int, ...], int]], data_start: int, size: int
) -> None:
    """A file shorter than its tensor table says is reported as truncated, with both sizes."""
    end, cut = data_start, None
    for name, ttype, shape, offset in infos:
        nbytes = tensor_nbytes(ttype, shape)  # None: tensor_view names what is wrong
        if nbytes is None:
            continue
        start = data_start + offset
        end = max(end, start + nbytes)
        if start + nbytes > size and (cut is None or start < cut[1]):
            cut = (name, start)
    if cut is not None:
        raise ModelFormatError(
            f"{path}: the file is truncated: it is {size} bytes, but its tensor data runs to "
            f"offset {end} ({end - size} bytes missing); the first cut tensor is {cut[0]!r} at "
            f"offset {cut[1]} (or a tensor's shape or offset is corrupt); download it again"
        )


def check_no_overlap(path: Path, tensors: dict[str, TensorInfo]) -> None:
    """Tensor data regions must not overlap (a wrong shape or offset makes two tensors share
    bytes)."""
    spans = sorted((t.offset, t.offset + t.nbytes, t.name) for t in tensors.values())
    for (_, end, a), (start, _, b) in zip(spans, spans[1:], strict=False):
        if start < end:
            raise ModelFormatError(
                f"{path}: the data of tensor {a!r} (ending at offset {end}) overlaps tensor "
                f"{b!r} (starting at {start}); a shape or offset is wrong, the file is corrupt"
            )


def gguf_vocab(path: Path, md: dict[str, Any]) -> Vocab:
    tokens = md.get(K.TOKENIZER_GGML_TOKENS)
    if not isinstance(tokens, list) or not tokens:
        raise ModelFormatError(
            f"{path}: no tokenizer.ggml.tokens array; the file has no vocabulary"
        )
    if not all(isinstance(t, str) for t in tokens):
        raise ModelFormatError(
            f"{path}: tokenizer.ggml.tokens must be an array of strings; the file is corrupt"
        )
    for key, kinds in ((K.TOKENIZER_GGML_SCORES, "fiu"), (K.TOKENIZER_GGML_TOKEN_TYPE, "iu")):
        if key in md and not (isinstance(md[key], np.ndarray) and md[key].dtype.kind in kinds):
            raise ModelFormatError(f"{path}: {key} must be a numeric array; the file is corrupt")
    model = md.get(K.TOKENIZER_GGML_MODEL, "llama")
    if model != "llama":
        raise ModelFormatError(
            f"{path}: tokenizer model {model!r} is not supported; this engine runs Llama "
            "(SentencePiece) models"
        )
    n = len(tokens)
    scores = np.asarray(md.get(K.TOKENIZER_GGML_SCORES, np.zeros(n)), dtype=np.float32)
    types = np.asarray(
        md.get(K.TOKENIZER_GGML_TOKEN_TYPE, np.full(n, TOKEN_NORMAL)), dtype=np.int32
    )
    if len(scores) != n or len(types) != n:
        raise ModelFormatError(
            f"{path}: vocabulary arrays disagree: {n} tokens, {len(scores)} scores, {len(types)} "
            "types"
        )
    for key in (
        K.TOKENIZER_GGML_BOS_TOKEN_ID,
        K.TOKENIZER_GGML_EOS_TOKEN_ID,
        K.TOKENIZER_GGML_UNKNOWN_TOKEN_ID,
    ):
        tid = md.get(key)
        if tid is not None and not 0 <= int(tid) < n:
            raise ModelFormatError(f"{path}: {key} {tid} is outside the vocab of {n} tokens")
    return Vocab(
        tokens=list(tokens),
        scores=scores,
        types=types,
        bos_id=int(md.get(K.TOKENIZER_GGML_BOS_TOKEN_ID, 1)),
        eos_id=int(md.get(K.TOKENIZER_GGML_EOS_TOKEN_ID, 2)),
        unk_id=int(md.get(K.TOKENIZER_GGML_UNKNOWN_TOKEN_ID, 0)),
        add_bos=bool(md.get(K.TOKENIZER_GGML_ADD_BOS_TOKEN, True)),
        add_space_prefix=bool(md.get(K.TOKENIZER_GGML_ADD_SPACE_PREFIX, True)),
    )
