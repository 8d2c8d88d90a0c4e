"""Which extractor ran: trafilatura on real articles, and a loud, once-only warning when it is
missing instead of a silent fallback on every page."""

from __future__ import annotations

import importlib
import sys
import warnings
from importlib import metadata
from pathlib import Path

import pytest

from agent.tools import extract as extract_module
from agent.tools.extract import ExtractorUnavailableWarning, extract
from tests.tools.test_charset_extract import ARTICLE

REPO = Path(__file__).resolve().parent.parent.parent
FIXTURE_WEB = REPO / "examples" / "fixture_web"


def test_trafilatura_is_the_extractor_that_runs_on_the_fixture_article():
    page = extract(ARTICLE, "html", "https://news.test/nobel")
    assert page.extractor == "trafilatura"
    assert "The Wild Iris" in page.text
    assert extract_module.extractor_problem() is None


@pytest.mark.parametrize(
    "path",
    sorted(str(p.relative_to(FIXTURE_WEB)) for p in FIXTURE_WEB.glob("*/*.html")),
)
def test_the_example_webs_articles_are_extracted_by_trafilatura(path):
    page = extract((FIXTURE_WEB / path).read_text(encoding="utf-8"), "html", "http://x/")
    assert page.extractor == "trafilatura" and page.text


def test_a_link_list_page_goes_to_the_fallback_and_says_so():
    page = extract((FIXTURE_WEB / "index.html").read_text(encoding="utf-8"), "html")
    assert page.extractor == "beautifulsoup" and page.text


def test_the_extractors_imports_are_installed_dependencies():
    """A fresh install must bring everything trafilatura imports (jusText needs lxml_html_clean)."""
    for module in ("trafilatura", "justext", "lxml_html_clean", "bs4", "lxml"):
        importlib.import_module(module)
    requires = " ".join(metadata.requires("agent") or []).lower()
    for dist in ("trafilatura", "lxml_html_clean", "beautifulsoup4", "lxml"):
        assert dist in requires, f"{dist} is not a declared dependency of the project"


@pytest.fixture
def broken_trafilatura(monkeypatch):
    """trafilatura fails to import, as it did with lxml_html_clean missing; state is reset."""
    monkeypatch.setitem(sys.modules, "trafilatura", None)  # makes `import trafilatura` raise
    monkeypatch.setattr(extract_module, "_trafilatura", None)
    monkeypatch.setattr(extract_module, "_import_error", None)


def test_missing_trafilatura_is_reported_once_and_loudly(broken_trafilatura):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = extract(ARTICLE, "html")
        second = extract(ARTICLE, "html")
    reports = [w for w in caught if issubclass(w.category, ExtractorUnavailableWarning)]
    assert len(reports) == 1
    message = str(reports[0].message)
    assert "trafilatura cannot be imported" in message and "lxml_html_clean" in message
    assert first.extractor == second.extractor == "beautifulsoup"
    assert "The Wild Iris" in first.text  # degraded, not lost
    assert "trafilatura" in (extract_module.extractor_problem() or "")
