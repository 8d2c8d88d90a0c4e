"""Finding the call in a model's answer.

Models wrap the call in code fences, put prose before or after it, or answer in YAML. This module
only locates candidate snippets, in the order they appear; ``parse`` decides which one is the call.
Candidates: the body of every code fence, every balanced ``{...}`` region (string-aware, so braces
inside strings do not count), an unclosed ``{`` running to the end (a cut-off answer, reported as
such), and every YAML block that has a ``function:`` key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_TEXT = 200_000  # longer answers are cut: a call is never this long
MAX_CANDIDATES = 64  # bounds the work on pathological input (thousands of braces)

_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[ \t]*([\w+-]*)[^\n]*\n", re.M)
_FUNCTION_LINE = re.compile(
    r"""^(?P<indent>[ ]*)(?:-[ ]+)?["']?(?:function|function_name)["']?[ \t]*:(?:[ \t]|$)""",
    re.M | re.I,
)
_KEY_LINE = re.compile(
    r"""^(?:-[ ]+)?(?:"[^"\n]*"|'[^'\n]*'|[^\s:#'"][^:\n]*?)[ \t]*:(?:[ \t]|$)"""
)


@dataclass(frozen=True)
class Snippet:
    """A stretch of the answer that may hold the call."""

    text: str
    start: int  # offset in the answer
    kind: str  # "json" (starts with "{") or "yaml"
    closed: bool = True  # False: a "{" that is never closed (the answer was cut off?)
    lang: str = ""  # the code fence's language tag, if it came from a fence


def find_snippets(text: str) -> list[Snippet]:
    """Candidate snippets in order of appearance (duplicates removed)."""
    text = text[:MAX_TEXT]
    found: list[Snippet] = []
    for body, start, lang in _fences(text):
        found.extend(_from_region(body, start, lang))
    found.extend(_from_region(text, 0, ""))
    seen: set[str] = set()
    unique: list[Snippet] = []
    for s in sorted(found, key=lambda s: s.start):
        key = s.text.strip()
        if key and key not in seen:
            seen.add(key)
            unique.append(s)
    return unique[:MAX_CANDIDATES]


def _fences(text: str) -> list[tuple[str, int, str]]:
    """(body, offset, language) of each fenced block; an unclosed last fence runs to the end."""
    out: list[tuple[str, int, str]] = []
    pos = 0
    while True:
        m = _FENCE.search(text, pos)
        if not m:
            return out
        marker, lang = m.group(1), m.group(2).lower()
        close = re.compile(
            r"^[ \t]*" + re.escape(marker[0]) + "{" + str(len(marker)) + r",}[ \t]*$", re.M
        )
        end = close.search(text, m.end())
        body_end = end.start() if end else len(text)
        out.append((text[m.end() : body_end], m.end(), lang))
        if not end:
            return out
        pos = end.end()


def _from_region(region: str, offset: int, lang: str) -> list[Snippet]:
    # the model's text begins after "ASSISTANT:" with a space that indents only its first line
    lead = len(region) - len(region.lstrip(" \t"))
    region, offset = region[lead:], offset + lead
    out = [Snippet(t, offset + s, "json", closed, lang) for t, s, closed in _brace_objects(region)]
    out += [Snippet(t, offset + s, "yaml", True, lang) for t, s in _yaml_blocks(region)]
    return out


def _brace_objects(text: str) -> list[tuple[str, int, bool]]:
    """Outermost balanced ``{...}`` regions (strings skipped), and unclosed ones."""
    out: list[tuple[str, int, bool]] = []
    pos = 0
    while len(out) < MAX_CANDIDATES:
        start = text.find("{", pos)
        if start < 0:
            break
        end = _match_brace(text, start)
        if end is None:
            out.append((text[start:], start, False))
            # the inner objects of a cut-off answer are candidates too (the params may be whole)
            pos = start + 1
            continue
        out.append((text[start:end], start, True))
        pos = end
    return out


def _match_brace(text: str, start: int) -> int | None:
    """Index just past the ``}`` closing the ``{`` at ``start``, or None if it never closes.

    Brackets inside strings do not count. As in JSON and YAML flow style, a quote opens a string
    only where a value or key starts (after ``{ [ , :``), so an apostrophe in a word or a quote
    inside a plain YAML scalar (``{size: 5"}``) is just a character.
    """
    depth = 0
    quote = ""
    prev = ""  # the last non-blank character outside strings
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                if quote == "'" and text[i + 1 : i + 2] == "'":
                    i += 2  # YAML's '' inside a single-quoted string
                    continue
                quote = ""
                prev = c
        elif c in "\"'" and prev in ("{", "[", ",", ":"):
            quote = c
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1 if c == "}" else None
            if depth < 0:
                return None
        if not quote and not c.isspace():
            prev = c
        i += 1
    return None


def _yaml_blocks(text: str) -> list[tuple[str, int]]:
    """YAML blocks around each ``function:`` line, dedented, prose before and after left out."""
    lines = text.splitlines(keepends=True)
    offsets = []
    pos = 0
    for line in lines:
        offsets.append(pos)
        pos += len(line)
    out = []
    used_until = -1
    for i, line in enumerate(lines):
        if i <= used_until:
            continue
        m = _FUNCTION_LINE.match(line)
        if not m:
            continue
        indent = len(m.group("indent"))
        first = i
        # earlier sibling keys ("params:" before "function:") and their nested lines
        j = i - 1
        while j >= 0:
            prev = lines[j]
            if not prev.strip():
                break
            p_indent = _indent(prev)
            if p_indent > indent or (p_indent == indent and _KEY_LINE.match(prev[indent:])):
                j -= 1
                continue
            break
        first = j + 1
        while first < i and _indent(lines[first]) > indent:
            first += 1  # nested lines whose parent key was not included
        last = i
        k = i + 1
        while k < len(lines):
            nxt = lines[k]
            if not nxt.strip():
                k += 1
                continue
            n_indent = _indent(nxt)
            if n_indent > indent or (
                n_indent == indent
                and _KEY_LINE.match(nxt[indent:])
                and not nxt.lstrip().startswith("```")
            ):
                last = k
                k += 1
                continue
            break
        used_until = last
        # from the function line on; and, when keys precede it, with those too (either may be
        # the call: "params:" written first, or prose that happens to look like a key)
        for start in [first, i] if first < i else [i]:
            block = "".join(_dedent(line, indent) for line in lines[start : last + 1])
            out.append((block, offsets[start]))
    return out


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _dedent(line: str, n: int) -> str:
    return line[n:] if line[:n].strip() == "" else line.lstrip(" ")
