from __future__ import annotations

import gzip
import time

import pytest
import requests
import responses

from agent.errors import ToolError
from agent.tools.documents import parse_documents
from agent.tools.fetch import FetchConfig, SafeFetcher, SkippedContent, classify, default_user_agent
from agent.tools.scraper import TextScraper, parse_url_list
from tests.tools.test_charset_extract import ARTICLE

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64


@pytest.fixture
def dns(fake_dns):
    for host in ("news.test", "a.test", "b.test", "c.test", "d.test", "e.test", "f.test", "g.test"):
        fake_dns[host] = "93.184.216.34"
    return fake_dns


def test_article_page_is_extracted_under_its_url(dns) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get("https://news.test/nobel", body=ARTICLE.encode(), content_type="text/html")
        out = TextScraper()("https://news.test/nobel")
        sent = rsps.calls[0].request.headers
    [doc] = parse_documents(out)
    assert doc.url == "https://news.test/nobel" and doc.title == "Glück & the Nobel Prize"
    assert "The Wild Iris" in doc.text and "NAVIGATION_MENU_ITEM" not in doc.text
    assert "SECRET_SCRIPT_TEXT" not in doc.text and "color: red" not in doc.text
    assert sent["User-Agent"].startswith("agent-tools/") and sent["Host"] == "news.test"


def test_charset_from_meta_when_header_has_none(dns) -> None:
    html = (
        '<html><head><meta charset="windows-1252"><title>Caf\xe9</title></head>'
        "<body><p>Le caf\xe9 na\xefve r\xe9sum\xe9 \u201cquoted\u201d.</p></body></html>"
    )
    with responses.RequestsMock() as rsps:
        rsps.get("https://a.test/", body=html.encode("cp1252"), content_type="text/html")
        [doc] = parse_documents(TextScraper()("https://a.test/"))
    assert doc.title == "Café"
    assert "Le café naïve résumé “quoted”." in doc.text


def test_utf8_page_without_charset_is_not_mojibake(dns) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get("https://a.test/", body="<p>naïve résumé</p>".encode(), content_type="text/html")
        [doc] = parse_documents(TextScraper()("https://a.test/"))
    assert doc.text == "naïve résumé"


def test_byte_cap_stops_the_download(dns) -> None:
    body = b"<html><body><p>" + b"word " * 1_000_000 + b"</p></body></html>"  # 5 MB
    with responses.RequestsMock() as rsps:
        rsps.get("https://a.test/big", body=body, content_type="text/html")
        page = SafeFetcher(FetchConfig(max_bytes=10_000)).fetch("https://a.test/big")
    assert page.truncated and len(page.text) == 10_000


def test_byte_cap_counts_decompressed_bytes(dns) -> None:
    bomb = gzip.compress(b"a" * 5_000_000)
    with responses.RequestsMock() as rsps:
        rsps.get(
            "https://a.test/bomb",
            body=bomb,
            content_type="text/plain",
            headers={"Content-Encoding": "gzip"},
        )
        page = SafeFetcher(FetchConfig(max_bytes=50_000)).fetch("https://a.test/bomb")
    assert page.truncated and page.text == "a" * 50_000


def test_scraper_notes_the_cap_and_cuts_long_text(dns) -> None:
    body = "<html><body>" + "".join(f"<p>Paragraph {i} " + "x" * 80 + "</p>" for i in range(200))
    with responses.RequestsMock() as rsps:
        rsps.get("https://a.test/", body=body.encode(), content_type="text/html")
        [doc] = parse_documents(TextScraper(max_chars=1000, max_bytes=12_000)("https://a.test/"))
    assert len(doc.text) <= 1000
    assert "download stopped at 12000 bytes" in (doc.note or "")
    assert "text cut at 1000 characters" in (doc.note or "")


def test_total_budget_shared_between_pages(dns) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get("https://a.test/", body="short page", content_type="text/plain")
        rsps.get("https://b.test/", body=("long " * 2000), content_type="text/plain")
        rsps.get("https://c.test/", body=("other " * 2000), content_type="text/plain")
        out = TextScraper(max_chars=50_000, max_total_chars=3010)(
            "https://a.test/\nhttps://b.test/\nhttps://c.test/"
        )
    a, b, c = parse_documents(out)
    assert a.text == "short page" and a.note is None
    assert len(a.text) + len(b.text) + len(c.text) <= 3010
    assert len(b.text) > 1400 and len(c.text) > 1400
    assert "to fit the total of" in (b.note or "")


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("image/png", PNG),
        ("application/pdf", b"%PDF-1.7\n..."),
        ("application/octet-stream", b"\x00\x01\x02"),
        ("", PNG),  # no type given: sniffed as binary
        ("text/html", b"<html>\x00\x00binary lie</html>"),
    ],
)
def test_binary_content_is_skipped_with_a_note(dns, content_type: str, body: bytes) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get("https://a.test/file", body=body, content_type=content_type or None)
        with pytest.raises(SkippedContent, match="skipped"):
            SafeFetcher().fetch("https://a.test/file")


def test_partial_failure_keeps_the_good_pages(dns) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get("https://a.test/", body="<p>good page</p>", content_type="text/html")
        rsps.get("https://b.test/", status=404, body="nope", content_type="text/plain")
        rsps.get("https://c.test/logo.png", body=PNG, content_type="image/png")
        rsps.get("https://d.test/", body=requests.exceptions.ConnectionError("connection reset"))
        out = TextScraper()(
            "https://a.test/\nhttps://b.test/\nhttps://c.test/logo.png\nhttps://d.test/"
        )
    a, b, c, d = parse_documents(out)
    assert a.ok and a.text == "good page"
    assert b.error == "HTTP 404 Not Found"
    assert c.error and "image/png" in c.error
    assert d.error and "connection reset" in d.error


def test_every_url_failing_raises_with_each_reason(dns) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get("https://a.test/", status=500)
        rsps.get("https://b.test/", status=403)
        with pytest.raises(ToolError, match=r"(?s)HTTP 500.*HTTP 403"):
            TextScraper()("https://a.test/\nhttps://b.test/")


def test_input_urls_deduplicated_and_capped(dns) -> None:
    text = "\n".join(f"https://{h}.test/" for h in "abcdefg") + "\nhttps://a.test/#frag"
    with responses.RequestsMock() as rsps:
        for h in "abc":
            rsps.get(f"https://{h}.test/", body=f"page {h}", content_type="text/plain")
        docs = parse_documents(TextScraper(max_urls=3)(text))
    assert [d.url for d in docs] == ["https://a.test/", "https://b.test/", "https://c.test/"]
    assert "4 more URL(s) not loaded (limit 3)" in (docs[-1].note or "")


def test_input_without_urls_is_a_clear_error() -> None:
    with pytest.raises(ToolError, match="needs one or more http"):
        TextScraper()("no links here, only words")


def test_parse_url_list_edge_cases() -> None:
    text = (
        "1. <https://a.test/x>, and [b](https://b.test/y).\n"
        "- https://en.wikipedia.org/wiki/Python_(programming_language)\n"
        "file:///etc/passwd ftp://f.test/z https://a.test/x#top"
    )
    assert parse_url_list(text) == [
        "https://a.test/x",
        "https://b.test/y",
        "https://en.wikipedia.org/wiki/Python_(programming_language)",
        "file:///etc/passwd",
        "ftp://f.test/z",
    ]


def test_deadline_bounds_a_slow_drip_server(loopback) -> None:
    loopback.add("/slow", b"<p>" + b"x" * 400 + b"</p>", drip=0.02)  # 8 s in all
    fetcher = SafeFetcher(FetchConfig(allow_private=True, deadline=0.6, timeout=5))
    t0 = time.monotonic()
    with pytest.raises(ToolError, match="deadline"):
        fetcher.fetch(loopback.url("/slow"))
    assert time.monotonic() - t0 < 2.5


def test_socket_timeout_on_a_silent_server(loopback) -> None:
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(srv.accept()[0]), daemon=True).start()
    url = f"http://127.0.0.1:{srv.getsockname()[1]}/"
    t0 = time.monotonic()
    with pytest.raises(ToolError, match="timed out"):
        SafeFetcher(FetchConfig(allow_private=True, timeout=0.3, deadline=5)).fetch(url)
    assert time.monotonic() - t0 < 2
    for s in accepted:
        s.close()
    srv.close()


def test_classify_content_types() -> None:
    assert classify("text/html; charset=utf-8", b"") == "html"
    assert classify("application/xhtml+xml", b"") == "html"
    assert classify("application/rss+xml", b"") == "xml"
    assert classify("application/ld+json", b"") == "json"
    assert classify("text/markdown", b"") == "text"
    assert classify("text/css", b"") is None
    assert classify("", b"  <!DOCTYPE html><html>") == "html"
    assert classify("", b'{"a": 1}') == "json"
    assert classify("", b"plain words") == "text"


def test_user_agent_carries_a_contact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_CONTACT", "https://example.org/bot")
    assert "+https://example.org/bot" in default_user_agent()
    assert "+mailto:me@example.org" in default_user_agent("mailto:me@example.org")


from hypothesis import given, settings  # noqa: E402 - fuzz tests kept at the end
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_parse_url_list_fuzz(text: str) -> None:
    urls = parse_url_list(text)
    assert len(urls) == len(set(urls))
    for url in urls:
        assert "://" in url and not any(c.isspace() for c in url)
        assert url in text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.binary(max_size=200))
def test_classify_fuzz(content_type: str, head: bytes) -> None:
    kind = classify(content_type, head)
    assert kind in (None, "html", "xml", "json", "text")
    if b"\x00" in head[:1024]:
        assert kind is None
