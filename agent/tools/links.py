"""HyperlinkExtractor[text]: the http(s) links of plain text or HTML, one per line.

Plain text: URLs end at whitespace, quotes or angle brackets; trailing punctuation and unbalanced
closing brackets (markdown ``[title](url)``, a sentence's final period) are not part of them.
HTML: ``a``/``area`` hrefs (relative ones resolved against ``<base href>`` when it is absolute)
and URLs in visible text, in document order; scripts, styles and comments are ignored.
"""

from __future__ import annotations

import re
from urllib.parse import urldefrag, urljoin, urlsplit

from agent.errors import ToolError

DESCRIPTION = (
    "Extract links from plain text and produces a plain text, newline delimited response of links."
)
_URL = re.compile(r"https?://[^\s<>\"'`\\^{}|]+", re.IGNORECASE)
_TRAILING = ".,;:!?*_~'\""
_CLOSERS = {")": "(", "]": "[", "}": "{"}
# HTML when a link tag opens (and some '>' follows it) or the page says so. Found in two linear
# searches: the former `<(a|area|base)\s[^>]*>` rescanned to the end at every `<a ` that lacked '>'.
_LINK_TAG = re.compile(r"<(?:a|area|base)\s", re.IGNORECASE)
_PAGE_TAG = re.compile(r"<html|<body", re.IGNORECASE)
# Links to page assets, not pages a plan would read.
_ASSET_SUFFIXES = (
    ".css",
    ".js",
    ".ico",
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".svg",
    ".webp",
    ".woff",
    ".woff2",
    ".ttf",
    ".mp4",
    ".mp3",
)
_HOST = re.compile(
    r"^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)$",
    re.IGNORECASE,
)


def clean_url_tail(url: str) -> str:
    """Drop trailing punctuation and closing brackets that have no opening partner in the URL.

    Bracket counts are kept as the tail shrinks (not recounted per character): linear time even
    for a URL that ends in a million ')'."""
    counts = {c: url.count(c) for pair in _CLOSERS.items() for c in pair}
    end = len(url)
    while end:
        last = url[end - 1]
        if last in _TRAILING:
            end -= 1
        elif last in _CLOSERS and counts[_CLOSERS[last]] < counts[last]:
            counts[last] -= 1
            end -= 1
        else:
            break
    return url[:end]


def looks_like_html(text: str) -> bool:
    """A link tag with a '>' somewhere after it, or an <html>/<body> tag."""
    m = _LINK_TAG.search(text)
    # only the first link tag needs checking: a '>' after a later one is also after the first
    return (m is not None and text.find(">", m.end()) >= 0) or _PAGE_TAG.search(text) is not None


def _valid(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return False
    host = parts.netloc.rsplit("@", 1)[-1]
    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if len(host) > 253:  # DNS's limit; also keeps the host pattern's work small
        return False
    host = host.encode("idna").decode("ascii") if not host.isascii() else host  # noqa: PLW2901
    if parts.scheme.lower() not in ("http", "https") or not _HOST.match(host):
        return False
    return not parts.path.lower().endswith(_ASSET_SUFFIXES)


def _safe_valid(url: str) -> bool:
    try:
        return _valid(url)
    except UnicodeError:
        return False


def text_links(text: str) -> list[str]:
    """http(s) URLs in plain text, in order (not deduplicated)."""
    return [u for u in (clean_url_tail(m.group(0)) for m in _URL.finditer(text)) if u]


def html_links(html: str) -> list[str]:
    """hrefs and visible-text URLs of an HTML fragment or page, in document order."""
    from bs4 import BeautifulSoup, Comment, NavigableString, Tag

    soup = BeautifulSoup(html, "lxml")
    base_tag = soup.find("base", href=True)
    base = str(base_tag["href"]).strip() if isinstance(base_tag, Tag) else ""
    if urlsplit(base).scheme.lower() not in ("http", "https"):
        base = ""
    found: list[str] = []
    for node in soup.descendants:
        if isinstance(node, Tag) and node.name in ("a", "area") and node.get("href"):
            href = str(node["href"]).strip()
            if base:
                href = urljoin(base, href)
            if href.lower().startswith(("http://", "https://")):
                found.append(href)
        elif isinstance(node, NavigableString) and not isinstance(node, Comment):
            if node.parent is not None and node.parent.name in ("script", "style", "template"):
                continue
            if type(node) is NavigableString:  # not a Script/Stylesheet/Doctype string
                found += text_links(str(node))
    return found


def extract_links(text: str, max_links: int = 10) -> list[str]:
    """Links of ``text`` (HTML or plain), fragments dropped, deduplicated in order, capped."""
    candidates = html_links(text) if looks_like_html(text) else text_links(text)
    seen: dict[str, None] = {}
    rejected: set[str] = set()  # a page repeating one bad URL pays for its check once
    for candidate in candidates:
        url = urldefrag(candidate)[0]
        if not url or url in seen or url in rejected:
            continue
        if not _safe_valid(url):
            rejected.add(url)
            continue
        seen[url] = None
        if len(seen) >= max_links:
            break
    return list(seen)


class HyperlinkExtractor:
    """The HyperlinkExtractor tool (stateless, so safe to share between threads)."""

    name = "HyperlinkExtractor"
    description = DESCRIPTION

    def __init__(self, *, max_links: int = 10):
        self.max_links = max_links

    def __call__(self, text: str) -> str:
        links = extract_links(text, self.max_links)
        if not links:
            raise ToolError(
                f"HyperlinkExtractor found no http(s) links in its input ({len(text)} characters)"
            )
        return "\n".join(links)
