"""Grammar building blocks over bytes: literals, byte sets, sequences, alternatives, bounded
repeats.

Grammars are built in Python (no grammar text language): the plan, JSON Schema and function-call
grammars compose these nodes. Characters are matched as UTF-8 bytes, so one node type (a byte set)
covers ASCII classes and ``utf8_char()`` covers every non-ASCII character.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Bytes:
    """One byte out of a set, stored as a 256-bit integer mask (bit b set = byte b allowed)."""

    mask: int


@dataclass(frozen=True)
class Lit:
    data: bytes


@dataclass(frozen=True)
class Seq:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Rep:
    """``item`` repeated ``lo`` to ``hi`` times (``hi`` None: unbounded)."""

    item: Node
    lo: int
    hi: int | None


@dataclass(frozen=True)
class Ref:
    """A named rule of the grammar (for recursion or sharing)."""

    name: str


Node = Bytes | Lit | Seq | Alt | Rep | Ref
EMPTY = Seq(())


def lit(text: str | bytes) -> Node:
    return Lit(text.encode("utf-8") if isinstance(text, str) else bytes(text))


def seq(*items: Node | str) -> Node:
    nodes = tuple(lit(i) if isinstance(i, str) else i for i in items)
    return nodes[0] if len(nodes) == 1 else Seq(nodes)


def alt(*items: Node | str) -> Node:
    nodes = tuple(lit(i) if isinstance(i, str) else i for i in items)
    if not nodes:
        raise ValueError("alt() needs at least one alternative")
    return nodes[0] if len(nodes) == 1 else Alt(nodes)


def choice(texts: Iterable[str]) -> Node:
    """One of several literal strings."""
    return alt(*[lit(t) for t in texts])


def opt(item: Node | str) -> Node:
    return Rep(lit(item) if isinstance(item, str) else item, 0, 1)


def rep(item: Node | str, lo: int = 0, hi: int | None = None) -> Node:
    if lo < 0 or (hi is not None and hi < lo):
        raise ValueError(f"bad repeat bounds {{{lo},{hi}}}")
    return Rep(lit(item) if isinstance(item, str) else item, lo, hi)


def byte_set(
    spec: str | Iterable[int] = "", *, ranges: Iterable[tuple[int, int]] = (), negate: bool = False
) -> Bytes:
    """Bytes of ``spec`` (ASCII characters or byte values) and ``ranges`` (inclusive), or all
    others.

    A negated set stays within ASCII (0x00-0x7F): non-ASCII text is added with ``utf8_char()`` so
    that only whole, valid UTF-8 characters can be produced.
    """
    mask = 0
    for c in spec:
        b = ord(c) if isinstance(c, str) else int(c)
        if not 0 <= b <= 255:
            raise ValueError(f"byte_set: {c!r} is not a single byte")
        mask |= 1 << b
    for lo, hi in ranges:
        for b in range(lo, hi + 1):
            mask |= 1 << b
    if negate:
        mask = ~mask & ((1 << 128) - 1)
    return Bytes(mask)


def _range(lo: int, hi: int) -> Bytes:
    return byte_set(ranges=[(lo, hi)])


_CONT = _range(0x80, 0xBF)


def utf8_char() -> Node:
    """Any non-ASCII Unicode scalar value as well-formed UTF-8 (no overlongs, no surrogates)."""
    return alt(
        seq(_range(0xC2, 0xDF), _CONT),
        seq(Lit(b"\xe0"), _range(0xA0, 0xBF), _CONT),
        seq(byte_set(ranges=[(0xE1, 0xEC), (0xEE, 0xEF)]), _CONT, _CONT),
        seq(Lit(b"\xed"), _range(0x80, 0x9F), _CONT),
        seq(Lit(b"\xf0"), _range(0x90, 0xBF), _CONT, _CONT),
        seq(_range(0xF1, 0xF3), _CONT, _CONT, _CONT),
        seq(Lit(b"\xf4"), _range(0x80, 0x8F), _CONT, _CONT),
    )


def printable_utf8_char() -> Node:
    """A non-ASCII character that YAML and terminals print as itself: no C1 controls
    (U+0080-U+009F), no line/paragraph separators (U+2028/9), no U+FFFE/FFFF, no surrogates."""
    return alt(
        seq(Lit(b"\xc2"), _range(0xA0, 0xBF)),
        seq(_range(0xC3, 0xDF), _CONT),
        seq(Lit(b"\xe0"), _range(0xA0, 0xBF), _CONT),
        seq(byte_set(ranges=[(0xE1, 0xE1), (0xE3, 0xEC), (0xEE, 0xEE)]), _CONT, _CONT),
        seq(
            Lit(b"\xe2"),
            alt(
                seq(Lit(b"\x80"), byte_set(ranges=[(0x80, 0xA7), (0xAA, 0xBF)])),
                seq(_range(0x81, 0xBF), _CONT),
            ),
        ),
        seq(Lit(b"\xed"), _range(0x80, 0x9F), _CONT),
        seq(
            Lit(b"\xef"), alt(seq(_range(0x80, 0xBE), _CONT), seq(Lit(b"\xbf"), _range(0x80, 0xBD)))
        ),
        seq(Lit(b"\xf0"), _range(0x90, 0xBF), _CONT, _CONT),
        seq(_range(0xF1, 0xF3), _CONT, _CONT, _CONT),
        seq(Lit(b"\xf4"), _range(0x80, 0x8F), _CONT, _CONT),
    )


def text_char(exclude: str = "") -> Node:
    """One printable character (see ``printable_utf8_char``; no ASCII controls) not in
    ``exclude``."""
    return alt(
        byte_set(exclude + "".join(map(chr, range(32))) + "\x7f", negate=True),
        printable_utf8_char(),
    )
