"""default_tools against the model card, and the tools chained by the planner's executor over a
real HTTP server on 127.0.0.1."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.llm.scripted import ScriptedModel
from agent.tools import default_tools
from agent.tools.documents import parse_documents
from agent.tools.knowledge import KnowledgeModel
from agent.tools.search import SearchResult

SEED = Path(__file__).resolve().parents[3] / "shared" / "seed" / "000_27d93c0d504bb48d.txt"


class LocalSearch:
    def __init__(self, results: list[SearchResult]):
        self.results = results
        self.queries: list[str] = []

    def search(self, query: str, max_results: int) -> list[SearchResult]:
        self.queries.append(query)
        return self.results[:max_results]


def test_four_tools_with_the_model_card_names() -> None:
    assert default_tools(search_backend=LocalSearch([])).names() == [
        "DuckDuckGo",
        "TextScraper",
        "HyperlinkExtractor",
    ]
    tools = default_tools(ScriptedModel([]), search_backend=LocalSearch([]))
    assert tools.names() == ["DuckDuckGo", "TextScraper", "HyperlinkExtractor", "KnowledgeModel"]
    assert isinstance(tools["knowledgemodel"], KnowledgeModel)


@pytest.mark.skipif(not SEED.exists(), reason="model card not present at ../shared/seed")
def test_descriptions_are_byte_for_byte_the_model_card_lines() -> None:
    card = SEED.read_text(encoding="utf-8")
    expected = [
        line
        for line in card.splitlines()
        if re.match(r"^(DuckDuckGo|TextScraper|HyperlinkExtractor|KnowledgeModel)\[input\]: ", line)
    ]
    assert len(expected) == 4
    tools = default_tools(ScriptedModel([]), search_backend=LocalSearch([]))
    assert tools.describe().splitlines() == expected


def test_default_scraper_refuses_loopback_and_allow_private_opens_it(loopback) -> None:
    loopback.add("/", "<p>local page</p>")
    safe = default_tools(search_backend=LocalSearch([]))["TextScraper"]
    with pytest.raises(Exception, match="refused"):
        safe(loopback.url("/"))
    assert loopback.requests == []
    local = default_tools(search_backend=LocalSearch([]), allow_private=True)["TextScraper"]
    assert "local page" in local(loopback.url("/"))


def _site(loopback) -> None:
    base = f"http://127.0.0.1:{loopback.port}"
    loopback.add(
        "/index.html",
        f"""<html><head><title>Index</title></head><body>
        <nav><a href="/">Home</a></nav>
        <h1>Reading list</h1>
        <p>Start with {base}/poets/gluck.html, then {base}/prizes/2020.html.</p>
        <p>The archive at {base}/missing.html and the scan {base}/scan.bin are old.</p>
        </body></html>""",
    )
    loopback.add(
        "/poets/gluck.html",
        """<html><head><title>Louise Glück</title></head><body>
        <article><h1>Louise Glück</h1><p>Louise Glück's most famous collection is The Wild Iris
        (1992), which won the Pulitzer Prize for Poetry.</p></article>
        <footer>FOOTER</footer></body></html>""",
    )
    loopback.add(
        "/prizes/2020.html",
        "<html><body><p>The 2020 Nobel Prize in Literature went "
        "to Louise Glück.</p></body></html>".encode("cp1252"),
        content_type="text/html; charset=windows-1252",
    )
    loopback.add("/scan.bin", b"\x89PNG\r\n\x1a\n\x00\x00", content_type="image/png")


def test_scrape_extract_scrape_answer_through_the_executor(loopback) -> None:
    from agent.planner import execute, parse_plan

    _site(loopback)
    model = ScriptedModel(["The Wild Iris.\nSource:\nurl: " + loopback.url("/poets/gluck.html")])
    tools = default_tools(model, allow_private=True, search_backend=LocalSearch([]))
    plan = parse_plan(
        "Plan: Read the reading list.\n:evidence0: = "
        f"TextScraper[{loopback.url('/index.html')}]\nPlan: Find its links.\n:evidence1: = "
        "HyperlinkExtractor[:evidence0:]\nPlan: Read the linked pages.\n:evidence2: = "
        "TextScraper[:evidence1:]\nPlan: Answer from them.\n:evidence3: = KnowledgeModel[What is "
        "Louise Glück's most famous work, given :evidence2:?]\nAnswer: :evidence3:",
        tools,
    )
    result = execute(plan, tools)
    assert result.ok, result.error
    links = result.step(":evidence1:").output or ""
    assert links.splitlines() == [
        loopback.url("/index.html"),
        loopback.url("/poets/gluck.html"),
        loopback.url("/prizes/2020.html"),
        loopback.url("/missing.html"),
        loopback.url("/scan.bin"),
    ]
    pages = parse_documents(result.step(":evidence2:").output or "")
    by_url = {d.url: d for d in pages}
    assert "The Wild Iris" in by_url[loopback.url("/poets/gluck.html")].text
    assert "FOOTER" not in by_url[loopback.url("/poets/gluck.html")].text
    assert "Louise Glück" in by_url[loopback.url("/prizes/2020.html")].text  # cp1252 decoded
    assert by_url[loopback.url("/missing.html")].error == "HTTP 404 Not Found"
    assert "image/png" in (by_url[loopback.url("/scan.bin")].error or "")
    prompt = model.prompts[0]
    assert (
        prompt.count("BEGININPUT") == 3
    )  # index, glück, prize; the 404 and the image are not blocks
    assert f"url: {loopback.url('/poets/gluck.html')}\ntitle: Louise Glück\nENDCONTEXT" in prompt
    assert result.answer is not None and result.answer.startswith("The Wild Iris.")
    assert f"Sources:\n- {loopback.url('/poets/gluck.html')}" in result.answer
    assert "Not available: " + loopback.url("/missing.html") in result.answer


def test_search_extract_scrape_chain(loopback) -> None:
    from agent.planner import execute, parse_plan

    _site(loopback)
    search = LocalSearch(
        [
            SearchResult("Glück", loopback.url("/poets/gluck.html"), "A poet."),
            SearchResult("Scan", loopback.url("/scan.bin"), "An image."),
        ]
    )
    tools = default_tools(allow_private=True, search_backend=search)
    plan = parse_plan(
        ":evidence0: = DuckDuckGo[Louise Glück famous work]\n"
        ":evidence1: = HyperlinkExtractor[:evidence0:]\n"
        ":evidence2: = TextScraper[:evidence1:]\n"
        "Answer: :evidence2:",
        tools,
    )
    result = execute(plan, tools)
    assert result.ok, result.error
    assert search.queries == ["Louise Glück famous work"]
    docs = parse_documents(result.answer or "")
    assert [d.url for d in docs] == [loopback.url("/poets/gluck.html"), loopback.url("/scan.bin")]
    assert docs[0].ok and "The Wild Iris" in docs[0].text
    assert docs[1].error and "image/png" in docs[1].error
