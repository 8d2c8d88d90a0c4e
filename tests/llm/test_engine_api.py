"""The engine's public API and CLI on a golden tiny model (random weights: nonsense text, real
mechanics)."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from agent.cli import main
from agent.errors import ContextLengthError, ModelFormatError
from tests.golden import model_path

GGUF = model_path("tiny-q4_0.gguf")
GGML = model_path("tiny.ggmlv3.q4_K_M.bin")


@pytest.fixture(scope="module")
def model():
    from agent.llm import load_model

    return load_model(GGUF, n_ctx=128)


def test_info_fields(model):
    info = model.info
    assert (
        info.format,
        info.n_vocab,
        info.n_embd,
        info.n_layer,
        info.n_head,
        info.n_head_kv,
        info.n_ff,
    ) == ("gguf-v3", 1024, 256, 2, 4, 4, 768)
    assert info.tensor_types["Q4_0"] > 0 and info.rope_freq_base == 10000.0


def test_ggml_file_gets_llama2_defaults_and_overrides():
    from agent.llm import load_model

    m = load_model(GGML, n_ctx=32, vocab_only=True)
    assert m.info.format == "ggjt-v3" and m.info.rms_norm_eps == 1e-5 and m.info.n_head_kv == 4
    m2 = load_model(
        GGML, n_ctx=32, vocab_only=True, n_gqa=2, rms_norm_eps=1e-6, rope_freq_scale=0.5
    )
    assert (m2.info.n_head_kv, m2.info.rms_norm_eps, m2.info.rope_freq_scale) == (2, 1e-6, 0.5)


def test_vocab_only_tokenizes_but_cannot_eval():
    from agent.llm import load_model

    m = load_model(GGML, vocab_only=True)
    assert m.tokenize("Hello")[0] == 1
    with pytest.raises(ValueError, match="vocab_only"):
        m.eval([1, 2])


def test_generation_is_reproducible_with_a_seed_and_honours_max_tokens(model):
    a = model.complete("Hello", max_tokens=12, temperature=0.9, seed=42)
    b = model.complete("Hello", max_tokens=12, temperature=0.9, seed=42)
    assert a == b
    assert model.last_stats.generated_tokens <= 12


def test_second_call_reuses_the_cached_prompt_prefix(model):
    model.reset()
    model.complete("The same long preamble, then one question", max_tokens=2, temperature=0)
    model.complete("The same long preamble, then another question", max_tokens=2, temperature=0)
    st = model.last_stats
    assert st.cached_tokens >= len(model.tokenize("The same long preamble, then")) - 1


def test_prefix_reuse_gives_the_same_logits_as_a_fresh_cache(model):
    ids = model.tokenize("one two three four")
    model.reset()
    fresh = model.eval(ids)[-1]
    model.reset()
    model.eval(model.tokenize("one two three five six"))
    reused = model.eval_prompt(ids)
    np.testing.assert_allclose(reused, fresh, atol=2e-3)


def test_long_prompts_are_evaluated_in_bounded_pieces(monkeypatch):
    """Tokens go through the layers N_BATCH at a time and attention in blocks of MAX_SCORES
    floats; the pieces must add up to the same logits as one pass."""
    from agent.llm import load_model, transformer

    # float activations: int8 rounding turns the blockings' last-bit differences into steps
    monkeypatch.setenv("AGENT_PREFILL", "float")
    model = load_model(GGUF, n_ctx=128)

    ids = [int(i) for i in np.random.default_rng(1).integers(3, model.info.n_vocab, 100)]
    model.reset()
    whole = model.eval(ids)
    monkeypatch.setattr(
        transformer, "N_BATCH", 80
    )  # 80 + 20 tokens: tiles + sgemm, then the fused matvec
    monkeypatch.setattr(transformer, "MAX_SCORES", 4 * 128)  # one query row at a time
    model.reset()
    pieces = model.eval(ids)
    np.testing.assert_allclose(pieces, whole, atol=2e-3)
    model.reset()
    np.testing.assert_allclose(model.eval_prompt(ids), whole[-1], atol=2e-3)
    assert model.eval_prompt(ids).shape == (model.info.n_vocab,)


def test_stop_strings_cut_the_output(model):
    text = model.complete("Hello", max_tokens=40, temperature=0)
    assert len(text) > 4
    stop = text[2:4]
    cut = model.complete("Hello", max_tokens=40, temperature=0, stop=[stop])
    assert cut == text[: text.find(stop)]


def test_prompt_longer_than_the_context_is_a_clear_error(model):
    with pytest.raises(ContextLengthError, match="context window"):
        model.complete("word " * 500, max_tokens=1)
    with pytest.raises(ContextLengthError):
        model.reset()
        model.eval([5] * 200)


def test_out_of_range_token_ids_are_rejected(model):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.eval([1, 99999])


def test_missing_file_is_a_model_format_error(tmp_path):
    from agent.llm import load_model

    with pytest.raises(ModelFormatError, match="cannot open"):
        load_model(tmp_path / "nope.gguf")


def test_cli_generate_streams_and_reports_speed(capsys):
    assert (
        main(["generate", "-m", str(GGUF), "-p", "Hello", "-n", "8", "--seed", "1", "-c", "64"])
        == 0
    )
    out, err = capsys.readouterr()
    assert out.startswith("Hello") and "tok/s" in err and "load" in err
    assert (
        " kernels, " in err or "reference matmul" in err
    )  # which matmul ran, and on how many threads


def test_cli_chat_keeps_history_and_resets(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hi there\nAnd again\n/reset\nFresh start\n"))
    assert main(["chat", "-m", str(GGML), "-n", "6", "--seed", "3", "-c", "256"]) == 0
    out, err = capsys.readouterr()
    assert out.count("ASSISTANT:") == 3 and "forgotten" in err


def test_prepare_readies_every_matrix_and_reports_progress():
    from agent.llm import load_model

    m = load_model(GGUF, n_ctx=32)
    mats = m.transformer.linears()
    assert len(mats) == 7 * m.info.n_layer + 1
    seen = []
    m.prepare(lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(mats), len(mats))
    assert all(
        getattr(lin, "_packed", True) is not None for lin in mats if getattr(lin, "packable", False)
    )
