"""A regular-expression subset (JSON Schema ``pattern``) compiled to grammar nodes.

Supported: literals, ``.``, classes ``[a-z0-9_]`` / ``[^...]``, escapes ``\\d \\w \\s \\D \\W \\S``
``\\n \\t \\r \\xHH \\uHHHH`` and escaped punctuation, groups ``(...)`` / ``(?:...)``, ``|``,
quantifiers ``* + ? {n} {n,} {n,m}`` (a trailing lazy ``?`` is accepted; it does not change the
language), ``^`` at the start and ``$`` at the end. Unbounded repeats are capped at ``max_repeat``
so every string stays finite. Anything else (backreferences, lookaround, anchors in the middle)
raises ``RegexError`` naming the offset.

Characters are produced through ``emit(charset)``, so the JSON layer can escape ``"`` and ``\\``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.llm.grammar.errors import GrammarError
from agent.llm.grammar.nodes import EMPTY, Node, Rep, alt, seq

ASCII = (1 << 128) - 1


class RegexError(GrammarError):
    def __init__(self, pattern: str, offset: int, what: str):
        super().__init__(
            f"pattern {pattern!r} at offset {offset}: {what}; "
            "use a simpler pattern (see agent.llm.grammar.regex for the supported subset)"
        )
        self.pattern, self.offset = pattern, offset


@dataclass(frozen=True)
class CharSet:
    """ASCII characters as a 128-bit mask, plus non-ASCII: every one (``any_non_ascii``) or
    ``extra``."""

    ascii: int = 0
    any_non_ascii: bool = False
    extra: frozenset[str] = frozenset()

    def union(self, other: CharSet) -> CharSet:
        return CharSet(
            self.ascii | other.ascii,
            self.any_non_ascii or other.any_non_ascii,
            self.extra | other.extra,
        )


def _mask(chars: str) -> int:
    m = 0
    for c in chars:
        m |= 1 << ord(c)
    return m


_DIGIT = _mask("0123456789")
_WORD = _DIGIT | _mask("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_SPACE = _mask(" \t\n\r\f\v")
_CLASSES = {
    "d": CharSet(_DIGIT),
    "w": CharSet(_WORD),
    "s": CharSet(_SPACE),
    "D": CharSet(ASCII & ~_DIGIT, True),
    "W": CharSet(ASCII & ~_WORD, True),
    "S": CharSet(ASCII & ~_SPACE, True),
}
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "0": "\0"}


def _single(c: str) -> CharSet:
    return CharSet(1 << ord(c)) if ord(c) < 128 else CharSet(extra=frozenset(c))


class _Parser:
    def __init__(self, pattern: str, emit: Callable[[CharSet], Node], max_repeat: int):
        self.p, self.i, self.emit, self.max_repeat = pattern, 0, emit, max_repeat
        self.depth = 0  # group nesting: anchors only end top-level alternatives

    def fail(self, what: str, at: int | None = None) -> RegexError:
        return RegexError(self.p, self.i if at is None else at, what)

    def peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""

    def parse(self) -> Node:
        branches = [self.top_branch()]
        while self.peek() == "|":  # each top-level alternative may carry its own anchors
            self.i += 1
            branches.append(self.top_branch())
        if self.i != len(self.p):
            raise self.fail(f"unexpected {self.peek()!r}")
        return alt(*branches)

    def top_branch(self) -> Node:
        anchored_start = self.peek() == "^"
        if anchored_start:
            self.i += 1
        body = self.sequence()
        anchored_end = False
        if self.peek() == "$":
            anchored_end = True
            self.i += 1
        anything = Rep(self.emit(CharSet(ASCII, True)), 0, self.max_repeat)
        return seq(
            *([] if anchored_start else [anything]), body, *([] if anchored_end else [anything])
        )

    def _at_branch_end(self) -> bool:
        """A ``$`` that ends a top-level alternative (not one inside a group)."""
        nxt = self.p[self.i + 1 : self.i + 2]
        return self.depth == 0 and nxt in ("", "|")

    def alternation(self) -> Node:
        branches = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.sequence())
        return alt(*branches)

    def sequence(self) -> Node:
        items: list[Node] = []
        while self.peek() not in ("", "|", ")") and not (
            self.peek() == "$" and self._at_branch_end()
        ):
            items.append(self.quantified())
        return seq(*items) if items else EMPTY

    def quantified(self) -> Node:
        start = self.i
        atom = self.atom()
        c = self.peek()
        if c in ("*", "+", "?"):
            self.i += 1
            lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
        elif c == "{" and self._looks_like_count():
            lo, hi = self.count()
        else:
            return atom
        if self.peek() == "?":  # lazy: same language
            self.i += 1
        if self.peek() in ("*", "+", "?", "{") and not (
            self.peek() == "{" and not self._looks_like_count()
        ):
            raise self.fail("a quantifier cannot follow a quantifier", self.i)
        if lo > 4096:
            raise self.fail(f"repeat count {lo} is too large", start)
        if hi is None or hi > max(lo, self.max_repeat):  # fewer repeats: still matches the pattern
            hi = max(lo, self.max_repeat)
        return Rep(atom, lo, hi)

    def _looks_like_count(self) -> bool:
        j = self.p.find("}", self.i)
        inner = self.p[self.i + 1 : j] if j > 0 else ""
        parts = inner.split(",")
        return (
            j > 0
            and len(parts) <= 2
            and parts[0].isdigit()
            and (len(parts) == 1 or parts[1] == "" or parts[1].isdigit())
        )

    def count(self) -> tuple[int, int | None]:
        j = self.p.index("}", self.i)
        parts = self.p[self.i + 1 : j].split(",")
        at = self.i
        self.i = j + 1
        lo = int(parts[0])
        hi: int | None = lo if len(parts) == 1 else (int(parts[1]) if parts[1] else None)
        if hi is not None and hi < lo:
            raise self.fail(f"repeat {{{lo},{hi}}} has max < min", at)
        return lo, hi

    def atom(self) -> Node:
        c = self.peek()
        at = self.i
        if c == "(":
            self.i += 1
            if self.p.startswith("?:", self.i):
                self.i += 2
            elif self.peek() == "?":
                raise self.fail("lookaround and named/flagged groups are not supported")
            self.depth += 1
            inner = self.alternation()
            self.depth -= 1
            if self.peek() != ")":
                raise self.fail("missing ')'", at)
            self.i += 1
            return inner
        if c in ("*", "+", "?", "{"):
            raise self.fail(f"nothing to repeat before {c!r}")
        if c == ")":
            raise self.fail("unbalanced ')'")
        if c in ("^", "$"):
            raise self.fail("anchors are only supported at the very start and end of the pattern")
        if c == "[":
            return self.emit(self.char_class())
        if c == ".":
            self.i += 1
            return self.emit(CharSet(ASCII & ~(1 << 10), True))
        if c == "\\":
            return self.emit(self.escape(in_class=False))
        self.i += 1
        return self.emit(_single(c))

    def escape(self, in_class: bool) -> CharSet:
        at = self.i
        self.i += 1
        c = self.peek()
        if not c:
            raise self.fail("pattern ends with a lone backslash", at)
        self.i += 1
        if c in _CLASSES:
            return _CLASSES[c]
        if c == "0" and self.peek().isdigit():
            # ECMA-262 (JSON Schema's dialect) forbids \0 before a digit; Python reads it as octal.
            raise self.fail(
                "escape \\0 followed by a digit (an octal escape) is not supported; "
                "write \\x01 style escapes instead",
                at,
            )
        if c in _SIMPLE_ESCAPES:
            return _single(_SIMPLE_ESCAPES[c])
        if c in ("x", "u"):
            n = 2 if c == "x" else 4
            digits = self.p[self.i : self.i + n]
            if len(digits) != n or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise self.fail(f"\\{c} needs {n} hex digits", at)
            self.i += n
            return _single(chr(int(digits, 16)))
        if c == "b" and in_class:
            return _single("\b")
        if c.isalnum():
            raise self.fail(f"escape \\{c} is not supported (backreferences, \\b, \\p{{}} ...)", at)
        return _single(c)

    def _class_char(self) -> CharSet:
        if self.peek() == "\\":
            return self.escape(in_class=True)
        c = self.peek()
        if not c:
            raise self.fail("missing ']'")
        self.i += 1
        return _single(c)

    def char_class(self) -> CharSet:
        at = self.i
        self.i += 1
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        result = CharSet()
        first = True
        while True:
            c = self.peek()
            if not c:
                raise self.fail("missing ']'", at)
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            item_at = self.i
            lo = self._class_char()
            if self.peek() == "-" and self.p[self.i + 1 : self.i + 2] not in ("]", ""):
                self.i += 1
                hi = self._class_char()
                if not _is_single(lo) or not _is_single(hi):
                    raise self.fail("a range needs single characters at both ends", item_at)
                a, b = _char_of(lo), _char_of(hi)
                if ord(a) > ord(b):
                    raise self.fail(f"range {a!r}-{b!r} is reversed", item_at)
                result = result.union(_range_set(a, b, self, item_at))
            else:
                result = result.union(lo)
        if negate:
            if result.extra:
                raise self.fail("a negated class with non-ASCII characters is not supported", at)
            return CharSet(ASCII & ~result.ascii, not result.any_non_ascii)
        return result


def _is_single(cs: CharSet) -> bool:
    return not cs.any_non_ascii and (
        (bin(cs.ascii).count("1") == 1 and not cs.extra) or (cs.ascii == 0 and len(cs.extra) == 1)
    )


def _char_of(cs: CharSet) -> str:
    return next(iter(cs.extra)) if cs.extra else chr(cs.ascii.bit_length() - 1)


def _range_set(a: str, b: str, parser: _Parser, at: int) -> CharSet:
    lo, hi = ord(a), ord(b)
    ascii_mask = 0
    for c in range(lo, min(hi, 127) + 1):
        ascii_mask |= 1 << c
    extra: frozenset[str] = frozenset()
    if hi >= 128:
        if hi - max(lo, 128) > 4096:
            raise parser.fail(f"the non-ASCII range {a!r}-{b!r} is too large", at)
        extra = frozenset(chr(c) for c in range(max(lo, 128), hi + 1) if not 0xD800 <= c <= 0xDFFF)
    return CharSet(ascii_mask, False, extra)


def regex_node(pattern: str, emit: Callable[[CharSet], Node], *, max_repeat: int = 32) -> Node:
    """Grammar node for strings matching ``pattern`` (searched, as JSON Schema does, unless
    anchored)."""
    return _Parser(pattern, emit, max_repeat).parse()
