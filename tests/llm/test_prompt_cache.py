"""The persistent prompt cache: KV state saved by one model object (process), reused by another."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.llm import load_model
from agent.llm.prompt_cache import BLOCK, PromptCache
from tests.golden import model_path

MODEL = model_path("tiny-q4_0.gguf")
RNG = np.random.default_rng(0)
PROMPT = [1] + [int(i) for i in RNG.integers(3, 300, size=150)]


def fresh(cache_dir: Path | None, **kw) -> object:
    """A new model object with its own KV cache, as a new process would have."""
    m = load_model(MODEL, n_ctx=512)
    m.prompt_cache = PromptCache(cache_dir, **kw) if cache_dir is not None else None
    return m


def scratch(split: int) -> np.ndarray:
    """The last logits of PROMPT + a tail computed without any cache, the first ``split``
    positions in one call (as a restored prefix would have been computed), the rest in another:
    prefill of more than a few tokens multiplies int8 activations, decode float ones."""
    m = fresh(None)
    if split:
        m.eval(PROMPT[:split])
    return m.eval_prompt(PROMPT + [7, 8, 9])


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return scratch(len(PROMPT))


def test_a_later_process_reuses_the_stored_prefix(tmp_path: Path, reference: np.ndarray) -> None:
    first = fresh(tmp_path)
    first.eval_prompt(PROMPT)
    assert len(list(tmp_path.glob("*.kv"))) == 1
    second = fresh(tmp_path)
    logits = second.eval_prompt(PROMPT + [7, 8, 9])
    assert second.last_stats.cached_tokens == len(PROMPT)
    assert second.prompt_cache.hits == 1
    np.testing.assert_allclose(logits, reference, atol=2e-3)


def test_the_same_prompt_again_restores_all_but_the_last_token(tmp_path: Path) -> None:
    fresh(tmp_path).eval_prompt(PROMPT)
    m = fresh(tmp_path)
    m.eval_prompt(PROMPT)
    assert m.last_stats.cached_tokens == len(PROMPT) - 1  # the last one gives the logits


def test_short_new_work_is_not_written(tmp_path: Path) -> None:
    fresh(tmp_path).eval_prompt(PROMPT[:20])
    assert not list(tmp_path.glob("*.kv"))


@pytest.mark.parametrize("damage", ["flip_block_1", "truncate", "garbage", "header"])
def test_damaged_entries_are_detected_and_recomputed(tmp_path: Path, damage: str) -> None:
    fresh(tmp_path).eval_prompt(PROMPT)
    (entry,) = tmp_path.glob("*.kv")
    data = bytearray(entry.read_bytes())
    if damage == "flip_block_1":  # a byte in the second block of positions
        row = (len(data) - 4 * len(PROMPT) - 4 * 3 - 4 - 60) // len(PROMPT)
        data[-(len(PROMPT) - BLOCK - 1) * row] ^= 0x40
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(os.urandom(len(data)))
    else:
        data[10] ^= 1  # inside the model identity
    entry.write_bytes(bytes(data))
    m = fresh(tmp_path)
    logits = m.eval_prompt(PROMPT + [7, 8, 9])
    if damage == "flip_block_1":  # the good first block is kept, the rest recomputed
        assert m.last_stats.cached_tokens == BLOCK and m.prompt_cache.rejected == 1
    elif damage == "header":  # reads as another model's entry: not used
        assert m.last_stats.cached_tokens == 0
    else:
        assert m.last_stats.cached_tokens == 0 and m.prompt_cache.rejected == 1
    want = scratch(m.last_stats.cached_tokens)
    np.testing.assert_allclose(logits, want, atol=2e-3)  # never wrong logits
    assert entry.exists() == (damage == "header")  # a damaged entry is deleted


def test_another_model_does_not_use_the_entry(tmp_path: Path) -> None:
    fresh(tmp_path).eval_prompt(PROMPT)
    other = load_model(model_path("tiny-q8_0.gguf"), n_ctx=512)
    other.prompt_cache = PromptCache(tmp_path)
    other.eval_prompt(PROMPT)
    assert other.last_stats.cached_tokens == 0


def test_least_recently_used_entries_are_evicted_over_the_cap(tmp_path: Path) -> None:
    m = fresh(tmp_path)
    m.eval_prompt(PROMPT)
    (a,) = tmp_path.glob("*.kv")
    size = a.stat().st_size
    m.prompt_cache.max_bytes = int(2.5 * size)
    m.eval_prompt([1, 5] + PROMPT[2:])
    os.utime(a, ns=(1, 1))  # a is now the oldest ...
    m2 = fresh(tmp_path, max_bytes=int(2.5 * size))
    m2.eval_prompt(PROMPT + [3])  # ... until this hit touches it
    m2.eval_prompt([1, 6] + PROMPT[2:])  # a third entry: the least recently used one goes
    names = {p.name for p in tmp_path.glob("*.kv")}
    assert a.name in names and len(names) == 2


def test_an_unwritable_directory_only_costs_the_speed_up(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    m = fresh(blocker / "prompts")
    m.eval_prompt(PROMPT)  # no error
    assert m.prompt_cache.hits == 0


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(blob=st.binary(max_size=400))
def test_fuzz_random_files_are_never_restored(tmp_path_factory, blob: bytes) -> None:
    d = tmp_path_factory.mktemp("fuzz")
    (d / "x.kv").write_bytes(b"AGKV\x01\x00\x00\x00" + blob)
    m = load_model(MODEL, n_ctx=512, vocab_only=False)
    cache = PromptCache(d)
    assert cache.restore(m, PROMPT, 0) == 0


def test_cli_uses_the_cache_by_default_and_can_move_or_skip_it(tmp_path: Path, monkeypatch) -> None:
    from agent.cli import main

    prompt = "USER: " + " ".join(f"word{i}" for i in range(60)) + " ASSISTANT:"
    monkeypatch.delenv("AGENT_PROMPT_CACHE_DIR", raising=False)  # the default: under the cache dir
    monkeypatch.setenv("AGENT_CACHE_DIR", str(tmp_path / "home"))
    args = ["generate", "-m", str(MODEL), "-n", "2", "--temp", "0", "-q", "-p", prompt]
    assert main(args) == 0
    assert len(list((tmp_path / "home" / "prompts").glob("*.kv"))) == 1
    assert main([*args[:1], "--prompt-cache", str(tmp_path / "moved"), *args[1:]]) == 0
    assert len(list((tmp_path / "moved").glob("*.kv"))) == 1
    assert (
        main([*args[:1], "--no-prompt-cache", "--prompt-cache", str(tmp_path / "x"), *args[1:]])
        == 0
    )
    assert not (tmp_path / "x").exists()
