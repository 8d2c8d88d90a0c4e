"""Readable text from a fetched body: main content of HTML, tags stripped from XML, JSON as is.

trafilatura finds the main content (article body, no menus) best of the measured extractors
(F1 0.96 on the Zyte benchmark); it returns None for pages it cannot handle (link lists,
near-empty pages), and then a BeautifulSoup pass drops script/style/nav boilerplate and keeps
block structure as lines.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

# Containers whose text is never content.
_DROP_TAGS = (
    "script",
    "style",
    "noscript",
    "template",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "svg",
    "iframe",
    "object",
    "button",
    "select",
    "head",
)
_BLOCK_TAGS = (
    "p",
    "div",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "section",
    "article",
    "main",
    "pre",
    "blockquote",
    "dd",
    "dt",
    "dl",
    "br",
    "hr",
    "figcaption",
    "td",
    "th",
)
_MIN_MAIN_TEXT = 200  # shorter trafilatura output is likely a miss: compare with the fallback
_SPACES = re.compile(r"[ \t\f\v\xa0\u200b]+")


@dataclass
class Extracted:
    text: str
    title: str | None = None


def _tidy(text: str) -> str:
    """Collapse runs of spaces, strip each line, and keep at most one blank line in a row."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def html_title(html: str) -> str | None:
    m = re.search(r"<title[^>]*>(.*?)</title\s*>", html[:100_000], re.IGNORECASE | re.DOTALL)
    if not m:
        return None
    from html import unescape

    title = " ".join(unescape(re.sub(r"<[^>]+>", "", m.group(1))).split())
    return title or None


def soup_text(html: str) -> str:
    """Visible text without boilerplate containers, one line per block element."""
    from bs4 import BeautifulSoup, Comment

    soup = BeautifulSoup(html, "lxml")
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    # Block edges produce runs of empty lines: one line per block is enough.
    return "\n".join(line for line in _tidy(soup.get_text()).splitlines() if line)


def main_text(html: str, url: str | None = None) -> str:
    """Main content of an HTML page (trafilatura, then the BeautifulSoup fallback)."""
    text = ""
    try:
        import trafilatura

        # It logs ERROR for every page that is not an article; the fallback handles those.
        quiet = logging.getLogger("trafilatura")
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.CRITICAL)

        text = (
            trafilatura.extract(
                html, url=url, include_comments=False, include_tables=True, favor_precision=True
            )
            or ""
        )
    except Exception:  # noqa: BLE001 - a crashing extractor must not lose the page
        text = ""
    text = _tidy(text)
    if len(text) < _MIN_MAIN_TEXT:
        fallback = soup_text(html)
        if len(fallback) > len(text):
            text = fallback
    return text


def xml_text(xml: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(xml, "xml")
    return _tidy(soup.get_text("\n"))


def json_text(body: str) -> str:
    """JSON re-indented for reading (or as served when it does not parse)."""
    try:
        return json.dumps(json.loads(body), indent=1, ensure_ascii=False)
    except ValueError:
        return body.strip()


def extract(text: str, kind: str, url: str | None = None) -> Extracted:
    """Readable text of a decoded body of ``kind`` ('html', 'xml', 'json' or 'text')."""
    if kind == "html":
        return Extracted(main_text(text, url), html_title(text))
    if kind == "xml":
        return Extracted(xml_text(text))
    if kind == "json":
        return Extracted(json_text(text))
    return Extracted(_tidy(text))
