"""Batched decoding over slots: logits as if each sequence ran alone, and the scheduler's rules
(continuous batching, chunked prefill, prefix reuse across slots, cancel, per-request failures)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from agent.errors import ContextLengthError
from agent.llm.sampling import SamplingParams
from agent.llm.transformer import Span
from tests.golden import expected_path, model_path

GOLDEN = ["tiny-q4_0.gguf", "tiny.ggmlv3.q4_K_M.bin"]
GREEDY = SamplingParams(temperature=0.0, repeat_penalty=1.0)


@pytest.fixture(autouse=True)
def float_prefill(monkeypatch):
    """Solo prompts over 48 rows would take the int8 prefill kernels, batched chunks the float
    matvec: both within the golden tolerance of llama.cpp (checked below), but ~1e-2 apart. The
    batching logic is checked exactly with float prefill on both sides."""
    monkeypatch.setenv("AGENT_PREFILL", "float")


def load(path, n_ctx=256):
    from agent.llm import load_model

    return load_model(path, n_ctx=n_ctx)


@pytest.fixture(scope="module")
def gqa_path(tmp_path_factory):
    from agent.llm.formats.fixtures import make_model

    return make_model(tmp_path_factory.mktemp("gqa") / "tiny-gqa.gguf", "tiny_gqa", "q4_k_m")


def alone(m, ids: list[int]) -> np.ndarray:
    m.reset()
    return m.eval(ids)


def new_cache(m, n_ctx: int) -> tuple[np.ndarray, np.ndarray]:
    i = m.info
    shape = (i.n_layer, n_ctx, i.n_head_kv, i.head_dim)
    return np.zeros(shape, np.float16), np.zeros(shape, np.float16)


def run_batched(m, seqs: list[list[int]], plan: list[list[int]]) -> list[np.ndarray]:
    """Feed each sequence in pieces: plan[step][j] tokens of sequence j in step ``step`` (0 = none),
    all sequences of a step in one forward pass; returns every sequence's logits, row by row."""
    tr = m.transformer
    caches = [new_cache(m, 128) for _ in seqs]
    done = [0] * len(seqs)
    out: list[list[np.ndarray]] = [[] for _ in seqs]
    for counts in plan:
        rows, spans, owners = [], [], []
        for j, c in enumerate(counts):
            if c:
                spans.append(Span(len(rows), len(rows) + c, done[j], *caches[j]))
                rows.extend(seqs[j][done[j] : done[j] + c])
                owners.append(j)
        logits = tr.head(tr.layers_forward(np.asarray(rows, np.int64), spans))
        for j, s in zip(owners, spans, strict=True):
            out[j].append(logits[s.start : s.stop])
            done[j] += s.stop - s.start
    return [np.concatenate(o) for o in out]


@pytest.mark.parametrize("name", GOLDEN + ["gqa"])
def test_batched_forward_matches_each_sequence_alone(name, gqa_path):
    m = load(gqa_path if name == "gqa" else model_path(name))
    rng = np.random.default_rng(7)
    lens = [40, 23, 9, 60]
    seqs = [[1] + [int(t) for t in rng.integers(3, m.info.n_vocab, n - 1)] for n in lens]
    # mixed: prompts of different lengths read in chunks while others decode one row at a time,
    # sequences joining late (positions differ across the batch), a step with 40 rows (sgemm path)
    plan = [
        [40, 0, 0, 0],
        [0, 10, 4, 33],
        [0, 1, 5, 0],
        [0, 12, 0, 1],
        [0, 0, 0, 26],
    ]
    assert [sum(c[j] for c in plan) for j in range(4)] == lens
    got = run_batched(m, seqs, plan)
    for j, ids in enumerate(seqs):
        want = alone(m, ids)
        np.testing.assert_allclose(got[j], want, atol=2e-3, err_msg=f"sequence {j}")
        assert (got[j].argmax(-1) == want.argmax(-1)).all()


@pytest.mark.parametrize("name", GOLDEN)
def test_reused_and_copied_slots_give_the_logits_of_a_fresh_run(name):
    """A slot that held another sequence, reused from a shared prefix, and a prefix copied into
    another slot: the continuations' logits are those of each sequence run alone."""
    m = load(model_path(name))
    tr = m.transformer
    rng = np.random.default_rng(3)
    a = [1] + [int(t) for t in rng.integers(3, m.info.n_vocab, 39)]
    b = a[:20] + [int(t) for t in rng.integers(3, m.info.n_vocab, 15)]  # shares 20 with a
    d = a[:30] + [int(t) for t in rng.integers(3, m.info.n_vocab, 7)]  # shares 30 with a
    slots = [new_cache(m, 128) for _ in range(2)]
    tr.layers_forward(np.asarray(a, np.int64), [Span(0, 40, 0, *slots[0])])
    slots[1][0][:, :30] = slots[0][0][:, :30]  # d's prefix copied from a's slot
    slots[1][1][:, :30] = slots[0][1][:, :30]
    rows = b[20:] + d[30:]  # b reuses a's slot from position 20 (overwriting a's tail)
    spans = [Span(0, 15, 20, *slots[0]), Span(15, 22, 30, *slots[1])]
    logits = tr.head(tr.layers_forward(np.asarray(rows, np.int64), spans))
    np.testing.assert_allclose(logits[:15], alone(m, b)[20:], atol=2e-3)
    np.testing.assert_allclose(logits[15:], alone(m, d)[30:], atol=2e-3)


@pytest.mark.parametrize("name", GOLDEN)
def test_batched_forward_within_golden_tolerance_of_llama_cpp(name):
    """The golden prompt, read in a batch next to another sequence, still matches llama.cpp."""
    m = load(model_path(name))
    exp = np.load(expected_path(model_path(name)))
    ids = [int(i) for i in exp["prompt_ids"]]
    other = ids[:30][::-1]
    got = run_batched(m, [ids, other], [[50, 30], [40, 0]])[0]
    diff = np.abs(got - exp["logits"])
    assert diff.mean() <= 0.06 and diff.max() <= 0.5, (diff.mean(), diff.max())


def collect(m, prompts, **kw) -> list[str]:
    """Run ``generate`` for every prompt on its own thread, all at once."""
    out: list[str] = [""] * len(prompts)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            out[i] = "".join(m.generate(prompts[i], **kw))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return out


PROMPTS = [
    "The quick brown fox",
    "A chat between a curious user and an assistant. USER: What color are blueberries?",
    "Once",
    "1 2 3 4 5 6 7 8 9 10 11 12",
]


@pytest.fixture()
def model():
    m = load(model_path("tiny-q4_0.gguf"))
    yield m
    if m.batcher is not None:
        m.batcher.close()


def test_concurrent_generations_batch_and_equal_their_solo_runs(model):
    kw = dict(max_tokens=20, temperature=0.0, repeat_penalty=1.1)  # greedy: no near-tie draws
    solo = [model.complete(p, **kw) for p in PROMPTS]
    model.enable_batching(slots=4)
    together = collect(model, PROMPTS, **kw)
    assert together == solo
    assert model.batcher.max_seqs >= 2  # at least one step advanced several sequences
    # fewer forward passes than one per token per sequence
    assert model.batcher.steps < sum(len(model.tokenize(s, bos=False)) for s in solo) + 4 * 2


def test_more_requests_than_slots_wait_and_all_finish(model):
    kw = dict(max_tokens=8, temperature=0.0)
    solo = [model.complete(p, **kw) for p in PROMPTS * 2]
    model.enable_batching(slots=2)
    assert collect(model, PROMPTS * 2, **kw) == solo


def test_a_new_request_reuses_a_cached_prefix_from_any_slot(model):
    model.enable_batching(slots=2)
    base = PROMPTS[1]
    first = model.complete(base, max_tokens=4, temperature=0.0)
    assert first is not None
    b = model.batcher
    h = b.submit(base + " And cherries?", 4, GREEDY)
    text = "".join(h)
    n_base = len(model.tokenize(base))
    assert h.stats.cached_tokens >= n_base - 1
    model.batcher.close()
    model.batcher = None
    assert text == model.complete(base + " And cherries?", max_tokens=4, temperature=0.0)


def test_parallel_copies_of_one_prompt_read_it_once(model):
    model.enable_batching(slots=3)
    b = model.batcher
    prompt = PROMPTS[1] * 3
    handles = [b.submit(prompt, 6, SamplingParams(seed=i)) for i in range(3)]
    texts = ["".join(h) for h in handles]
    n = len(model.tokenize(prompt))
    assert sorted(h.stats.cached_tokens for h in handles) == [0, n - 1, n - 1]
    assert all(h.stats.generated_tokens == 6 for h in handles)
    assert len(texts) == 3


def test_long_prompt_is_read_in_chunks_while_others_decode(model):
    model.enable_batching(slots=2, chunk=8)  # > 20 steps for the long prompt, 11 for a
    b = model.batcher
    a = b.submit(PROMPTS[0], 12, GREEDY)
    it = iter(a)
    first = next(it)  # a is decoding
    long_prompt = " ".join(str(i) for i in range(40))
    assert len(model.tokenize(long_prompt)) > 160  # 20+ chunks
    h = b.submit(long_prompt, 1, GREEDY)
    rest = "".join(it)
    done_a = time.perf_counter()
    "".join(h)
    assert first + rest
    assert a.stats.generated_tokens == 12
    # a finished its 11 remaining tokens before h's prompt was read: they shared steps
    assert done_a - h.t_submit < h.stats.prompt_seconds


def test_a_short_prompt_gets_its_first_token_without_waiting_for_a_long_one(model):
    model.enable_batching(slots=3, chunk=8)
    b = model.batcher
    b.log = []
    long = b.submit(" ".join(str(i) for i in range(40)), 1, GREEDY)
    while not b.steps:
        time.sleep(0.001)
    shorts = [b.submit(p, 2, GREEDY) for p in ("Once", "The quick")]
    for h in [*shorts, long]:
        "".join(h)
    for h in shorts:
        first = next(step for step in b.log if any(o is h for o, _ in step))
        # its whole prompt in one step, with no chunk of the long prompt beside it
        assert [n for o, n in first if o is h] == [len(h.ids) - h.stats.cached_tokens]
        assert all(o is not long for o, _ in first)
    # the long prompt was read in chunks of at most 8 rows, steps shared with the short ones
    assert max(n for step in b.log for o, n in step if o is long) == 8
    assert any(len(step) > 1 for step in b.log)


def test_beside_streams_a_step_takes_the_prompt_rows_its_budget_allows(model):
    model.enable_batching(slots=3, chunk=8)
    b = model.batcher
    b.log = []
    seen: list[tuple[int, int]] = []

    class OneRowBesideStreams:  # stands for PromptBudget: its rules have their own tests
        def rows(self, decoding: int) -> int:
            return 1 if decoding else 8

        def near_end(self, left: int) -> bool:
            return left <= 6

        def observe(self, seconds: float, decode_rows: int, prompt_rows: int) -> None:
            assert seconds > 0
            seen.append((decode_rows, prompt_rows))

    b.budget = OneRowBesideStreams()
    a = b.submit(PROMPTS[0], 30, GREEDY)
    it = iter(a)
    next(it)  # a is decoding
    long = b.submit(" ".join(str(i) for i in range(40)), 1, GREEDY)
    while not any(o is long for step in b.log for o, _ in step):
        time.sleep(0.001)
    short = b.submit("Once upon", 1, GREEDY)  # near its end from the start
    "".join(it)
    "".join(long)
    "".join(short)
    beside = [n for step in b.log for o, n in step if o is long and any(x is a for x, _ in step)]
    alone = [n for step in b.log for o, n in step if o is long and all(x is long for x, _ in step)]
    assert beside[:-1] and set(beside[:-1]) == {1}  # one row a step while a streamed ...
    assert beside[-1] <= 6  # ... but the last few rows at once
    first = next(step for step in b.log if any(o is short for o, _ in step))
    assert [n for o, n in first if o is short] == [len(short.ids) - short.stats.cached_tokens]
    assert any(o is a for o, _ in first)  # its whole prompt in one step, beside the stream
    assert max(alone) == 8  # the whole chunk once it was alone
    assert len(seen) == len(b.log)  # every step's time reached the budget
    assert all(d + p == sum(n for _, n in step) for (d, p), step in zip(seen, b.log, strict=True))


def test_cancel_frees_the_slot_for_the_next_request(model):
    model.enable_batching(slots=1)
    b = model.batcher
    stop = threading.Event()
    h = b.submit(PROMPTS[0], 200, SamplingParams(seed=1), cancel=stop)
    it = iter(h)
    next(it)
    stop.set()
    h2 = b.submit(PROMPTS[2], 3, GREEDY)
    assert h2.stats.generated_tokens == 0
    "".join(h2)
    assert h2.stats.generated_tokens == 3
    assert h.stats.stop_reason == "cancelled" and h.stats.generated_tokens < 200


def test_leaving_the_iterator_early_cancels(model):
    model.enable_batching(slots=1)
    gen = model.generate(PROMPTS[0], max_tokens=200, temperature=0.8, seed=1)
    next(gen)
    gen.close()
    assert model.complete(PROMPTS[2], max_tokens=3, temperature=0.0)


def test_context_overflow_fails_alone(model):
    model.enable_batching(slots=2, n_ctx=32)
    b = model.batcher
    h = b.submit(PROMPTS[0], 10, GREEDY)
    with pytest.raises(ContextLengthError, match="context window is 32"):
        b.submit(" ".join(["word"] * 40), 4, GREEDY)
    "".join(h)
    assert h.stats.generated_tokens == 10
    # a generation that reaches the slot's end stops with "length"
    h3 = b.submit(PROMPTS[1][:60], 100, GREEDY)
    "".join(h3)
    assert h3.stats.stop_reason in ("length", "eos")
    assert len(h3.slot.tokens if h3.slot else []) <= 32


class BrokenGrammar:
    """A grammar whose matcher fails on its first step (a bug in a user grammar)."""

    def matcher(self, model):
        class M:
            def allowed_mask(self):
                raise ValueError("broken grammar")

        return M()


def test_one_sequence_failing_does_not_stop_the_others(model):
    model.enable_batching(slots=2)
    b = model.batcher
    good = b.submit(PROMPTS[0], 10, GREEDY)
    bad = b.submit(PROMPTS[2], 10, GREEDY, grammar=BrokenGrammar())
    with pytest.raises(ValueError, match="broken grammar"):
        "".join(bad)
    "".join(good)
    assert good.stats.generated_tokens == 10
    assert "".join(b.submit(PROMPTS[2], 2, GREEDY))  # the slot was freed


def test_pieces_handed_to_on_piece_are_the_ones_otherwise_yielded(model):
    kw = dict(max_tokens=12, temperature=0.0)
    yielded = list(model.generate(PROMPTS[1], **kw))
    got: list[str] = []
    assert list(model.generate(PROMPTS[1], on_piece=got.append, **kw)) == []  # unbatched
    assert got == yielded
    model.enable_batching(slots=2)
    got_batched: list[str] = []
    threads = []
    for seen in (got_batched, []):
        gen = model.generate(PROMPTS[1], on_piece=seen.append, **kw)
        threads.append(threading.Thread(target=lambda g=gen: list(g)))
        threads[-1].start()
    for t in threads:
        t.join(60)
    assert got_batched == yielded
    assert model.batcher.max_seqs == 2


def test_a_failing_on_piece_fails_its_own_sequence_alone(model):
    model.enable_batching(slots=2)
    b = model.batcher

    def refuse(piece: str) -> None:
        raise ConnectionError("the client went away")

    bad = b.submit(PROMPTS[2], 10, GREEDY, on_piece=refuse)
    good = b.submit(PROMPTS[0], 10, GREEDY)
    with pytest.raises(ConnectionError, match="went away"):
        list(bad)
    "".join(good)
    assert good.stats.generated_tokens == 10


def test_a_scheduler_bug_fails_the_generations_instead_of_hanging_them(model, monkeypatch):
    model.enable_batching(slots=2)
    b = model.batcher
    real = b._admit
    monkeypatch.setattr(b, "_admit", lambda: (_ for _ in ()).throw(RuntimeError("bug")))
    h = b.submit(PROMPTS[0], 4, GREEDY)
    with pytest.raises(RuntimeError, match="bug"):
        "".join(h)
    monkeypatch.setattr(b, "_admit", real)
    assert "".join(b.submit(PROMPTS[0], 2, GREEDY)) is not None  # still serving
    assert b._thread.is_alive()


def test_grammar_per_sequence(model):
    import json

    from agent.llm.grammar import json_schema_grammar

    model.enable_batching(slots=3)
    schemas = [
        {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
        {"type": "array", "items": {"type": "boolean"}, "maxItems": 3},
        {"type": "string", "enum": ["red", "green"]},
    ]
    out: list[str] = [""] * 3

    def run(i):
        out[i] = model.complete(
            PROMPTS[i],
            max_tokens=60,
            temperature=0.9,
            seed=i,
            grammar=json_schema_grammar(schemas[i]),
        )

    ts = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    import jsonschema

    for text, schema in zip(out, schemas, strict=True):
        jsonschema.validate(json.loads(text), schema)


def test_closing_the_scheduler_fails_waiting_generations(model):
    model.enable_batching(slots=1)
    b = model.batcher
    h = b.submit(PROMPTS[0], 10_000, SamplingParams(seed=1))
    b.close()
    with pytest.raises(Exception, match="closed"):
        "".join(h)
    with pytest.raises(Exception, match="closed"):
        b.submit(PROMPTS[0], 1, GREEDY)


def test_closing_mid_generation_hands_over_every_piece_generated(model):
    """Pieces wait for the next step to be handed over (so a reader runs while the kernels do):
    closing the scheduler in between must still deliver them before the error."""
    model.enable_batching(slots=1)
    b = model.batcher
    emitted: list[str] = []
    got: list[str] = []
    two = threading.Event()

    def receive(piece: str) -> None:
        got.append(piece)
        if len(got) >= 2:
            two.set()

    h = b.submit(PROMPTS[0], 10_000, SamplingParams(seed=1), on_piece=receive)
    step = h.cont.step

    def recording_step(logits, history):  # type: ignore[no-untyped-def]
        text, done = step(logits, history)
        emitted.append(text)
        if len(got) >= 2:
            time.sleep(0.01)  # let close() land between this step and the next
        return text, done

    h.cont.step = recording_step  # type: ignore[method-assign]
    assert two.wait(60)
    b.close()
    with pytest.raises(Exception, match="closed"):
        list(h)
    assert "".join(got) == "".join(emitted) and len(emitted) > 2


def test_bad_arguments(model):
    from agent.llm.batch import BatchScheduler

    with pytest.raises(ValueError, match="slots"):
        BatchScheduler(model, 0, 64)
    with pytest.raises(ValueError, match="chunk"):
        BatchScheduler(model, 1, 64, chunk=0)


def test_parallel_knowledge_model_steps_of_a_plan_run_as_one_batch():
    """Two ready KnowledgeModel steps: the executor's threads call the engine at once, the
    scheduler advances both in the same forward passes (no executor change)."""
    from agent.planner import execute, parse_plan
    from agent.tools.knowledge import KnowledgeModel

    model = load(model_path("tiny-q4_0.gguf"), n_ctx=1024)
    model.enable_batching(slots=2)
    km = KnowledgeModel(model, max_tokens=16, temperature=0.0)
    text = (
        "Plan: ask one\n:evidence0: = KnowledgeModel[What color are blueberries? Given: blue]\n"
        "Plan: ask two\n:evidence1: = KnowledgeModel[What color is grass? Given: green]\n"
        "Answer: :evidence0: :evidence1:"
    )
    plan = parse_plan(text, tools=["KnowledgeModel"])
    result = execute(plan, {"KnowledgeModel": km})
    assert result.ok, result.error
    b = model.batcher
    assert b.max_seqs >= 2  # a forward pass advanced both steps' sequences
    b.close()
