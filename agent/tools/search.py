"""DuckDuckGo[query]: web search results, one block per result (title, URL, snippet).

The search itself sits behind ``SearchBackend`` so tests use a fake; the real one is
``DDGSBackend`` on the ``ddgs`` package with its DuckDuckGo engine by default. The tool paces
itself (``RateLimiter``, 1 s between queries), retries with exponential backoff when the engine
answers nothing (ddgs reports a DuckDuckGo block as "No results found."), and caches results per
query in memory and optionally on disk. Output uses the document format
(``agent.tools.documents``), so HyperlinkExtractor finds the URLs and KnowledgeModel keeps each
result's URL as its source.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from agent.errors import ToolError
from agent.tools.documents import Document, format_documents
from agent.tools.throttle import KeyedLocks, RateLimiter, ResultCache

DESCRIPTION = (
    "Tool that enables the user to search for information using the DuckDuckGo search engine. "
    "This tool is helpful in locating a suitable list of sites that may contain the answer to the "
    "user's query. It does not directly answer the question but finds a list of sites that might "
    "have the answer."
)


@dataclass(frozen=True)
class SearchResult:
    title: str
    url: str
    snippet: str


@runtime_checkable
class SearchBackend(Protocol):
    """Anything that turns a query into results; raise ``SearchBackendError`` on failure."""

    def search(self, query: str, max_results: int) -> list[SearchResult]: ...


class SearchBackendError(ToolError):
    """A search engine failed; ``retryable`` when trying again later may help (timeouts, blocks)."""

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class DDGSBackend:
    """Search through ``ddgs.DDGS().text`` (ddgs >= 9.1, engines selectable by name).

    ``backend`` is one engine name or a comma-separated list (checked against the installed
    ddgs, which would otherwise silently fan out to every engine), or "auto".
    """

    def __init__(
        self,
        backend: str = "duckduckgo",
        *,
        region: str = "us-en",
        safesearch: str = "moderate",
        timelimit: str | None = None,
        timeout: float = 10.0,
        proxy: str | None = None,
    ):
        from ddgs.engines import ENGINES

        names = [b.strip() for b in backend.split(",") if b.strip()]
        available = sorted(ENGINES.get("text", {}))
        unknown = [n for n in names if n not in ("auto", "all") and n not in available]
        if not names or unknown:
            raise ToolError(
                f"unknown ddgs text backend {', '.join(unknown) or repr(backend)}; "
                f"use 'auto' or one of: {', '.join(available)}"
            )
        if safesearch not in ("on", "moderate", "off"):
            raise ToolError(f"safesearch must be 'on', 'moderate' or 'off', not {safesearch!r}")
        self.backend = ",".join(names)
        self.region = region
        self.safesearch = safesearch
        self.timelimit = timelimit
        self.timeout = timeout
        self.proxy = proxy

    @property
    def cache_key(self) -> str:
        return f"ddgs/{self.backend}/{self.region}/{self.safesearch}/{self.timelimit}"

    def search(self, query: str, max_results: int) -> list[SearchResult]:
        from ddgs import DDGS
        from ddgs.exceptions import DDGSException, TimeoutException

        try:
            # A DDGS per call: its engine clients are not documented as thread-safe.
            rows = DDGS(proxy=self.proxy, timeout=int(max(1, self.timeout))).text(
                query,
                region=self.region,
                safesearch=self.safesearch,
                timelimit=self.timelimit,
                max_results=max_results,
                backend=self.backend,
            )
        except TimeoutException as exc:
            raise SearchBackendError(f"search timed out: {exc}") from exc
        except DDGSException as exc:
            if "no results" in str(exc).lower():
                return []  # also what a rate-limited DuckDuckGo looks like: the caller retries
            raise SearchBackendError(f"search failed: {exc}") from exc
        return [
            SearchResult(
                title=str(r.get("title") or ""),
                url=str(r.get("href") or ""),
                snippet=str(r.get("body") or ""),
            )
            for r in rows
        ]


def format_results(results: list[SearchResult]) -> str:
    """Search results in the document format: one block per result."""
    return format_documents(
        Document(url=r.url, text=r.snippet, title=r.title or None) for r in results
    )


class DuckDuckGo:
    """The DuckDuckGo tool: paced, retried, cached; safe to call from several threads."""

    name = "DuckDuckGo"
    description = DESCRIPTION

    def __init__(
        self,
        backend: SearchBackend | None = None,
        *,
        max_results: int = 5,
        min_interval: float = 1.0,
        retries: int = 2,
        backoff: float = 2.0,
        max_backoff: float = 30.0,
        cache: ResultCache | None = None,
        cache_dir: str | os.PathLike | None = None,
        cache_ttl: float = 24 * 3600,
        engine: str = "duckduckgo",
        region: str = "us-en",
        safesearch: str = "moderate",
        timeout: float = 10.0,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.backend: SearchBackend = backend or DDGSBackend(
            engine, region=region, safesearch=safesearch, timeout=timeout
        )
        self.max_results = max_results
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.cache = cache or ResultCache(ttl=cache_ttl, directory=cache_dir)
        self.limiter = limiter or RateLimiter(min_interval, sleep=sleep)
        self._sleep = sleep
        self._inflight = KeyedLocks()

    def _key(self, query: str) -> str:
        backend_key = getattr(self.backend, "cache_key", type(self.backend).__qualname__)
        return json.dumps([backend_key, self.max_results, query.lower()])

    def __call__(self, text: str) -> str:
        query = " ".join(text.split())
        if not query:
            raise ToolError("DuckDuckGo needs a search query; got empty input")
        return format_results(self.search(query))

    def search(self, query: str) -> list[SearchResult]:
        """Results for ``query``: from the cache, else from the backend (paced and retried)."""
        key = self._key(query)
        cached = self.cache.get(key)
        if cached is not None:
            return [SearchResult(**r) for r in cached]
        self._inflight.acquire(key)
        try:
            cached = self.cache.get(key)  # another thread may have fetched it meanwhile
            if cached is not None:
                return [SearchResult(**r) for r in cached]
            results = self._search_with_retry(query)
            self.cache.put(key, [asdict(r) for r in results])
            return results
        finally:
            self._inflight.release(key)

    def _search_with_retry(self, query: str) -> list[SearchResult]:
        attempts = self.retries + 1
        last_error: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                self._sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
            self.limiter.wait()
            try:
                results = self.backend.search(query, self.max_results)
            except SearchBackendError as exc:
                if not exc.retryable:
                    raise
                last_error = exc
                continue
            except ToolError:
                raise
            except Exception as exc:  # noqa: BLE001 - a third-party backend's own exception
                last_error = exc
                continue
            results = _dedupe(results)[: self.max_results]
            if results:
                return results
            last_error = None  # "no results": maybe a block, so try again
        if last_error is not None:
            raise ToolError(
                f"DuckDuckGo search for {query!r} failed after {attempts} attempt(s): "
                f"{type(last_error).__name__}: {last_error}"
            ) from last_error
        raise ToolError(
            f"DuckDuckGo found no results for {query!r} after {attempts} attempt(s) "
            "(the engine may be rate-limiting); try a shorter or different query"
        )


def _dedupe(results: list[Any]) -> list[SearchResult]:
    seen: dict[str, SearchResult] = {}
    for r in results:
        if isinstance(r, SearchResult) and r.url and r.url not in seen:
            seen[r.url] = r
    return list(seen.values())
