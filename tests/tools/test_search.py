from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from agent.errors import ToolError
from agent.tools.documents import parse_documents
from agent.tools.search import (
    DDGSBackend,
    DuckDuckGo,
    SearchBackendError,
    SearchResult,
    format_results,
)
from agent.tools.throttle import RateLimiter, ResultCache
from tests.timing import assert_paced

RESULTS = [
    SearchResult(
        "Louise Glück - Wikipedia",
        "https://en.wikipedia.org/wiki/Louise_Gl%C3%BCck",
        "Louise Elisabeth Glück was an American poet. She won the 2020 Nobel Prize.",
    ),
    SearchResult(
        "The Nobel Prize in Literature 2020",
        "https://www.nobelprize.org/prizes/literature/2020/",
        "The Nobel Prize in Literature 2020 was awarded to Louise Glück.",
    ),
]


class FakeBackend:
    """Answers from a script: a list of result lists or exceptions, one per call."""

    def __init__(self, script: list[Any], delay: float = 0.0):
        self.script = list(script)
        self.queries: list[tuple[str, int]] = []
        self.delay = delay
        self._lock = threading.Lock()

    def search(self, query: str, max_results: int) -> list[SearchResult]:
        with self._lock:
            self.queries.append((query, max_results))
            item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if self.delay:
            time.sleep(self.delay)
        if isinstance(item, Exception):
            raise item
        return list(item)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def make_tool(backend: FakeBackend, clock: FakeClock | None = None, **kw: Any) -> DuckDuckGo:
    clock = clock or FakeClock()
    limiter = RateLimiter(kw.pop("min_interval", 1.0), clock=clock, sleep=clock.sleep)
    return DuckDuckGo(backend, limiter=limiter, sleep=clock.sleep, **kw)


def test_output_is_one_block_per_result_with_title_url_snippet() -> None:
    out = make_tool(FakeBackend([RESULTS]))("  Nobel Prize   in Literature 2020 winner ")
    assert out == (
        "### Source: https://en.wikipedia.org/wiki/Louise_Gl%C3%BCck\n"
        "Title: Louise Glück - Wikipedia\n\n"
        "Louise Elisabeth Glück was an American poet. She won the 2020 Nobel Prize.\n\n"
        "### Source: https://www.nobelprize.org/prizes/literature/2020/\n"
        "Title: The Nobel Prize in Literature 2020\n\n"
        "The Nobel Prize in Literature 2020 was awarded to Louise Glück.\n\n"
        "### End of sources"
    )
    docs = parse_documents(out)
    assert [(d.title, d.url, d.text) for d in docs] == [
        (r.title, r.url, r.snippet) for r in RESULTS
    ]


def test_query_whitespace_normalised_and_result_count_passed() -> None:
    backend = FakeBackend([RESULTS])
    make_tool(backend, max_results=7)("a\n  b")
    assert backend.queries == [("a b", 7)]


def test_duplicates_and_url_less_results_dropped_and_capped() -> None:
    rows = [RESULTS[0], RESULTS[0], SearchResult("no url", "", "x"), RESULTS[1]]
    backend = FakeBackend([rows])
    assert make_tool(backend, max_results=1).search("q") == [RESULTS[0]]


def test_rate_limit_spaces_queries() -> None:
    clock = FakeClock()
    tool = make_tool(FakeBackend([RESULTS]), clock, min_interval=1.5)
    tool("one")
    tool("two")
    clock.now += 5  # a long pause: no wait needed
    tool("three")
    tool("four")
    assert clock.sleeps == [1.5, 1.5]


def test_rate_limiter_real_threads_keep_the_interval() -> None:
    """Real threads, clock and sleep. Checked on each call's slot (see ``assert_paced``): the
    gaps between the times the threads noted after returning failed once on a loaded machine
    (0.044 s for 0.05), as a thread that returned on time but ran late shrank the gap after it."""
    limiter = RateLimiter(0.05)
    calls: list[tuple[float, float, float]] = []
    lock = threading.Lock()

    def call() -> None:
        before = time.monotonic()
        delay = limiter.wait()
        after = time.monotonic()
        with lock:
            calls.append((before, delay, after))

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 5
    assert_paced(calls, 0.05)


def test_rate_limiter_sleeps_again_when_a_sleep_returns_early() -> None:
    clock = FakeClock()
    naps: list[float] = []

    def early_sleep(seconds: float) -> None:  # the first nap ends halfway (a signal, a timer)
        clock.now += seconds / 2 if not naps else seconds
        naps.append(seconds)

    limiter = RateLimiter(1.0, clock=clock, sleep=early_sleep)
    assert limiter.wait() == 0.0
    assert limiter.wait() == 1.0  # the delay reserved
    assert naps == [1.0, 0.5] and clock.now == 101.0  # slept again for the rest


def test_empty_answers_are_retried_with_backoff() -> None:
    clock = FakeClock()
    backend = FakeBackend([[], [], RESULTS])
    tool = make_tool(backend, clock, retries=2, backoff=2.0, min_interval=0.0)
    assert tool.search("q") == RESULTS
    assert len(backend.queries) == 3
    assert clock.sleeps == [2.0, 4.0]


def test_backoff_is_capped() -> None:
    clock = FakeClock()
    backend = FakeBackend([[], [], [], [], RESULTS])
    make_tool(backend, clock, retries=4, backoff=10.0, max_backoff=25.0, min_interval=0.0).search(
        "q"
    )
    assert clock.sleeps == [10.0, 20.0, 25.0, 25.0]


def test_persistent_emptiness_is_a_tool_error_that_suggests_a_fix() -> None:
    tool = make_tool(FakeBackend([[]]), retries=1, min_interval=0.0)
    with pytest.raises(ToolError, match="no results for 'q' after 2 attempt"):
        tool("q")


def test_retryable_errors_retry_then_report() -> None:
    backend = FakeBackend([SearchBackendError("search timed out"), RESULTS])
    assert make_tool(backend, retries=1, min_interval=0.0).search("q") == RESULTS
    backend = FakeBackend([SearchBackendError("search timed out")])
    with pytest.raises(ToolError, match="failed after 3 attempt.*timed out"):
        make_tool(backend, retries=2, min_interval=0.0).search("q")


def test_non_retryable_error_is_raised_at_once() -> None:
    backend = FakeBackend([SearchBackendError("bad region", retryable=False), RESULTS])
    with pytest.raises(SearchBackendError, match="bad region"):
        make_tool(backend, retries=3, min_interval=0.0).search("q")
    assert len(backend.queries) == 1


def test_unexpected_backend_exception_becomes_tool_error() -> None:
    backend = FakeBackend([RuntimeError("boom")])
    with pytest.raises(ToolError, match="RuntimeError: boom"):
        make_tool(backend, retries=0, min_interval=0.0).search("q")


def test_cache_hits_skip_the_backend_and_the_wait() -> None:
    clock = FakeClock()
    backend = FakeBackend([RESULTS])
    tool = make_tool(backend, clock)
    first = tool("Nobel 2020")
    assert tool("nobel   2020") == first  # same query, normalised
    assert len(backend.queries) == 1 and clock.sleeps == []


def test_failures_are_not_cached() -> None:
    backend = FakeBackend([SearchBackendError("down"), RESULTS])
    tool = make_tool(backend, retries=0, min_interval=0.0)
    with pytest.raises(ToolError):
        tool("q")
    assert tool.search("q") == RESULTS


def test_disk_cache_survives_a_new_instance(tmp_path) -> None:
    make_tool(FakeBackend([RESULTS]), cache_dir=tmp_path)("q")
    backend = FakeBackend([SearchBackendError("must not be called")])
    assert make_tool(backend, cache_dir=tmp_path).search("q") == RESULTS
    assert backend.queries == []
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_cache_expires_and_ignores_corrupt_files(tmp_path) -> None:
    now = [1000.0]
    cache = ResultCache(ttl=10, directory=tmp_path, clock=lambda: now[0])
    cache.put("k", [1, 2])
    assert cache.get("k") == [1, 2]
    now[0] += 11
    assert cache.get("k") is None
    for f in tmp_path.glob("*.json"):
        f.write_text("{not json")
    assert ResultCache(directory=tmp_path).get("k") is None


def test_concurrent_identical_queries_search_once() -> None:
    backend = FakeBackend([RESULTS], delay=0.05)
    tool = DuckDuckGo(backend, min_interval=0.0)
    outputs: list[str] = []

    def run() -> None:
        outputs.append(tool("same query"))

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(backend.queries) == 1 and len(set(outputs)) == 1 and len(outputs) == 6


def test_empty_query_is_refused() -> None:
    with pytest.raises(ToolError, match="needs a search query"):
        make_tool(FakeBackend([RESULTS]))("   ")


def test_format_results_of_nothing_is_empty() -> None:
    assert format_results([]) == ""


# --- the ddgs adapter, mocked at the DDGS seam (ddgs uses its own HTTP client) ---------------


class FakeDDGS:
    calls: list[dict[str, Any]] = []
    behaviour: Any = None

    def __init__(self, proxy: str | None = None, timeout: int | None = 5, **kw: Any) -> None:
        self.init = {"proxy": proxy, "timeout": timeout}

    def text(self, query: str, **kwargs: Any) -> list[dict[str, str]]:
        FakeDDGS.calls.append({"query": query, **kwargs, **self.init})
        if isinstance(FakeDDGS.behaviour, Exception):
            raise FakeDDGS.behaviour
        return FakeDDGS.behaviour


@pytest.fixture
def fake_ddgs(monkeypatch: pytest.MonkeyPatch) -> type[FakeDDGS]:
    import ddgs

    FakeDDGS.calls = []
    monkeypatch.setattr(ddgs, "DDGS", FakeDDGS)
    return FakeDDGS


def test_ddgs_backend_maps_rows_and_options(fake_ddgs) -> None:
    fake_ddgs.behaviour = [
        {"title": "T", "href": "https://t.test/", "body": "B"},
        {"title": None, "href": "https://u.test/", "body": None},
    ]
    backend = DDGSBackend("duckduckgo", region="de-de", safesearch="off", timeout=7)
    assert backend.search("q", 3) == [
        SearchResult("T", "https://t.test/", "B"),
        SearchResult("", "https://u.test/", ""),
    ]
    assert fake_ddgs.calls == [
        {
            "query": "q",
            "region": "de-de",
            "safesearch": "off",
            "timelimit": None,
            "max_results": 3,
            "backend": "duckduckgo",
            "proxy": None,
            "timeout": 7,
        }
    ]


def test_ddgs_no_results_means_empty_and_timeouts_are_retryable(fake_ddgs) -> None:
    from ddgs.exceptions import DDGSException, TimeoutException

    backend = DDGSBackend()
    fake_ddgs.behaviour = DDGSException("No results found.")
    assert backend.search("q", 5) == []
    fake_ddgs.behaviour = TimeoutException("timed out")
    with pytest.raises(SearchBackendError) as info:
        backend.search("q", 5)
    assert info.value.retryable
    fake_ddgs.behaviour = DDGSException("DNSError: ...")
    with pytest.raises(SearchBackendError, match="DNSError"):
        backend.search("q", 5)


def test_ddgs_block_then_success_through_the_tool(fake_ddgs, monkeypatch) -> None:
    from ddgs.exceptions import DDGSException

    seq = [
        DDGSException("No results found."),
        [{"title": "T", "href": "https://t.test/", "body": "B"}],
    ]

    def text(self: FakeDDGS, query: str, **kwargs: Any) -> list[dict[str, str]]:
        FakeDDGS.calls.append({"query": query})
        item = seq.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    monkeypatch.setattr(fake_ddgs, "text", text)
    clock = FakeClock()
    tool = make_tool(DDGSBackend(), clock, retries=2, backoff=1.0, min_interval=0.0)  # type: ignore[arg-type]
    assert "https://t.test/" in tool("q")
    assert clock.sleeps == [1.0] and len(fake_ddgs.calls) == 2


def test_unknown_engine_names_are_refused_with_the_choices() -> None:
    with pytest.raises(ToolError, match="unknown ddgs text backend html.*duckduckgo"):
        DDGSBackend("html")
    with pytest.raises(ToolError, match="safesearch"):
        DDGSBackend(safesearch="strict")
    assert DDGSBackend("auto").backend == "auto"
    assert DDGSBackend("duckduckgo, wikipedia").backend == "duckduckgo,wikipedia"


def test_default_tool_uses_ddgs_duckduckgo_engine(fake_ddgs) -> None:
    fake_ddgs.behaviour = [{"title": "T", "href": "https://t.test/", "body": "B"}]
    tool = DuckDuckGo(min_interval=0.0, retries=0)
    tool("q")
    assert fake_ddgs.calls[0]["backend"] == "duckduckgo"
