"""Test-wide settings."""

import os

from hypothesis import settings

# In CI, property tests explore a fixed sequence of examples: a run is reproducible, and a rare
# counterexample shows up in a developer's exploratory (random) run rather than failing a merge.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
