"""Test-wide settings."""

import faulthandler
import os
import sys
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.ray_local import local_cluster

# CLI commands that load a model keep prompts in the persistent prompt cache: the tests (and the
# subprocesses they start) write theirs to a folder of this run, never to the user's cache.
os.environ.setdefault("AGENT_PROMPT_CACHE_DIR", tempfile.mkdtemp(prefix="agent-test-prompts-"))

# In CI, property tests explore a fixed sequence of examples: a run is reproducible, and a rare
# counterexample shows up in a developer's exploratory (random) run rather than failing a merge.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The address of the run's one local Ray cluster (tests/ray_local.py says why only one)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
    with local_cluster(ray) as address:
        yield address


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """pytest stops its faulthandler here; a crash after the summary (threads, native libraries
    at interpreter exit) still prints every thread's stack instead of a bare exit code 139."""
    faulthandler.enable(file=sys.__stderr__, all_threads=True)
