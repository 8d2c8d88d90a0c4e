"""The model card's four tools, configured once: what ``agent ask`` plans with by default."""

from __future__ import annotations

import os

from agent.llm.protocol import TextGenerator
from agent.tools.fetch import default_user_agent
from agent.tools.knowledge import KnowledgeModel
from agent.tools.links import HyperlinkExtractor
from agent.tools.registry import ToolRegistry
from agent.tools.scraper import TextScraper
from agent.tools.search import DuckDuckGo, SearchBackend


def default_tools(
    model: TextGenerator | None = None,
    *,
    allow_private: bool = False,
    search_backend: SearchBackend | None = None,
    cache_dir: str | os.PathLike | None = None,
    user_agent: str | None = None,
    engine: str = "duckduckgo",
    region: str = "us-en",
    safesearch: str = "moderate",
    max_results: int = 5,
    min_search_interval: float = 1.0,
    timeout: float = 10.0,
    deadline: float = 20.0,
    max_urls: int = 5,
    max_page_chars: int = 8_000,
    max_total_chars: int = 22_000,
    max_links: int = 10,
    answer_tokens: int = 512,
) -> ToolRegistry:
    """DuckDuckGo, TextScraper, HyperlinkExtractor and (when ``model`` is given) KnowledgeModel.

    ``search_backend`` replaces the ddgs search (tests pass a fake); ``cache_dir`` adds a disk
    cache of search results; ``allow_private`` lets TextScraper read local addresses (only for
    trusted local use).
    """
    registry = ToolRegistry()
    registry.add(
        DuckDuckGo(
            search_backend,
            max_results=max_results,
            min_interval=min_search_interval,
            cache_dir=cache_dir,
            engine=engine,
            region=region,
            safesearch=safesearch,
            timeout=timeout,
        )
    )
    registry.add(
        TextScraper(
            allow_private=allow_private,
            max_urls=max_urls,
            max_chars=max_page_chars,
            max_total_chars=max_total_chars,
            timeout=timeout,
            deadline=deadline,
            user_agent=user_agent or default_user_agent(),
        )
    )
    registry.add(HyperlinkExtractor(max_links=max_links))
    if model is not None:
        registry.add(KnowledgeModel(model, max_tokens=answer_tokens))
    return registry
