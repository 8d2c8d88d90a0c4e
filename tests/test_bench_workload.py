"""bench/workload.py reads the bundled cassette as it is stored now (format version 2): the bench
broke silently once when the format changed, since nothing ran it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests import golden

REPO = Path(__file__).resolve().parent.parent


def _workload_module():
    spec = importlib.util.spec_from_file_location("workload", REPO / "bench" / "workload.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_workload_replays_the_bundled_cassettes_generations_plan_first():
    workload = _workload_module()
    vocab = golden.vocab_dir() / "ggml-vocab-llama-spm.gguf"
    work = workload.token_work(str(vocab), workload.DEFAULT_CASSETTE)
    assert len(work) == 3
    assert all(g["prompt"][0] == 1 and g["output"] for g in work)  # BOS, then the prompt
    assert len(work[0]["output"]) == max(len(g["output"]) for g in work)  # the plan: the longest
    assert sum(len(g["prompt"]) for g in work) > 1500
    short = workload.token_work(str(vocab), workload.DEFAULT_CASSETTE, max_output=4)
    assert [len(g["output"]) for g in short] == [4, 4, 4]
