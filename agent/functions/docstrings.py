"""Parameter descriptions from a docstring (Google, NumPy or Sphinx style).

Only what the prompt needs: the summary (text before the first section) and one description per
parameter, each folded to a single line because the prompt's layout is one line per parameter.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

_GOOGLE_HEADERS = {
    "args",
    "arguments",
    "parameters",
    "params",
    "keyword args",
    "keyword arguments",
    "attributes",
    "fields",
}
_OTHER_HEADERS = {
    "returns",
    "return",
    "yields",
    "raises",
    "examples",
    "example",
    "notes",
    "note",
    "see also",
    "references",
    "warnings",
    "warning",
    "todo",
}
_SPHINX_PARAM = re.compile(
    r"^:(?:param|parameter|arg|argument|key|keyword)\s+(?:[^:]*\s)?(\w+)\s*:(.*)$"
)
_SPHINX_ANY = re.compile(r"^:\w+")
_GOOGLE_ITEM = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:(.*)$")
_NUMPY_ITEM = re.compile(r"^(\w+)\s*(?::.*)?$")


@dataclass
class Docstring:
    summary: str = ""
    params: dict[str, str] = field(default_factory=dict)


def fold(text: str) -> str:
    """Collapse all whitespace (newlines included) to single spaces."""
    return " ".join(text.split())


def parse_docstring(doc: str | None) -> Docstring:
    if not doc:
        return Docstring()
    lines = inspect.cleandoc(doc).splitlines()
    result = Docstring()
    summary: list[str] = []
    in_summary = True
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        header = stripped.rstrip(":").lower()
        numpy_rule = i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}
        if stripped.endswith(":") and header in _GOOGLE_HEADERS | _OTHER_HEADERS and not numpy_rule:
            in_summary = False
            i = _google_section(lines, i + 1, result if header in _GOOGLE_HEADERS else None)
            continue
        if numpy_rule and header in _GOOGLE_HEADERS | _OTHER_HEADERS:
            in_summary = False
            i = _numpy_section(lines, i + 2, result if header in _GOOGLE_HEADERS else None)
            continue
        m = _SPHINX_PARAM.match(stripped)
        if m or _SPHINX_ANY.match(stripped):
            in_summary = False
            text = [m.group(2)] if m else []
            i += 1
            while i < len(lines) and lines[i].strip() and not _SPHINX_ANY.match(lines[i].strip()):
                text.append(lines[i])
                i += 1
            if m:
                result.params[m.group(1)] = fold(" ".join(text))
            continue
        if in_summary:
            if not stripped and summary:
                in_summary = False  # the summary is the first paragraph
            elif stripped:
                summary.append(stripped)
        i += 1
    result.summary = fold(" ".join(summary))
    return result


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _google_section(lines: list[str], i: int, result: Docstring | None) -> int:
    """Items ``name (type): text`` indented under the header, continuation lines deeper."""
    base: int | None = None
    current: str | None = None
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        ind = _indent(line)
        if base is None:
            if ind == 0:
                return i
            base = ind
        if ind < base:
            return i
        m = _GOOGLE_ITEM.match(line.strip()) if ind == base else None
        if m:
            current = m.group(1).lstrip("*")
            if result is not None:
                result.params[current] = fold(m.group(2))
        elif current and result is not None:
            result.params[current] = fold(result.params[current] + " " + line)
        i += 1
    return i


def _numpy_section(lines: list[str], i: int, result: Docstring | None) -> int:
    """Items ``name : type`` at the section's indent, descriptions indented below."""
    current: str | None = None
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if i + 1 < len(lines) and stripped and set(lines[i + 1].strip()) == {"-"}:
            return i  # next section
        if not stripped:
            i += 1
            continue
        if _indent(line) == 0:
            m = _NUMPY_ITEM.match(stripped)
            current = m.group(1) if m else None
            if current and result is not None:
                result.params.setdefault(current, "")
        elif current and result is not None:
            result.params[current] = fold(result.params[current] + " " + stripped)
        i += 1
    return i
