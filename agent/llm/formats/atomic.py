"""Writing a file all at once or not at all: a model file is never left half-written."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Write to ``path + ".part"``, renamed to ``path`` when the block ends without an error.

    On any error (KeyboardInterrupt too) the partial file is removed and ``path``, if it existed,
    is left as it was.
    """
    final = Path(path)
    tmp = final.with_name(final.name + ".part")
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
