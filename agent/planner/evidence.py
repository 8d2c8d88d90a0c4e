"""Evidence substitution: one pass over the input, with a size cap on each pasted value.

One pass (``re.sub`` with a lookup) instead of chained ``str.replace``: ``:evidence1:`` is a prefix
of ``:evidence10:``, and a tool's output may itself contain ``:evidence2:`` -- pasted text is never
scanned again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from agent.planner.plan import REF_RE, RefKey, ref_key

DEFAULT_MAX_EVIDENCE_CHARS = 24_000

_URL_RE = re.compile(r"https?://[^\s<>\"'\]\)\[]+")


def cap_evidence(text: str, max_chars: int | None = DEFAULT_MAX_EVIDENCE_CHARS) -> str:
    """``text`` cut to ``max_chars`` with a visible marker saying how much was dropped."""
    if max_chars is None or len(text) <= max_chars:
        return text
    dropped = len(text) - max_chars
    return f"{text[:max_chars]}\n[... truncated {dropped} characters ...]"


def substitute(
    text: str, values: Mapping[RefKey, str], max_chars: int | None = DEFAULT_MAX_EVIDENCE_CHARS
) -> str:
    """Replace each reference in ``text`` by its (capped) value; unknown references stay as
    written."""

    def paste(m: re.Match[str]) -> str:
        value = values.get(ref_key(m))
        return m.group(0) if value is None else cap_evidence(value, max_chars)

    return REF_RE.sub(paste, text)


def only_reference(text: str) -> RefKey | None:
    """The key when ``text`` is a single reference and nothing else (trailing '.' allowed)."""
    m = REF_RE.fullmatch(text.strip().rstrip(".").strip())
    return ref_key(m) if m else None


def find_urls(text: str) -> list[str]:
    """http(s) URLs in ``text``, in order, each once, without trailing punctuation."""
    seen: dict[str, None] = {}
    for m in _URL_RE.finditer(text):
        seen.setdefault(m.group(0).rstrip(".,;:!?"), None)
    return list(seen)
