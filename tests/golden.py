"""Where the golden llama.cpp reference files are.

A subset is committed in tests/data/golden so a fresh clone tests the engine; the full set in
../shared/golden is used as well when it is present (it is, in CI and on developers' machines).
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUNDLED = REPO / "tests" / "data" / "golden"
SHARED = REPO.parent / "shared" / "golden"


def _dirs() -> list[Path]:
    return [d for d in (SHARED, BUNDLED) if (d / "models").is_dir()]


def model_paths() -> list[Path]:
    """Every golden model file, each name once (the shared copy preferred)."""
    seen: dict[str, Path] = {}
    for d in _dirs():
        for p in sorted((d / "models").iterdir()):
            seen.setdefault(p.name, p)
    return [seen[k] for k in sorted(seen)]


def expected_path(model: Path) -> Path:
    return model.parent.parent / "expected" / (model.name + ".npz")


def vocab_dir() -> Path:
    for d in _dirs():
        if (d / "vocab").is_dir():
            return d / "vocab"
    return BUNDLED / "vocab"


def model_path(name: str) -> Path:
    for p in model_paths():
        if p.name == name:
            return p
    raise FileNotFoundError(name)
