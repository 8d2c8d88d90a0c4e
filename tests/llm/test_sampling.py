import numpy as np
import pytest

from agent.llm.model import StopScanner
from agent.llm.sampling import Sampler, SamplingParams


def test_greedy_ignores_seed_and_picks_argmax():
    logits = np.array([0.1, 3.0, 2.9, -1.0], np.float32)
    assert Sampler(SamplingParams(temperature=0, seed=1)).sample(logits) == 1


def test_repeat_penalty_uses_llama_cpp_meaning():
    s = Sampler(SamplingParams(repeat_penalty=2.0))
    out = s.penalize(np.array([4.0, -1.0, 3.0], np.float32), recent=[0, 1])
    np.testing.assert_allclose(out, [2.0, -2.0, 3.0])  # positive divided, negative multiplied


def test_repeat_penalty_only_looks_at_last_n_tokens():
    s = Sampler(SamplingParams(repeat_penalty=2.0, repeat_last_n=2))
    out = s.penalize(np.array([4.0, 4.0, 4.0], np.float32), recent=[0, 1, 2])
    np.testing.assert_allclose(out, [4.0, 2.0, 2.0])


def test_penalty_can_change_the_greedy_choice():
    logits = np.array([2.0, 1.5], np.float32)
    assert (
        Sampler(SamplingParams(temperature=0, repeat_penalty=1.5)).sample(logits, recent=[0]) == 1
    )


def test_seed_reproduces_and_top_k_one_is_greedy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=500).astype(np.float32)

    def draws(seed):
        return [
            Sampler(SamplingParams(temperature=1.0, seed=seed)).sample(logits) for _ in range(1)
        ]

    a = Sampler(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, seed=7))
    b = Sampler(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, seed=7))
    assert [a.sample(logits) for _ in range(20)] == [b.sample(logits) for _ in range(20)]
    assert Sampler(SamplingParams(temperature=5.0, top_k=1, seed=3)).sample(logits) == int(
        np.argmax(logits)
    )
    assert draws(1) is not None


def test_top_p_keeps_only_the_nucleus():
    logits = np.log(np.array([0.6, 0.3, 0.05, 0.05], np.float32))
    s = Sampler(SamplingParams(temperature=1.0, top_k=0, top_p=0.8, seed=0))
    picks = {s.sample(logits) for _ in range(300)}
    assert picks == {0, 1}


def test_forbidden_tokens_are_never_sampled_and_all_forbidden_is_an_error():
    logits = np.array([5.0, -np.inf, 1.0], np.float32)
    s = Sampler(SamplingParams(temperature=2.0, top_k=0, top_p=1.0, seed=0))
    assert 1 not in {s.sample(logits) for _ in range(200)}
    with pytest.raises(ValueError, match="no token is allowed"):
        s.sample(np.full(3, -np.inf, np.float32))


@pytest.mark.parametrize(
    "bad", [dict(temperature=-1), dict(top_p=0), dict(top_p=1.5), dict(repeat_penalty=0)]
)
def test_bad_parameters_are_rejected(bad):
    with pytest.raises(ValueError):
        SamplingParams(**bad)


def test_stop_scanner_holds_back_partial_stop_strings():
    sc = StopScanner(["USER:"])
    out = []
    for piece in ["Hello ", "US", "E", "R", ": more"]:
        text, stopped = sc.feed(piece)
        out.append(text)
        if stopped:
            break
    assert "".join(out) == "Hello " and stopped


def test_stop_scanner_releases_false_alarms():
    sc = StopScanner(["USER:"])
    a, _ = sc.feed("a US")
    b, _ = sc.feed("A is big")
    assert a + b + sc.flush() == "a USA is big"


@pytest.mark.parametrize("n", [2000, 32000])  # the sampled floor's stride grows with n
@pytest.mark.parametrize("scale", [0.01, 1.0, 5.0, 100.0])  # few or many within the margin
def test_top_k_selection_is_exact(scale, n):
    from agent.llm.sampling import _top_k

    rng = np.random.default_rng(int(scale * 100))
    for trial in range(30):
        logits = (rng.standard_normal(n) * scale).astype(np.float32)
        if trial % 3 == 0:  # a grammar mask: most tokens forbidden
            logits[rng.random(n) < 0.95] = -np.inf
        if trial % 5 == 0:  # ties at the boundary
            logits[rng.integers(0, n, 50)] = logits.max()
        if trial % 7 == 1:  # a sorted run: a strided sample sees one value of each stretch
            logits = np.sort(logits)
        for k in (1, 40, int(np.isfinite(logits).sum())):
            got = np.sort(logits[_top_k(logits, k)])
            want = np.sort(logits)[::-1][:k][::-1]
            np.testing.assert_array_equal(got, want)


def test_the_draw_is_generator_choice_s_own():
    """Seeded sampling picks what ``Generator.choice(n, p=probs)`` picks (the sampler draws the
    same way without choice's checks): seeds keep their outputs."""
    rng = np.random.default_rng(0)
    for trial in range(300):
        logits = (rng.standard_normal(500) * rng.uniform(0.1, 10)).astype(np.float32)
        params = SamplingParams(
            temperature=float(rng.uniform(0.2, 2)),
            top_k=int(rng.integers(1, 80)),
            top_p=float(rng.uniform(0.3, 1)),
            repeat_penalty=1.0,
            seed=trial,
        )
        got = Sampler(params).sample(logits)
        # the reference: the same top-k / top-p / temperature, then choice
        k = min(params.top_k, 500)
        top = np.argsort(-logits, kind="stable")[:k]
        vals = logits[top].astype(np.float64)
        probs = np.exp(vals - vals[0])
        probs /= probs.sum()
        if params.top_p < 1.0:
            cut = int(np.searchsorted(np.cumsum(probs), params.top_p) + 1)
            top, vals = top[:cut], vals[:cut]
        probs = np.exp((vals - vals[0]) / params.temperature)
        probs /= probs.sum()
        assert got == int(top[np.random.default_rng(trial).choice(len(top), p=probs)]), trial


def test_repeated_recent_tokens_are_penalized_once():
    s = Sampler(SamplingParams(repeat_penalty=2.0))
    out = s.penalize(np.array([4.0, -1.0, 3.0], np.float32), recent=[0, 0, 1, 0, 1])
    np.testing.assert_array_equal(out, [2.0, -2.0, 3.0])
