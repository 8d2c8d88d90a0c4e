"""The output file: JSON Lines appended whole, one per question id, resumable after any stop.

Exactly-once rests on three rules:
- one writer per file: the driver holds an exclusive ``flock`` on it while the batch runs, so a
  second ``agent batch`` on the same output fails at once instead of interleaving lines;
- a record is one ``write`` of one complete line (then flushed to disk), so other readers see whole
  lines; if the process is killed inside that call, the tail without its newline is cut off when
  the file is next opened, and that question runs again;
- on opening, the ids already written are read back and skipped, and an id is never written twice.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.batch.errors import BatchError
from agent.batch.questions import id_key


class ResultWriter:
    """Appends records to ``path``; ``done`` holds the id keys already in it."""

    def __init__(self, path: str | Path, *, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self.done: set[str] = set()
        self.repaired_bytes = 0  # a half-written last line cut off on opening
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise BatchError(f"cannot open output {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise BatchError(
                f"output {self.path} is being written by another 'agent batch' (it holds the "
                "file's lock); wait for it to finish or choose another -o"
            ) from None
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def _load(self) -> None:
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, size, 0) if size else b""
        end = data.rfind(b"\n") + 1
        if end < len(data):  # the last write was cut short: drop it, its question runs again
            os.ftruncate(self._fd, end)
            self.repaired_bytes = len(data) - end
        for number, raw in enumerate(data[:end].splitlines(), 1):
            if not raw.strip():
                continue
            key = _record_key(raw)
            if key is None:
                raise BatchError(
                    f"{self.path} line {number} is not an 'agent batch' record (a JSON object "
                    "with an id); is -o the right file? Remove that line or choose another -o"
                )
            self.done.add(key)

    def write(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` as one line; an id already written is a programming error."""
        key = id_key(record["id"])
        if key in self.done:
            raise BatchError(f"id {record['id']!r} is already in {self.path}; not written twice")
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        view = memoryview(line)
        while view:  # one call in practice; a short write is finished, never left half
            written = os.write(self._fd, view)
            view = view[written:]
        if self.fsync:
            os.fsync(self._fd)
        self.done.add(key)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the lock
            self._fd = -1

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _record_key(raw: bytes) -> str | None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(obj, dict) or "id" not in obj:
        return None
    return id_key(obj["id"])


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every complete record of an output file, in file order (for tests and tools)."""
    out = []
    with Path(path).open("rb") as fh:
        for raw in fh:
            if raw.endswith(b"\n") and raw.strip():
                out.append(json.loads(raw))
    return out
