"""Test-wide settings."""

import os
import tempfile

from hypothesis import settings

# CLI commands that load a model keep prompts in the persistent prompt cache: the tests (and the
# subprocesses they start) write theirs to a folder of this run, never to the user's cache.
os.environ.setdefault("AGENT_PROMPT_CACHE_DIR", tempfile.mkdtemp(prefix="agent-test-prompts-"))

# In CI, property tests explore a fixed sequence of examples: a run is reproducible, and a rare
# counterexample shows up in a developer's exploratory (random) run rather than failing a merge.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
