"""Open a model file of either container by its magic."""

from __future__ import annotations

from pathlib import Path

from agent.errors import ModelFormatError
from agent.llm.formats.modelfile import ModelFile


def open_model_file(path: str | Path) -> ModelFile:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelFormatError(f"cannot open model file {path}: {exc.strerror or exc}") from exc
    if magic == b"GGUF":
        from agent.llm.formats.gguf import read_gguf

        return read_gguf(path)
    if magic in (b"lmgg", b"fmgg", b"tjgg"):
        from agent.llm.formats.ggml import read_ggml

        return read_ggml(path)
    raise ModelFormatError(
        f"{path}: unknown file type (magic {magic!r}); expected a GGUF file or a GGML v3 (ggjt) "
        ".bin"
    )
