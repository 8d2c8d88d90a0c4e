"""Pages as text that keeps its structure: one header line per page, parsed back losslessly.

Tools exchange plain strings (the planner substitutes evidence into the next tool's input), so the
URL of each page must survive as text from TextScraper/DuckDuckGo to KnowledgeModel. The format:

    ### Source: https://example.com/page
    Title: Example page
    Note: text cut at 20000 characters

    The page text, any number of lines.

    ### Source: https://example.com/other
    Error: HTTP 404 Not Found

    ### End of sources

Metadata lines (``Title:``, ``Error:``, ``Note:``) follow the header up to the first blank line; the
text follows that blank line. A page's own text could contain a fake header (an untrusted page may
try to pose as another source), so every ``### Source:`` / ``### End of sources`` inside text is
escaped with one more leading backslash, and unescaped on parsing: the round trip is exact.
Headers are recognised anywhere in a line because the planner may substitute evidence mid-line
("..., given ### Source: ..."). Text outside any source group stays with the caller.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

SOURCE_PREFIX = "### Source: "
END_MARKER = "### End of sources"

# A header: "### Source: <url>" not preceded by a backslash, the URL running to the end of line.
_HEADER_RE = re.compile(r"(?<!\\)### Source: (\S+)[ \t]*$", re.MULTILINE)
_END_RE = re.compile(r"(?<!\\)### End of sources")
# Any marker, escaped or not, inside text: add (or remove) one backslash.
_ESCAPE_RE = re.compile(r"(\\*)(### (?:Source:|End of sources))")
_UNESCAPE_RE = re.compile(r"\\(\\*### (?:Source:|End of sources))")
_META_RE = re.compile(r"^(Title|Error|Note): (.*)$")


@dataclass
class Document:
    """One page (or search result): its URL, text, and what went wrong or was cut, if anything."""

    url: str
    text: str
    title: str | None = None
    error: str | None = None
    note: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Evidence:
    """A tool input split into source documents and the text around them.

    ``segments`` alternate between outside text (``str``) and groups of documents
    (``list[Document]``), in input order, so a caller can rebuild the question around them.
    """

    segments: list[str | list[Document]] = field(default_factory=list)

    @property
    def documents(self) -> list[Document]:
        return [d for s in self.segments if isinstance(s, list) for d in s]

    def outside_text(self, placeholder: str) -> str:
        """The text around the document groups, each group replaced by ``placeholder``."""
        parts = [s if isinstance(s, str) else placeholder for s in self.segments]
        return "".join(parts)


def _escape(text: str) -> str:
    return _ESCAPE_RE.sub(lambda m: f"{m.group(1)}\\{m.group(2)}", text)


def _unescape(text: str) -> str:
    return _UNESCAPE_RE.sub(r"\1", text)


def _one_line(s: str) -> str:
    return " ".join(s.split())


def format_document(doc: Document) -> str:
    """One page block (without the end marker)."""
    url = "".join(doc.url.split()) or "about:blank"  # a header URL is one token
    lines = [f"{SOURCE_PREFIX}{url}"]
    if doc.title:
        lines.append(f"Title: {_one_line(doc.title)}")
    if doc.error:
        lines.append(f"Error: {_one_line(doc.error)}")
    if doc.note:
        lines.append(f"Note: {_one_line(doc.note)}")
    text = _escape(doc.text.strip("\n"))
    if text:
        lines += ["", text]
    return "\n".join(lines)


def format_documents(docs: Iterable[Document]) -> str:
    """Pages as one text: a block per page, then the end marker ('' for no pages)."""
    blocks = [format_document(d) for d in docs]
    if not blocks:
        return ""
    return "\n\n".join(blocks + [END_MARKER])


def _parse_block(url: str, body: str) -> Document:
    """The metadata lines and text of one block (``body`` starts after the header line)."""
    lines = body.split("\n")
    doc = Document(url=url, text="")
    i = 0
    while i < len(lines):
        m = _META_RE.match(lines[i])
        if not m:
            break
        key, value = m.group(1), m.group(2).strip()
        setattr(doc, key.lower(), value or None)
        i += 1
    if i < len(lines) and lines[i].strip() == "":
        i += 1  # the blank line that ends the metadata
    doc.text = _unescape("\n".join(lines[i:]).strip("\n"))
    return doc


def split_evidence(text: str) -> Evidence:
    """Split any text into outside text and groups of documents (see the module docstring).

    A group runs from its first header to the end marker (or to the end of the text when the
    marker is missing, e.g. because a tool's output was cut).
    """
    segments: list[str | list[Document]] = []
    pos = 0
    while True:
        header = _HEADER_RE.search(text, pos)
        if header is None:
            break
        if header.start() > pos or not segments:
            segments.append(text[pos : header.start()])
        end = _END_RE.search(text, header.start())
        group_end = end.start() if end else len(text)
        group_text = text[header.start() : group_end]
        docs: list[Document] = []
        heads = list(_HEADER_RE.finditer(group_text))
        for k, h in enumerate(heads):
            stop = heads[k + 1].start() if k + 1 < len(heads) else len(group_text)
            body = group_text[h.end() : stop]
            if body.startswith("\n"):
                body = body[1:]
            docs.append(_parse_block(h.group(1), body.rstrip("\n")))
        segments.append(docs)
        pos = end.end() if end else len(text)
    if pos < len(text) or not segments:
        segments.append(text[pos:])
    return Evidence([s for s in segments if not (isinstance(s, str) and s == "")] or [""])


def parse_documents(text: str) -> list[Document]:
    """The pages of a ``format_documents`` text; text without headers becomes one document.

    Outside text (before, between or after groups) is dropped when there are headers; the
    one-document fallback has ``url=""``.
    """
    evidence = split_evidence(text)
    docs = evidence.documents
    if docs:
        return docs
    stripped = text.strip()
    return [Document(url="", text=stripped)] if stripped else []
