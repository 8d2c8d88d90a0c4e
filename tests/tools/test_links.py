from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ToolError
from agent.tools.documents import Document, format_documents
from agent.tools.links import HyperlinkExtractor, clean_url_tail, extract_links
from tests.timing import least_cost


@pytest.mark.parametrize(
    "text, expected",
    [
        ("See https://a.test/x.", ["https://a.test/x"]),
        ("(see https://a.test/x), then", ["https://a.test/x"]),
        (
            "[the docs](https://a.test/docs) and [more](<https://b.test/>)",
            ["https://a.test/docs", "https://b.test/"],
        ),
        (
            "https://en.wikipedia.org/wiki/Python_(programming_language).",
            ["https://en.wikipedia.org/wiki/Python_(programming_language)"],
        ),
        (
            "\"https://a.test/q?x=1&y=2\"; 'http://b.test:8080/p'!",
            ["https://a.test/q?x=1&y=2", "http://b.test:8080/p"],
        ),
        ("**https://a.test/bold**", ["https://a.test/bold"]),
        ("HTTPS://A.test/Case", ["HTTPS://A.test/Case"]),
        ("https://a.test/#section https://a.test/", ["https://a.test/"]),
        ("ftp://a.test/x mailto:me@a.test javascript:alert(1) www.no-scheme.test", []),
        (
            "https://a.test/style.css https://a.test/logo.png https://a.test/page",
            ["https://a.test/page"],
        ),
        ("https:// broken and https://-bad-.test/ and https://a..test/", []),
        ("http://[2606:4700::1111]/v6", ["http://[2606:4700::1111]/v6"]),
    ],
)
def test_plain_text_links(text: str, expected: list[str]) -> None:
    assert extract_links(text) == expected


def test_html_hrefs_relative_to_base_in_document_order() -> None:
    html = """<html><head><base href="https://site.test/dir/"></head><body>
    <script>var u = "https://script.test/hidden";</script>
    <!-- https://comment.test/hidden -->
    <p>Visit <a href="page.html">a page</a> or https://text.test/inline.</p>
    <a HREF='/root'>root</a> <a href=unquoted.html>u</a>
    <a href="mailto:x@y.test">mail</a> <a href="#top">top</a>
    <area href="https://map.test/" alt="m">
    </body></html>"""
    assert extract_links(html) == [
        "https://site.test/dir/page.html",
        "https://text.test/inline",
        "https://site.test/root",
        "https://site.test/dir/unquoted.html",
        "https://site.test/dir/",
        "https://map.test/",
    ]


def test_relative_hrefs_without_base_are_dropped() -> None:
    assert extract_links('<a href="/local">x</a> <a href="https://abs.test/">y</a>') == [
        "https://abs.test/"
    ]


def test_links_from_document_format_and_search_output() -> None:
    text = format_documents(
        [
            Document("https://a.test/1", "mentions https://c.test/3."),
            Document("https://b.test/2", "", title="B"),
        ]
    )
    assert extract_links(text) == ["https://a.test/1", "https://c.test/3", "https://b.test/2"]


def test_cap_and_tool_output() -> None:
    text = " ".join(f"https://h{i}.test/" for i in range(30))
    assert (
        HyperlinkExtractor(max_links=3)(text)
        == "https://h0.test/\nhttps://h1.test/\nhttps://h2.test/"
    )


def test_no_links_is_a_tool_error() -> None:
    with pytest.raises(ToolError, match="no http"):
        HyperlinkExtractor()("nothing to see")


def test_clean_url_tail() -> None:
    assert clean_url_tail("https://a.test/x).,") == "https://a.test/x"
    assert clean_url_tail("https://a.test/(x)") == "https://a.test/(x)"
    assert clean_url_tail("https://a.test/x]") == "https://a.test/x"
    assert clean_url_tail("") == ""


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_every_link_is_clean_http(text: str) -> None:
    for link in extract_links(text):
        assert link.lower().startswith(("http://", "https://"))
        assert not any(c.isspace() for c in link) and "#" not in link
        assert link[-1] not in ".,;:!?'\""


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.from_regex(r"https://[a-z]{1,6}\.test/[a-z0-9]{0,6}", fullmatch=True), max_size=8),
    st.sampled_from([" ", "\n", ", ", " and "]),
)
def test_fuzz_known_links_survive_in_order(urls: list[str], sep: str) -> None:
    got = extract_links(sep.join(urls), max_links=100)
    assert got == list(dict.fromkeys(urls))


# -- hostile input: linear time (issue 19) --------------------------------------------------------


def _seconds(fn, *args) -> float:
    import time

    t0 = time.perf_counter()
    try:
        fn(*args)
    except ToolError:
        pass
    return time.perf_counter() - t0


def test_a_megabyte_of_unclosed_link_tags_is_linear() -> None:
    text = "<a " * (1_000_000 // 3)
    with pytest.raises(ToolError, match="no http"):
        HyperlinkExtractor()(text)
    # the least of three interleaved runs of each size (tests/timing.py), not one run of each
    small, big = least_cost(
        lambda: _seconds(HyperlinkExtractor(), text[:100_000]),
        lambda: _seconds(HyperlinkExtractor(), text),
    )
    assert big.wall <= 0.2, big  # was ~50 s (backtracking per '<a ')
    # 10x the input: ~10x when linear, 100x when quadratic (same-run ratio, CPU time)
    assert big.cpu < max(small.cpu, 0.002) * 40, (small, big)


def test_unclosed_link_tags_are_read_as_text_and_closed_ones_as_html() -> None:
    assert extract_links("<a https://x.test/a <a https://y.test/b") == [
        "https://x.test/a",
        "https://y.test/b",
    ]
    assert extract_links('<a <a <a href="https://x.test/p">p</a>') == ["https://x.test/p"]
    assert extract_links("<A\thref='https://x.test/q'>q</A>") == ["https://x.test/q"]


def test_a_url_ending_in_many_closing_brackets_is_linear() -> None:
    url = "https://a.test/x(y)" + ")" * 200_000 + "]" * 100_000
    assert clean_url_tail(url) == "https://a.test/x(y)"
    assert extract_links("see " + url) == ["https://a.test/x(y)"]
    assert _seconds(clean_url_tail, url) < 2.0


def test_an_overlong_host_is_not_a_link() -> None:
    assert extract_links("http://" + "a." * 200 + "test/") == []
    assert extract_links("http://" + "a" * 63 + ".test/") == ["http://" + "a" * 63 + ".test/"]
