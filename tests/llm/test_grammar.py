"""The grammar engine: byte automaton, token masks against brute force, engine integration."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.llm.grammar import (
    Grammar,
    GrammarError,
    Ref,
    TokenTable,
    alt,
    byte_set,
    choice,
    lit,
    opt,
    rep,
    seq,
    text_char,
    utf8_char,
)
from tests import golden

EOS = 2


def table(pieces: list[bytes]) -> TokenTable:
    """A synthetic vocabulary: ids 0-2 are <unk> <s> </s> (no bytes), then ``pieces``."""
    return TokenTable.from_pieces([b"", b"", b""] + pieces, eos_id=EOS)


def brute_mask(g: Grammar, prefix: bytes, t: TokenTable) -> np.ndarray:
    mask = np.array([bool(p) and g.accepts_prefix(prefix + p) for p in t.pieces])
    mask[EOS] = g.accepts(prefix)
    return mask


def test_literals_sequences_and_alternatives():
    g = Grammar(seq("a", alt("b", "cd"), opt("e")))
    assert [g.accepts(t) for t in ("ab", "acd", "abe", "acde")] == [True] * 4
    assert not g.accepts("a") and g.accepts_prefix("a")
    assert not g.accepts_prefix("ax") and not g.accepts("abee")


def test_bounded_and_unbounded_repeats():
    g = Grammar(seq(rep("x", 2, 4), "!"))
    assert [g.accepts("x" * n + "!") for n in range(6)] == [False, False, True, True, True, False]
    star = Grammar(seq(rep("ab"), "."))
    assert star.accepts(".") and star.accepts("ab" * 50 + ".") and not star.accepts("aba.")


def test_named_rules_allow_recursion():
    # balanced parentheses: p ::= "" | "(" p ")" p
    g = Grammar(Ref("p"), {"p": alt(seq(), seq("(", Ref("p"), ")", Ref("p")))})
    assert g.accepts("(()())()") and g.accepts("")
    assert not g.accepts("(()") and g.accepts_prefix("(()") and not g.accepts_prefix("())")


def test_grammar_errors_are_explained():
    with pytest.raises(GrammarError, match="not defined"):
        Grammar(Ref("missing"))
    with pytest.raises(GrammarError, match="empty"):
        Grammar(byte_set(""))
    with pytest.raises(GrammarError, match="left-recursive"):  # r ::= r "x" | "y"
        Grammar(Ref("r"), {"r": alt(seq(Ref("r"), "x"), "y")}).accepts("yx")


def test_utf8_char_admits_exactly_well_formed_characters():
    g = Grammar(rep(utf8_char(), 1, 1))
    for c in ("é", "€", "😀", "\U0010ffff", "\ud7ff"):
        assert g.accepts(c.encode("utf-8")), c
    for bad in (b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"a", b"\xe2\x82"):
        assert not g.accepts(bad), bad


@given(st.text(min_size=1, max_size=20))
def test_text_char_matches_every_printable_string(s):
    g = Grammar(rep(text_char('"'), 0, 20))
    expected = all(
        ord(c) >= 32
        and c != '"'
        and not 0x7F <= ord(c) <= 0x9F
        and c not in "\u2028\u2029\ufffe\uffff"
        and not 0xD800 <= ord(c) <= 0xDFFF
        for c in s
    )
    assert g.accepts(s.encode("utf-8", "surrogatepass")) == expected


def test_mask_allows_tokens_that_fit_and_eos_only_when_complete():
    t = table([b"{", b"a", b"ab", b"}", b"{a}", b"b}", b"zz", b"\xc3", b"\xa9"])
    g = Grammar(seq("{", rep(alt(byte_set("ab"), utf8_char()), 1, 3), "}"))
    m = g.matcher(t)
    assert set(np.nonzero(m.allowed_mask())[0]) == {3, 7}
    m.accept(3)
    assert set(np.nonzero(m.allowed_mask())[0]) == {
        4,
        5,
        8,
        10,
    }  # 'a' 'ab' 'b}' and the é lead byte
    m.accept(5)
    assert not m.is_complete()
    m.accept(8)  # 'b}'
    assert m.is_complete() and np.nonzero(m.allowed_mask())[0].tolist() == [EOS]


def test_accepting_a_forbidden_token_raises_and_dead_ends_are_reported():
    t = table([b"x", b"y"])
    m = Grammar(lit("xy")).matcher(t)
    with pytest.raises(GrammarError, match="not allowed"):
        m.accept(4)
    m2 = Grammar(lit("q")).matcher(t)  # no token can write 'q'
    with pytest.raises(GrammarError, match="no token"):
        m2.allowed_mask()


def test_control_tokens_are_never_allowed():
    t = table([b"a"])
    mask = Grammar(rep("a", 0, 3)).matcher(t).allowed_mask()
    assert not mask[0] and not mask[1] and mask[EOS] and mask[3]


_ALPHABET = [b"a", b"b", b"c", b"ab", b"ba", b"abc", b"cc", b"\xc3", b"\xa9", b"\xc3\xa9", b"a\xc3"]


@st.composite
def grammars(draw, depth=0):
    kind = draw(
        st.sampled_from(["lit", "set", "seq", "alt", "rep"] if depth < 3 else ["lit", "set"])
    )
    if kind == "lit":
        return lit(draw(st.sampled_from(["a", "b", "ab", "c", "é"])))
    if kind == "set":
        return (
            alt(byte_set(draw(st.sampled_from(["a", "ab", "bc"]))), utf8_char())
            if draw(st.booleans())
            else byte_set(draw(st.sampled_from(["a", "ab", "bc"])))
        )
    parts = draw(st.lists(grammars(depth + 1), min_size=1, max_size=3))
    if kind == "seq":
        return seq(*parts)
    if kind == "alt":
        return alt(*parts)
    lo = draw(st.integers(0, 2))
    return rep(parts[0], lo, lo + draw(st.integers(0, 3)))


@settings(max_examples=60, deadline=None)
@given(grammars(), st.lists(st.sampled_from(_ALPHABET), max_size=6))
def test_masks_equal_brute_force_along_any_path(node, path):
    """The vectorized mask equals checking every token's bytes one by one, at every step."""
    g = Grammar(node)
    t = table(_ALPHABET)
    m = g.matcher(t)
    prefix = b""
    for piece in path:
        mask = (
            m.allowed_mask()
            if g.accepts_prefix(prefix) and brute_mask(g, prefix, t).any()
            else None
        )
        if mask is None:
            break
        assert (mask == brute_mask(g, prefix, t)).all(), prefix
        tok = t.pieces.index(piece)
        if not mask[tok]:
            break
        m.accept(tok)
        prefix += piece
        assert m.is_complete() == (g.accepts(prefix) and not brute_mask(g, prefix, t)[3:].any())


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=12))
def test_automaton_agrees_with_a_regex_oracle(data):
    import re

    g = Grammar(seq(rep(choice(["ab", "c"]), 0, 3), opt(byte_set("xy"))))
    assert g.accepts(data) == bool(re.fullmatch(rb"(?:ab|c){0,3}[xy]?", data))


def test_masks_are_memoized_per_state():
    t = table([b"a", b"aa", b"b"])
    g = Grammar(seq(rep("a", 0, None), "b"))
    cache = g.mask_cache(t)
    m = g.matcher(t)
    for _ in range(5):
        m.allowed_mask()
        m.accept(3)
    assert cache.computed == 1  # 'a'* loops in one state


@pytest.fixture(scope="module")
def tiny():
    from agent.llm import load_model

    return load_model(golden.model_path("tiny-q4_0.gguf"), n_ctx=512, threads=1)


def test_engine_generation_ends_when_the_grammar_completes(tiny):
    g = Grammar(seq(choice(["yes", "no"]), ", because ", rep(byte_set("abcdefghij "), 1, 12), "."))
    for seed in range(4):
        text = tiny.complete(
            "USER: answer ASSISTANT:", grammar=g, temperature=1.0, seed=seed, max_tokens=200
        )
        assert g.accepts(text), text
        assert tiny.last_stats.stop_reason in ("grammar", "eos")


def test_vocabulary_of_a_real_model_keeps_byte_tokens(tiny):
    from agent.llm.grammar import token_table

    t = token_table(tiny)
    assert t.n_vocab == tiny.info.n_vocab
    assert t.pieces[t.eos_id] == b"" and {bytes([b]) for b in range(256)} <= set(t.pieces)
    assert token_table(tiny) is t  # cached per vocabulary


def test_trie_walk_over_a_real_vocabulary_equals_running_each_token():
    """The level-by-level trie walk (shared prefixes walked once) gives every token the state that
    running its bytes one by one gives, over Llama's 32,000-token vocabulary."""
    from agent.llm.formats.files import open_model_file
    from agent.llm.grammar import json_schema_grammar
    from agent.llm.grammar.automaton import DEAD
    from agent.llm.grammar.matcher import token_destinations

    vocab = open_model_file(golden.vocab_dir() / "ggml-vocab-llama-spm.gguf").vocab
    t = TokenTable.from_vocab(vocab)
    assert len(t.order) > 31_000 and len(t.parents) > 20
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["name", "n"],
    }
    g = json_schema_grammar(schema)
    auto, rng = g.automaton, np.random.default_rng(0)
    sid = auto.start
    for text in [b"", b'{"name": "', b'{"name": "ab', b'{"name": "x", "n": 1']:
        sid = auto.run(auto.start, text)
        got = token_destinations(auto, t, sid)
        check = np.union1d(rng.choice(len(t.order), 3000, replace=False), np.nonzero(got)[0])
        want = [auto.run(sid, t.pieces[int(t.order[i])]) for i in check]
        assert got[check].tolist() == want, text
        assert (got != DEAD).sum() > 0


def _closure_by_stacks(auto, stack):
    """The plain definition: explore every stack reachable without reading a byte."""
    from agent.llm.grammar.automaton import END, TERM

    kind, val, rules = auto.p.kind, auto.p.val, auto.p.rules
    out, seen, todo = set(), set(), [stack]
    while todo:
        st = todo.pop()
        if st in seen:
            continue
        seen.add(st)
        if not st or kind[st[-1]] == TERM:
            out.add(st)
        elif kind[st[-1]] == END:
            todo.append(st[:-1])
        else:
            pos = st[-1]
            rest = st[:-1] if kind[pos + 1] == END else st[:-1] + (pos + 1,)
            todo.extend(rest + (s,) for s in rules[val[pos]])
    return frozenset(out)


@settings(max_examples=40, deadline=None)
@given(grammars(), st.data())
def test_closure_memoized_per_position_equals_exploring_whole_stacks(node, data):
    auto = Grammar(node).automaton
    n = len(auto.p.kind)
    stack = tuple(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4)))
    assert auto._close(stack) == _closure_by_stacks(auto, stack)
