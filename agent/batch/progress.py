"""The batch's progress line on stderr: counts, rate and ETA.

On a terminal the line is redrawn in place; otherwise (a log file, CI) one line is printed per
finished question, so the log says what happened when.
"""

from __future__ import annotations

import time
from typing import Any, TextIO


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class ProgressBar:
    def __init__(self, out: TextIO, total: int, *, skipped: int = 0, width: int = 24):
        self.out = out
        self.total = total  # questions to run in this invocation
        self.skipped = skipped  # already answered in the output
        self.width = width
        self.ok = 0
        self.errors = 0
        self.t0 = time.monotonic()
        self.tty = bool(getattr(out, "isatty", lambda: False)())

    @property
    def done(self) -> int:
        return self.ok + self.errors

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        frac = self.done / self.total if self.total else 1.0
        filled = int(frac * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        rate = self.done / elapsed * 60 if elapsed > 0 and self.done else 0.0
        if self.done and self.done < self.total:
            eta = "ETA " + _duration(elapsed / self.done * (self.total - self.done))
        elif self.done >= self.total:
            eta = "took " + _duration(elapsed)
        else:
            eta = "ETA ?"
        extra = f", {self.skipped} done before" if self.skipped else ""
        return (
            f"[{bar}] {self.done}/{self.total} ({self.ok} ok, {self.errors} error{extra}) "
            f"{rate:.1f} q/min {eta}"
        )

    def update(self, record: dict[str, Any]) -> None:
        if record.get("status") == "ok":
            self.ok += 1
        else:
            self.errors += 1
        if self.tty:
            print("\r" + self.line(), end="", file=self.out, flush=True)
        else:
            print(f"{self.line()}  id={record.get('id')!r} {record.get('status')}", file=self.out)

    def message(self, text: str) -> None:
        print(("\n" if self.tty and self.done else "") + text, file=self.out, flush=True)

    def finish(self) -> None:
        if self.tty and self.done:
            print(file=self.out, flush=True)
