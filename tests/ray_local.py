"""One local Ray cluster for the test run: 2 CPUs, no dashboard, workers that import ``tests``.

Started once per process (the ``ray_cluster`` fixture of tests/conftest.py), never twice: a second
``ray.init`` after ``ray.shutdown`` in one process leaves the first session's core-worker threads
pointing at freed state, a known cause of crashes at exit (ray-project/ray#31145)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def local_cluster(ray) -> Iterator[str]:
    """Start a cluster (its workers see the repository on PYTHONPATH, as an installed package
    would be seen on a real node); yields its address; shuts it down."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), old) if p)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
