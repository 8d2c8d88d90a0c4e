"""Decode a response body to text: BOM, then the declared charset, then the bytes themselves.

``requests`` assumes ISO-8859-1 for any ``text/*`` without a charset, which turns UTF-8 pages into
mojibake ("naÃ¯ve"). The order here follows browsers: a byte-order mark wins, then the charset of
the Content-Type header, then a ``<meta>`` / XML declaration in the first bytes, then strict UTF-8,
then statistical detection (charset_normalizer, which requests already installs), then cp1252.
"""

from __future__ import annotations

import codecs
import re

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Web labels whose real decoder differs (WHATWG Encoding Standard): latin-1 means windows-1252.
_ALIASES = {
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
}
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([\w.:-]+)", re.IGNORECASE)
_XML_DECL = re.compile(rb"^<\?xml[^>]+encoding\s*=\s*[\"']([\w.:-]+)[\"']")
_SNIFF_BYTES = 4096


def _codec(label: str | None) -> str | None:
    """A Python codec name for a charset label, or None for unknown labels."""
    if not label:
        return None
    label = label.strip().lower()
    label = _ALIASES.get(label, label)
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    # A page cannot really be UTF-16 if it declares so in ASCII-compatible bytes.
    return None if name.startswith("utf-16") or name.startswith("utf-32") else name


def charset_from_content_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    m = _HEADER_CHARSET.search(content_type)
    return _codec(m.group(1)) if m else None


def declared_charset(body: bytes) -> str | None:
    """The charset a document declares about itself (``<meta charset>``, http-equiv, XML decl)."""
    head = body[:_SNIFF_BYTES]
    m = _XML_DECL.match(head.lstrip()) or _META_CHARSET.search(head)
    return _codec(m.group(1).decode("ascii", "replace")) if m else None


def decode_body(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """``(text, codec_used)`` for ``body`` served with ``content_type``; never raises."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(name, errors="replace"), name
    for declared in (charset_from_content_type(content_type), declared_charset(body)):
        if declared:
            return body.decode(declared, errors="replace"), declared
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        # A UTF-8 page cut mid-character by the byte cap still counts as UTF-8.
        if exc.start >= len(body) - 3 and exc.reason == "unexpected end of data":
            return body.decode("utf-8", errors="replace"), "utf-8"
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(body[:200_000]).best()
        if best is not None and _codec(best.encoding):
            name = _codec(best.encoding) or "cp1252"
            return body.decode(name, errors="replace"), name
    except ImportError:  # pragma: no cover - requests installs it
        pass
    return body.decode("cp1252", errors="replace"), "cp1252"
