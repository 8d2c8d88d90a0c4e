from __future__ import annotations

import codecs

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.tools.charset import declared_charset, decode_body
from agent.tools.extract import extract, html_title, soup_text

RESUME = "naïve résumé – café"


def test_header_charset_wins() -> None:
    text, enc = decode_body(RESUME.encode("cp1252", "replace"), "text/html; charset=windows-1252")
    assert text.startswith("naïve résumé") and enc == "cp1252"


def test_utf8_without_any_charset_is_not_mojibake() -> None:
    text, enc = decode_body(RESUME.encode("utf-8"), "text/html")
    assert text == RESUME and enc == "utf-8"


def test_meta_charset_used_when_header_has_none() -> None:
    page = f'<html><head><meta charset="iso-8859-15"></head><body>{RESUME[:12]}</body></html>'
    text, enc = decode_body(page.encode("iso-8859-15"), "text/html")
    assert "naïve résumé" in text and enc == "iso8859-15"


def test_http_equiv_meta_and_xml_declaration() -> None:
    head = b'<meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">'
    assert declared_charset(head) == "shift_jis"
    assert declared_charset(b'<?xml version="1.0" encoding="koi8-r"?><a/>') == "koi8-r"


def test_latin1_label_means_windows_1252() -> None:
    text, _ = decode_body(b"\x93quoted\x94", "text/plain; charset=ISO-8859-1")
    assert text == "\u201cquoted\u201d"


def test_bom_beats_everything() -> None:
    text, enc = decode_body(codecs.BOM_UTF8 + "é".encode(), "text/html; charset=cp1252")
    assert text == "é" and enc == "utf-8"
    text, enc = decode_body(codecs.BOM_UTF16_LE + "hé".encode("utf-16-le"), None)
    assert text == "hé"


def test_unknown_labels_are_ignored() -> None:
    text, enc = decode_body("é".encode(), "text/html; charset=x-no-such-charset")
    assert text == "é" and enc == "utf-8"


def test_utf8_cut_mid_character_by_the_byte_cap() -> None:
    data = "ab€".encode()[:-1]
    text, enc = decode_body(data, "text/plain")
    assert enc == "utf-8" and text.startswith("ab")


def test_undeclared_legacy_bytes_fall_back_to_detection() -> None:
    data = ("Die Größe der Straße ist über dem Maß. " * 20).encode("cp1252")
    text, _ = decode_body(data, "text/plain")
    assert "Größe" in text and "Straße" in text


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=400),
    st.sampled_from(
        [
            None,
            "",
            "text/html",
            "text/plain; charset=utf-8",
            "text/html; charset=bogus",
            'charset="utf-16"',
        ]
    ),
)
def test_decode_never_raises(data: bytes, content_type: str | None) -> None:
    text, enc = decode_body(data, content_type)
    assert isinstance(text, str) and codecs.lookup(enc)


ARTICLE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Glück &amp; the Nobel Prize</title>
<style>body { color: red } .nav { display: none }</style>
<script>var tracking = "SECRET_SCRIPT_TEXT"; window.dataLayer = [];</script>
</head><body>
<header><div class="logo">NewsSite</div></header>
<nav><ul><li><a href="/">Home</a></li><li><a href="/world">World</a></li>
<li><a href="/sports">NAVIGATION_MENU_ITEM</a></li></ul></nav>
<main><article>
<h1>Louise Glück wins the Nobel Prize in Literature</h1>
<p>The American poet Louise Glück was awarded the 2020 Nobel Prize in Literature for her
unmistakable poetic voice that with austere beauty makes individual existence universal.</p>
<p>Her collection <em>The Wild Iris</em>, published in 1992, won the Pulitzer Prize and is
often described as her most famous work. It is a book-length sequence of poems spoken by
flowers, a gardener and a god.</p>
<p>Glück was born in New York City in 1943 and taught at Yale University for many years.</p>
</article></main>
<aside>Related: SIDEBAR_LINK_TEXT</aside>
<footer>Copyright FOOTER_TEXT 2020</footer>
<noscript>Enable JavaScript please</noscript>
</body></html>"""


def test_main_text_of_a_real_world_shaped_article() -> None:
    page = extract(ARTICLE, "html", "https://news.test/nobel")
    assert page.title == "Glück & the Nobel Prize"
    assert "The Wild Iris" in page.text and "born in New York City" in page.text
    for boilerplate in (
        "SECRET_SCRIPT_TEXT",
        "color: red",
        "NAVIGATION_MENU_ITEM",
        "FOOTER_TEXT",
        "SIDEBAR_LINK_TEXT",
        "Enable JavaScript",
    ):
        assert boilerplate not in page.text


def test_fallback_keeps_short_pages_and_drops_boilerplate() -> None:
    html = (
        "<html><body><nav>MENU</nav><script>JS()</script><div>Short <b>note</b></div>"
        "<p>Second</p><!-- COMMENT --></body></html>"
    )
    assert soup_text(html) == "Short note\nSecond"
    assert extract(html, "html").text == "Short note\nSecond"


def test_title_edge_cases() -> None:
    assert html_title("<TITLE>\n A <b>b</b>  c </TITLE>") == "A b c"
    assert html_title("<html><body>no title</body></html>") is None
    assert html_title("<title></title>") is None


def test_json_xml_and_text_kinds() -> None:
    assert extract('{"a": [1, 2]}', "json").text == '{\n "a": [\n  1,\n  2\n ]\n}'
    assert extract("{not json", "json").text == "{not json"
    xml = extract("<?xml version='1.0'?><rss><item><title>One</title></item></rss>", "xml").text
    assert xml == "One"
    assert extract("  a \t b\n\n\n\nc  ", "text").text == "a b\n\nc"


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
def test_html_extraction_never_raises(html: str) -> None:
    page = extract(html, "html")
    assert isinstance(page.text, str)


RU_PAGE = """<!DOCTYPE html><html><head>
<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">
<title>Нобелевская премия</title>
<script type="application/ld+json">{"@type": "NewsArticle", "headline": "JSONLD_HEADLINE"}</script>
<link rel="stylesheet" href="/site.css"></head>
<body><div id="cookie-banner">COOKIE_BANNER Мы используем cookies.</div>
<nav class="menu"><a href="/">Главная</a> | <a href="/news">MENU_NEWS</a></nav>
<div class="content"><article>
<h1>Луиза Глюк получила Нобелевскую премию</h1>
<p>Американская поэтесса Луиза Глюк стала лауреатом Нобелевской премии по литературе 2020 года
«за безошибочный поэтический голос, который своей строгой красотой делает индивидуальное
существование универсальным».</p>
<p>Её самый известный сборник «Дикий ирис» был удостоен Пулитцеровской премии в 1993 году.
Глюк много лет преподавала в Йельском университете и опубликовала более десяти сборников.</p>
</article></div>
<aside class="sidebar">SIDEBAR Читайте также</aside>
<footer>FOOTER © 2020</footer></body></html>"""


def test_cyrillic_page_declared_by_http_equiv() -> None:
    from agent.tools.charset import decode_body

    html, enc = decode_body(RU_PAGE.encode("cp1251"), "text/html")
    assert enc == "cp1251"
    page = extract(html, "html", "https://ru.test/")
    assert page.title == "Нобелевская премия"
    assert "Дикий ирис" in page.text and "Йельском университете" in page.text
    for junk in ("JSONLD_HEADLINE", "COOKIE_BANNER", "MENU_NEWS", "SIDEBAR", "FOOTER"):
        assert junk not in page.text
