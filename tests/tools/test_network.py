"""Live checks against the real web; excluded by default (run with ``-m network``)."""

from __future__ import annotations

import pytest

from agent.tools.documents import parse_documents
from agent.tools.scraper import TextScraper
from agent.tools.search import DuckDuckGo

pytestmark = pytest.mark.network


def test_live_duckduckgo_search_returns_result_blocks() -> None:
    out = DuckDuckGo(max_results=3)("Nobel Prize in Literature 2020 winner")
    docs = parse_documents(out)
    assert docs and all(d.url.startswith("http") for d in docs)


def test_live_scrape_of_example_com() -> None:
    [doc] = parse_documents(TextScraper()("https://example.com/"))
    assert doc.ok and "Example Domain" in (doc.title or doc.text)
