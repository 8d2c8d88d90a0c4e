"""atomic_write: the file appears whole, or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.llm.formats.atomic import atomic_write


def test_the_file_appears_when_the_block_ends(tmp_path: Path) -> None:
    target = tmp_path / "m.gguf"
    with atomic_write(target) as f:
        f.write(b"abc")
        assert not target.exists() and (tmp_path / "m.gguf.part").exists()
    assert target.read_bytes() == b"abc"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]


@pytest.mark.parametrize("error", [ValueError("bad tensor"), KeyboardInterrupt()])
def test_an_error_leaves_nothing_and_the_old_file_intact(tmp_path: Path, error: BaseException):
    target = tmp_path / "m.gguf"
    target.write_bytes(b"old")
    with pytest.raises(type(error)):
        with atomic_write(target) as f:
            f.write(b"half")
            raise error
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]


def test_a_missing_directory_is_an_oserror_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        with atomic_write(tmp_path / "no" / "m.gguf"):
            pass
    assert list(tmp_path.iterdir()) == []
