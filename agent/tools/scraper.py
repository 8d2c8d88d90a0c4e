"""TextScraper[urls]: the readable text of one or more web pages, each under its URL.

Input is newline-delimited links (HyperlinkExtractor's output), but anything URL-like in the
input is taken, so a pasted search result or document list works too. Pages are fetched in
parallel through ``SafeFetcher`` (SSRF-checked, capped, deadline); a failed URL is noted in its
block while the other pages still come back, and ``ToolError`` is raised only when all failed.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urldefrag

from agent.errors import ToolError
from agent.tools.documents import Document, format_documents
from agent.tools.extract import extract
from agent.tools.fetch import FetchConfig, FetchedPage, SafeFetcher, default_user_agent
from agent.tools.links import clean_url_tail
from agent.tools.netguard import Resolver

DESCRIPTION = (
    "Load one or more websites from the input string containing newline delimited links, where "
    "input is one or more links, and produces plain text output containing the content of the "
    "links."
)
# Any scheme://..., so file:// and friends are refused out loud instead of silently ignored.
_URL_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s<>\"'`]+")


def parse_url_list(text: str) -> list[str]:
    """URL-like tokens of ``text`` in order, brackets and trailing punctuation stripped,
    deduplicated."""
    urls: dict[str, str] = {}
    for m in _URL_TOKEN.finditer(text):
        url = clean_url_tail(m.group(0))
        if url:
            urls.setdefault(urldefrag(url)[0], url)
    return list(urls.values())


def _cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters at a line or word boundary when one is near."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    for sep in ("\n", " "):
        at = head.rfind(sep)
        if at > limit * 0.8:
            return head[:at].rstrip()
    return head


class TextScraper:
    """The TextScraper tool; configure once, call from any number of threads."""

    name = "TextScraper"
    description = DESCRIPTION

    def __init__(
        self,
        *,
        allow_private: bool = False,
        max_urls: int = 5,
        max_chars: int = 8_000,
        max_total_chars: int = 22_000,
        max_bytes: int = 2_000_000,
        timeout: float = 10.0,
        deadline: float = 20.0,
        max_redirects: int = 5,
        user_agent: str | None = None,
        max_workers: int = 4,
        resolver: Resolver | None = None,
        verify: bool | str = True,
    ):
        self.max_urls = max_urls
        self.max_chars = max_chars
        self.max_total_chars = max_total_chars
        self.max_workers = max(1, max_workers)
        self.fetcher = SafeFetcher(
            FetchConfig(
                timeout=timeout,
                deadline=deadline,
                max_bytes=max_bytes,
                max_redirects=max_redirects,
                allow_private=allow_private,
                user_agent=user_agent or default_user_agent(),
                verify=verify,
            ),
            resolver=resolver,
        )

    def __call__(self, text: str) -> str:
        urls = parse_url_list(text)
        if not urls:
            preview = " ".join(text.split())[:80]
            raise ToolError(
                f"TextScraper needs one or more http(s) URLs, one per line; got {preview!r}"
            )
        extra = urls[self.max_urls :]
        urls = urls[: self.max_urls]
        with ThreadPoolExecutor(
            max_workers=min(self.max_workers, len(urls)), thread_name_prefix="scrape"
        ) as pool:
            docs = list(pool.map(self.scrape_one, urls))
        self._share_budget(docs)
        if all(not d.ok for d in docs):
            details = "; ".join(f"{d.url}: {d.error}" for d in docs)
            raise ToolError(f"TextScraper could not read any of {len(docs)} URL(s): {details}")
        if extra:
            docs[-1].note = "; ".join(
                filter(
                    None,
                    [
                        docs[-1].note,
                        f"{len(extra)} more URL(s) not loaded (limit {self.max_urls}): "
                        + " ".join(extra),
                    ],
                )
            )
        return format_documents(docs)

    def _share_budget(self, docs: list[Document]) -> None:
        """Cut pages so their texts total at most ``max_total_chars``, short pages kept whole.

        The planner pastes evidence up to a cap (24,000 characters by default) and cuts the rest
        blindly; staying under it leaves the choice of what matters to KnowledgeModel.
        """
        sizes = {i: len(d.text) for i, d in enumerate(docs) if d.text}
        budget = self.max_total_chars
        if sum(sizes.values()) <= budget:
            return
        for i in sorted(
            sizes, key=sizes.__getitem__
        ):  # smallest first: what they leave goes to the rest
            share = budget // len(sizes)
            size = sizes.pop(i)
            if size > share:
                docs[i].text = _cut(docs[i].text, share)
                note = f"text cut to {share} characters to fit the total of {budget}"
                docs[i].note = f"{docs[i].note}; {note}" if docs[i].note else note
            budget -= len(docs[i].text)

    def scrape_one(self, url: str) -> Document:
        """One URL as a ``Document``; failures become ``Document.error``, never exceptions."""
        try:
            page = self.fetcher.fetch(url)
        except ToolError as exc:
            return Document(url=url, text="", error=str(exc))
        return self._document(url, page)

    def _document(self, url: str, page: FetchedPage) -> Document:
        extracted = extract(page.text, page.kind, page.final_url)
        notes: list[str] = []
        if page.final_url != url:
            notes.append(f"redirected from {url}")
        if page.truncated:
            notes.append(f"download stopped at {self.fetcher.config.max_bytes} bytes")
        text = extracted.text
        if len(text) > self.max_chars:
            text = _cut(text, self.max_chars)
            notes.append(f"text cut at {self.max_chars} characters")
        if not text:
            return Document(
                url=page.final_url,
                text="",
                title=extracted.title,
                error="no readable text on the page",
                note="; ".join(notes) or None,
            )
        return Document(
            url=page.final_url, text=text, title=extracted.title, note="; ".join(notes) or None
        )
