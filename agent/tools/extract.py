"""Readable text from a fetched body: main content of HTML, tags stripped from XML, JSON as is.

trafilatura finds the main content (article body, no menus) best of the measured extractors
(F1 0.96 on the Zyte benchmark); it returns None for pages it cannot handle (link lists,
near-empty pages), and then a BeautifulSoup pass drops script/style/nav boilerplate and keeps
block structure as lines. When trafilatura cannot even be imported (a broken install: jusText needs
``lxml_html_clean``), that is said once, loudly, as an ``ExtractorUnavailableWarning``; every page
then goes to the fallback, and ``Extracted.extractor`` says which one ran.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import warnings
from dataclasses import dataclass
from types import ModuleType

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


TRAFILATURA, SOUP = "trafilatura", "beautifulsoup"


class ExtractorUnavailableWarning(UserWarning):
    """The main-content extractor could not be imported; pages get the plainer fallback."""


@dataclass
class Extracted:
    text: str
    title: str | None = None
    extractor: str = ""  # what produced ``text``: "trafilatura", "beautifulsoup", or the kind


_import_lock = threading.Lock()
_trafilatura: ModuleType | None = None
_import_error: str | None = None  # set (and warned about) once when the import failed


def _load_trafilatura() -> ModuleType | None:
    """trafilatura, imported once; on failure one loud warning, then None for every page."""
    global _trafilatura, _import_error
    with _import_lock:
        if _trafilatura is not None or _import_error is not None:
            return _trafilatura
        try:
            import trafilatura
        except Exception as exc:  # noqa: BLE001 - ImportError, or a dependency failing at import
            _import_error = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"trafilatura cannot be imported ({_import_error}); web pages are extracted "
                "with the BeautifulSoup fallback, which keeps more menus and boilerplate. "
                "Reinstall the package's dependencies (pip install -e . brings trafilatura "
                "and lxml_html_clean) to get main-content extraction back.",
                ExtractorUnavailableWarning,
                stacklevel=3,
            )
            logging.getLogger("agent.tools").error("trafilatura unavailable: %s", _import_error)
            return None
        _trafilatura = trafilatura
        return _trafilatura


def extractor_problem() -> str | None:
    """Why trafilatura is unavailable (None when it imported, or was not tried yet)."""
    return _import_error


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
    return html_main(html, url)[0]


def html_main(html: str, url: str | None = None) -> tuple[str, str]:
    """``(text, extractor)``: trafilatura's main content, or the fallback's text when that is
    missing, short, or trafilatura is unavailable."""
    text = ""
    trafilatura = _load_trafilatura()
    if trafilatura is not None:
        # It logs ERROR for every page that is not an article; the fallback handles those.
        quiet = logging.getLogger("trafilatura")
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.CRITICAL)
        try:
            text = (
                trafilatura.extract(
                    html,
                    url=url,
                    include_comments=False,
                    include_tables=True,
                    favor_precision=True,
                )
                or ""
            )
        except Exception:  # noqa: BLE001 - a crashing extractor must not lose the page
            text = ""
    text = _tidy(text)
    if len(text) < _MIN_MAIN_TEXT:
        fallback = soup_text(html)
        if len(fallback) > len(text):
            return fallback, SOUP
    return text, TRAFILATURA


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
        body, extractor = html_main(text, url)
        return Extracted(body, html_title(text), extractor)
    if kind == "xml":
        return Extracted(xml_text(text), extractor="xml")
    if kind == "json":
        return Extracted(json_text(text), extractor="json")
    return Extracted(_tidy(text), extractor="text")
