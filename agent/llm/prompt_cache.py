"""A persistent prompt cache: the KV state of evaluated prompts, on disk, reused by later processes.

Every ``agent ask`` starts its prompts the same way (the Airoboros preamble, the tool list, the
planner's examples). ``LlamaModel.eval_prompt`` asks this cache for the longest stored prefix of a
new prompt, copies those positions' keys and values into its KV cache, and evaluates only the rest;
after evaluating a prompt it stores its KV state for the next process.

An entry is one file: a header (magic, version, the model's identity, shapes), the token ids, then
the keys and values position by position, in blocks of ``BLOCK`` positions, each with its own
CRC-32. A prefix is restored by reading and checking only its blocks. A torn or corrupt file (a
crash mid-write, a bad disk, a file from another model) fails its checks and is deleted: the
prompt is then simply recomputed, never restored wrong. Entries are written to a temporary name
and renamed into place, so readers never see half a file. The directory is capped in bytes;
least recently used entries (by modification time, touched on every hit) go first.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"AGKV"
VERSION = 1
BLOCK = 64  # positions per checksummed block
# Store a prompt only when it cost at least this many newly evaluated tokens: a short tail is
# cheaper to recompute than to write.
MIN_NEW_TOKENS = 32
DEFAULT_MAX_BYTES = 8 << 30
_HEADER = struct.Struct(
    "<4sI32sIIIII"
)  # magic, version, model id, n_tokens, layers, kv, hd, blocks


def default_dir() -> Path:
    """``$AGENT_PROMPT_CACHE_DIR``, else ``$AGENT_CACHE_DIR/prompts``, else
    ``$XDG_CACHE_HOME/agent/prompts``, else under ~/.cache."""
    if os.environ.get("AGENT_PROMPT_CACHE_DIR"):
        return Path(os.environ["AGENT_PROMPT_CACHE_DIR"])
    if os.environ.get("AGENT_CACHE_DIR"):
        return Path(os.environ["AGENT_CACHE_DIR"]) / "prompts"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "agent" / "prompts"


def model_identity(model: Any) -> bytes:
    """32 bytes naming the KV state a model computes: its file (path, size, mtime and first MB),
    the settings that change keys and values (RoPE, eps, heads) and the cache layout."""
    path = Path(model.file.path)
    st = path.stat()
    h = hashlib.sha256()
    info = model.info
    parts = (
        str(path.resolve()),
        st.st_size,
        st.st_mtime_ns,
        info.n_layer,
        info.n_head,
        info.n_head_kv,
        info.head_dim,
        info.rope_freq_base,
        info.rope_freq_scale,
        info.rms_norm_eps,
        VERSION,
    )
    h.update(repr(parts).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
    return h.digest()


@dataclass
class _Entry:
    path: Path
    tokens: np.ndarray  # int32
    payload_at: int  # file offset of the first block
    crcs: np.ndarray  # uint32, one per block


class PromptCache:
    def __init__(self, directory: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES):
        self.dir = Path(directory) if directory is not None else default_dir()
        self.max_bytes = int(max_bytes)
        self.min_new = MIN_NEW_TOKENS
        self.hits = self.misses = self.rejected = 0  # restored / nothing usable / corrupt files
        self._identity: dict[int, bytes] = {}

    def _model_id(self, model: Any) -> bytes:
        if id(model) not in self._identity:
            self._identity[id(model)] = model_identity(model)
        return self._identity[id(model)]

    # --- reading ------------------------------------------------------------------------------
    def _read_entry(
        self, path: Path, model_id: bytes, shape: tuple[int, int, int]
    ) -> _Entry | None:
        """The entry's header and tokens, or None (the file deleted if it does not check out)."""
        try:
            with open(path, "rb") as f:
                head = f.read(_HEADER.size)
                if len(head) < _HEADER.size:
                    raise ValueError("short header")
                magic, version, mid, n, layers, kv, hd, blocks = _HEADER.unpack(head)
                if magic != MAGIC or version != VERSION:
                    raise ValueError("not a prompt-cache entry of this version")
                if mid != model_id or (layers, kv, hd) != shape:
                    return None  # another model's entry: not ours to judge
                if blocks != -(-n // BLOCK):
                    raise ValueError("block count does not match the token count")
                meta = f.read(4 * n + 4 * blocks + 4)
                if len(meta) != 4 * n + 4 * blocks + 4:
                    raise ValueError("short token list")
                tokens = np.frombuffer(meta, "<i4", n)
                crcs = np.frombuffer(meta, "<u4", blocks, 4 * n)
                (meta_crc,) = struct.unpack_from("<I", meta, 4 * n + 4 * blocks)
                if zlib.crc32(head + meta[: 4 * n + 4 * blocks]) != meta_crc:
                    raise ValueError("header checksum mismatch")
                size = os.fstat(f.fileno()).st_size
            row = 2 * layers * kv * hd * 2
            if size != _HEADER.size + len(meta) + n * row:
                raise ValueError("truncated payload")
            return _Entry(path, tokens, _HEADER.size + len(meta), crcs)
        except (OSError, ValueError, struct.error):
            self._reject(path)
            return None

    def _reject(self, path: Path) -> None:
        self.rejected += 1
        try:
            path.unlink()
        except OSError:
            pass

    def restore(self, model: Any, ids: list[int], have: int) -> int:
        """Copy the longest stored prefix of ``ids`` longer than ``have`` positions (those already
        in the model's KV cache) into it; return the number of positions now valid (>= have)."""
        tr = model.transformer
        shape = (tr.info.n_layer, tr.info.n_head_kv, tr.info.head_dim)
        try:
            files = sorted(self.dir.glob("*.kv"))
        except OSError:
            return have
        if not files:
            self.misses += 1
            return have
        model_id = self._model_id(model)
        want = np.asarray(ids, np.int32)
        best, best_n = None, have
        for path in files:
            e = self._read_entry(path, model_id, shape)
            if e is None:
                continue
            m = min(len(e.tokens), len(want))
            diff = np.flatnonzero(e.tokens[:m] != want[:m])
            common = int(diff[0]) if diff.size else m
            if common > best_n:
                best, best_n = e, common
        if best is None:
            self.misses += 1
            return have
        n = self._load(best, tr, best_n)
        if n <= have:
            return have
        self.hits += 1
        try:
            os.utime(best.path)  # least recently used goes first
        except OSError:
            pass
        return n

    def _load(self, e: _Entry, tr: Any, n: int) -> int:
        """Read and check the blocks holding positions 0..n; copy them into the KV cache. A bad
        block stops the copy there (and condemns the file): fewer positions, never wrong ones."""
        L, kv, hd = tr.info.n_layer, tr.info.n_head_kv, tr.info.head_dim
        row = 2 * L * kv * hd * 2
        done = 0
        try:
            with open(e.path, "rb") as f:
                f.seek(e.payload_at)
                for b in range(-(-n // BLOCK)):
                    p0, p1 = b * BLOCK, min(len(e.tokens), (b + 1) * BLOCK)
                    data = f.read((p1 - p0) * row)
                    if len(data) != (p1 - p0) * row or zlib.crc32(data) != int(e.crcs[b]):
                        raise ValueError(f"block {b} checksum mismatch")
                    kvs = np.frombuffer(data, np.float16).reshape(p1 - p0, L, 2, kv, hd)
                    take = min(p1, n) - p0
                    tr.k_cache[:, p0 : p0 + take] = kvs[:take, :, 0].transpose(1, 0, 2, 3)
                    tr.v_cache[:, p0 : p0 + take] = kvs[:take, :, 1].transpose(1, 0, 2, 3)
                    done = p0 + take
        except (OSError, ValueError):
            self._reject(e.path)
        return done

    # --- writing ------------------------------------------------------------------------------
    def save(self, model: Any, ids: list[int]) -> Path | None:
        """Store the KV state of ``ids`` (positions 0..len(ids), already in the model's cache)."""
        tr = model.transformer
        L, kv, hd = tr.info.n_layer, tr.info.n_head_kv, tr.info.head_dim
        n = len(ids)
        if n == 0:
            return None
        model_id = self._model_id(model)
        tokens = np.asarray(ids, "<i4")
        name = hashlib.sha256(model_id + tokens.tobytes()).hexdigest()[:32] + ".kv"
        final = self.dir / name
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if final.exists():
                os.utime(final)
                return final
            blocks = -(-n // BLOCK)
            tmp = self.dir / f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
            head = _HEADER.pack(MAGIC, VERSION, model_id, n, L, kv, hd, blocks)
            crcs = np.zeros(blocks, "<u4")
            try:
                with open(tmp, "wb") as f:
                    meta_at = _HEADER.size
                    f.write(head + tokens.tobytes() + crcs.tobytes() + b"\0\0\0\0")
                    for b in range(blocks):  # a block at a time: no copy of the whole cache
                        p0, p1 = b * BLOCK, min(n, (b + 1) * BLOCK)
                        blk = np.empty((p1 - p0, L, 2, kv, hd), np.float16)
                        blk[:, :, 0] = tr.k_cache[:, p0:p1].transpose(1, 0, 2, 3)
                        blk[:, :, 1] = tr.v_cache[:, p0:p1].transpose(1, 0, 2, 3)
                        data = blk.tobytes()
                        crcs[b] = zlib.crc32(data)
                        f.write(data)
                    meta = tokens.tobytes() + crcs.tobytes()
                    f.seek(meta_at)
                    f.write(meta + struct.pack("<I", zlib.crc32(head + meta)))
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
        except OSError:
            return None  # a cache: a full or read-only disk only costs the speed-up
        self.evict()
        return final

    def evict(self) -> None:
        """Delete least recently used entries until the directory holds at most ``max_bytes``."""
        try:
            entries = [(p.stat().st_mtime_ns, p.stat().st_size, p) for p in self.dir.glob("*.kv")]
        except OSError:
            return
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            try:
                p.unlink()
                total -= size
            except OSError:
                pass
