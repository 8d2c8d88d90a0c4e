"""The regex subset behind JSON Schema ``pattern``: agreement with ``re``, malformed patterns,
fuzzing."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.llm.grammar import Grammar, GrammarError, TokenTable
from agent.llm.grammar.nodes import byte_set, lit
from agent.llm.grammar.regex import CharSet, RegexError, regex_node


def _raw(cs: CharSet):
    """Characters as themselves (no JSON escaping) so ``re`` can be the oracle."""
    from agent.llm.grammar.nodes import alt, utf8_char

    alts = []
    if cs.ascii:
        alts.append(byte_set(ranges=[(b, b) for b in range(128) if cs.ascii >> b & 1]))
    if cs.any_non_ascii:
        alts.append(utf8_char())
    alts += [lit(c) for c in sorted(cs.extra)]
    return alt(*alts)


def compile_(pattern: str) -> Grammar:
    return Grammar(regex_node(pattern, _raw, max_repeat=8))


# an ASCII-and-some-Unicode vocabulary of single characters, so samples cover the charset
_VOCAB = TokenTable.from_pieces(
    [b"", b"", b""] + [bytes([b]) for b in range(0, 128)] + [c.encode() for c in "é€ж"], eos_id=2
)

PATTERNS = [
    r"^[a-z]+$",
    r"^\d{3}-\d{4}$",
    r"^(foo|bar)baz?$",
    r"^[A-Z][a-z]{1,5}\.$",
    r"^[^0-9]{2,3}$",
    r"^(?:ab|c)*x$",
    r"^\w+@\w+\.(com|org)$",
    r"^a.c$",
    r"^[\-+]?\d+(\.\d+)?$",
    r"^\x41\u0042[é-ж]?$",
    r"^[a-c-]{2}$",
    r"^(a|)b$",
    r"^a{2,}$",
    r"^\s?\S$",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_samples_match_python_re(pattern):
    g = compile_(pattern)
    for seed in range(15):
        s = g.sample(_VOCAB, seed=seed)
        assert re.fullmatch(pattern.strip("^$"), s, re.DOTALL) or re.search(pattern, s), (
            pattern,
            s,
        )


@pytest.mark.parametrize(
    "pattern,yes,no",
    [
        (r"^\d{3}-\d{4}$", ["555-1234"], ["5555-1234", "55-1234", "abc-defg"]),
        (r"^(foo|bar)baz?$", ["fooba", "barbaz"], ["foobazz", "baz"]),
        (r"^[^0-9]{2,3}$", ["ab", "a b"], ["a1", "abcd"]),
        (r"ab", ["ab", "xxabyy"], ["a", "ba"]),  # unanchored: a search, as JSON Schema means it
        (r"^a.c$", ["abc", "a€c"], ["a\nc", "ac"]),
    ],
)
def test_language_membership(pattern, yes, no):
    g = compile_(pattern)
    for s in yes:
        assert g.accepts(s), (pattern, s)
    for s in no:
        assert not g.accepts(s), (pattern, s)


@pytest.mark.parametrize(
    "pattern,where",
    [
        ("(ab", 0),
        ("ab)", 2),
        ("[abc", 0),
        ("a**", 2),
        ("*a", 0),
        ("a{3,1}", 1),
        (r"(?=x)", 1),
        (r"\1", 0),
        ("a\\", 1),
        ("[z-a]", 1),
        ("a^b", 1),
        (r"\p{L}", 0),
        (r"[^é]", 0),
        ("a{99999}", 0),
    ],
)
def test_malformed_or_unsupported_patterns_name_the_offset(pattern, where):
    with pytest.raises(RegexError) as exc:
        compile_(pattern)
    assert exc.value.offset == where, str(exc.value)
    assert pattern in str(exc.value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab()[]{}|*+?.^$\\-,0123dws", max_size=12))
def test_any_pattern_compiles_or_raises_regex_error(pattern):
    try:
        g = compile_(pattern)
    except RegexError:
        return
    try:
        ok = re.compile(pattern)
    except re.error:
        return  # our subset may be more lenient on oddities Python rejects; nothing to compare
    s = g.sample(_VOCAB, seed=1)
    assert ok.search(s), (pattern, s)


def test_regex_error_is_a_grammar_error():
    assert issubclass(RegexError, GrammarError)


def test_octal_looking_escapes_are_refused_not_misread():
    with pytest.raises(RegexError, match="octal"):
        compile_(r"\01")
    assert compile_(r"a\0").accepts("a\0")
