"""Small deterministic tools for CLI and cassette tests (loaded with --tool MODULE:CALLABLE)."""

from __future__ import annotations

from agent.errors import ToolError


def Search(text: str) -> str:
    """Finds pages about the input."""
    slug = "-".join(text.lower().split())[:40]
    return f"Result about {text}\nhttps://pages.example/{slug}"


def Reader(text: str) -> str:
    """Reads the pages named in the input."""
    return f"Page text of {len(text.splitlines())} link(s): the answer is 42."


def Broken(text: str) -> str:
    """Always fails."""
    raise ToolError("the service is down")
