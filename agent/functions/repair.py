"""Repairs for the slips models make when writing JSON or YAML.

JSON: trailing commas, single-quoted and typographic (“…”) strings, Python ``True``/``False``/
``None``, ``//`` and ``/* */`` comments. One pass over the text that knows where strings are, so
nothing inside a string is ever touched. YAML: values containing ``": "`` (a scanner error) or
``" #"`` (silently cut as a comment) are quoted. Each repair reports what it changed, so a call
can say it was fixed.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}
# “…” and ‘…’ from word processors (either mark may close: models mix them up)
_SMART_QUOTES = {
    "\u201c": "\u201d\u201c",
    "\u201d": "\u201d\u201c",
    "\u2018": "\u2019\u2018",
    "\u2019": "\u2019\u2018",
}


def repair_json(text: str) -> tuple[str, list[str]]:
    """``text`` with common slips fixed, and the names of the repairs made."""
    out: list[str] = []
    repairs: set[str] = set()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = _string_end(text, i, '"')
            out.append(text[i:j])
            i = j
        elif c in _SMART_QUOTES:
            close = _SMART_QUOTES[c]
            j = i + 1
            while j < n and text[j] not in close:
                j += 1
            out.append(_requote(text[i + 1 : j]))
            repairs.add("typographic quotes")
            i = j + 1
        elif c == "'":
            j = _string_end(text, i, "'")
            out.append(
                _requote(
                    text[i + 1 : j - 1] if text[j - 1 : j] == "'" and j - 1 > i else text[i + 1 : j]
                )
            )
            repairs.add("single quotes")
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            repairs.add("comments")
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            repairs.add("comments")
        elif c in "}]":
            k = len(out)
            while k and out[k - 1].isspace():
                k -= 1
            if k and out[k - 1] == ",":
                del out[k - 1]
                repairs.add("trailing commas")
            out.append(c)
            i += 1
        elif c.isalpha() or c == "_":
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            if word in _PY_LITERALS:
                out.append(_PY_LITERALS[word])
                repairs.add("Python literals")
            else:
                out.append(word)
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out), sorted(repairs)


def _string_end(text: str, start: int, quote: str) -> int:
    """Index just past the string starting at ``start`` (or the end of text if unterminated)."""
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == quote:
            return i + 1
        i += 1
    return n


def _requote(body: str) -> str:
    """A single-quoted string body as a JSON double-quoted string."""
    out = ['"']
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append("'" if nxt == "'" else c + nxt)
            i += 2
            continue
        out.append('\\"' if c == '"' else c)
        i += 1
    out.append('"')
    return "".join(out)


class DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKeyError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_json(text: str, *, strict: bool = True) -> Any:
    """``json.loads`` refusing duplicate keys and NaN/Infinity; ``strict=False`` also admits raw
    control characters (newlines) inside strings."""
    return json.loads(
        text, strict=strict, object_pairs_hook=_no_duplicates, parse_constant=_no_constants
    )


# `key: value` where value is plain (not quoted, not a flow collection, not a block indicator)
_YAML_PAIR = re.compile(
    r"^(?P<head>[ ]*(?:-[ ]+)?[^\s:#'\"\[\]{}][^:\n]*?:[ ]+)"
    r"(?P<value>[^\s'\"\[{|>&*!].*?)[ \t]*$"
)


def repair_yaml(text: str) -> tuple[str, list[str]]:
    """Quote plain values that YAML would break on (``": "``) or cut short (``" #"``), and turn
    leading tabs (not allowed in YAML indentation) into spaces."""
    repairs: set[str] = set()
    lines = text.split("\n")
    for idx, raw in enumerate(lines):
        line = raw
        if raw.startswith("\t"):
            stripped = raw.lstrip("\t")
            line = "    " * (len(raw) - len(stripped)) + stripped
            repairs.add("tab indentation")
        lines[idx] = _quote_value(line, (": ", " #"), repairs)
    return "\n".join(lines), sorted(repairs)


def quote_hash_values(text: str) -> str | None:
    """``text`` with plain values containing ``" #"`` quoted, so ``issue #42`` is not cut to
    ``issue`` as a comment; None when there is no such value."""
    repairs: set[str] = set()
    lines = [_quote_value(line, (" #",), repairs) for line in text.split("\n")]
    return "\n".join(lines) if repairs else None


def _quote_value(line: str, needles: tuple[str, ...], repairs: set[str]) -> str:
    m = _YAML_PAIR.match(line)
    if not m:
        return line
    value = m.group("value")
    if any(n in value for n in needles) or (": " in needles and value.endswith(":")):
        repairs.add("unquoted special characters")
        return m.group("head") + "'" + value.replace("'", "''") + "'"
    return line
