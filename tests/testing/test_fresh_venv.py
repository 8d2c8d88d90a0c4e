"""A fresh virtualenv with only the package (and pytest) installed lists the plugin's option."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_pytest_help_lists_the_option_after_a_plain_install(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(REPO), "pytest"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    out = subprocess.run(
        [str(python), "-m", "pytest", "--help"],
        cwd=tmp_path,  # outside the repository: only the installed package is seen
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "--agent-record-mode={none,once,new_episodes,all}" in out.stdout
    markers = subprocess.run(
        [str(python), "-m", "pytest", "--markers"], cwd=tmp_path, capture_output=True, text=True
    )
    assert "@pytest.mark.agent_cassette(path=None, record_mode=None" in markers.stdout
