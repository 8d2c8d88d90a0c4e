"""Fetch one model-chosen URL safely: checked and pinned address, manual redirects, caps.

Every hop (the URL and each redirect target) goes through ``netguard.check_url``; the connection
then goes to the address that was checked (``PinnedAdapter``) while the Host header, TLS SNI and
certificate verification keep the host name. The body is streamed with a byte cap and a total
deadline (a socket timeout alone does not bound a server that drips one byte at a time). Only
text-like bodies (HTML, plain text, XML, JSON) are read; others are refused before download.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from agent.errors import ToolError
from agent.tools.charset import decode_body
from agent.tools.netguard import Resolver, Target, check_url


def default_user_agent(contact: str | None = None) -> str:
    """``agent-tools/0.1 (reWOO tool runtime; +<contact>)``: sites ask bots for a contact URL.

    The contact comes from ``contact`` or the ``AGENT_CONTACT`` environment variable (a URL or
    e-mail address of whoever runs the agent).
    """
    contact = contact or os.environ.get("AGENT_CONTACT", "").strip()
    suffix = f"; +{contact}" if contact else "; contact: set AGENT_CONTACT"
    return f"agent-tools/0.1 (reWOO tool runtime{suffix}) python-requests/{requests.__version__}"


_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024


class FetchError(ToolError):
    """A URL could not be fetched (HTTP error, timeout, connection, too many redirects)."""


class SkippedContent(FetchError):
    """The URL answered with a body that is not text (image, PDF, archive...)."""


class DeadlineExceeded(FetchError):
    """The URL took longer than the total time allowed for it."""


@dataclass(frozen=True)
class FetchConfig:
    """Limits for one fetch; ``timeout`` bounds each socket wait, ``deadline`` the whole URL."""

    timeout: float = 10.0
    deadline: float = 20.0
    max_bytes: int = 2_000_000
    max_redirects: int = 5
    user_agent: str = field(default_factory=default_user_agent)
    allow_private: bool = False
    verify: bool | str = True


@dataclass
class FetchedPage:
    url: str
    final_url: str
    status: int
    content_type: str  # media type without parameters ('' when the server sent none)
    kind: str  # 'html', 'xml', 'json' or 'text'
    text: str
    encoding: str
    truncated: bool = False  # the byte cap was reached
    redirects: list[str] = field(default_factory=list)


class PinnedAdapter(HTTPAdapter):
    """Connects to one checked address for one host name, keeping Host, SNI and cert checks.

    Instances are made per hop and never shared, so a connection opened for one host name
    cannot be reused for another that happens to share its address.
    """

    def __init__(self, target: Target, address: str):
        self.target = target
        self.address = address
        super().__init__(pool_connections=1, pool_maxsize=1, max_retries=0)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[Any, Any]:  # the stubs' private TypedDicts, as requests returns them
        stock_params, stock_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        host = (urlsplit(request.url or "").hostname or "").rstrip(".")
        if host != self.target.host:  # only the hop this adapter was made for
            raise FetchError(f"internal: pinned adapter for {self.target.host} asked for {host}")
        host_params = dict(stock_params, host=self.address)
        pool_kwargs = dict(stock_kwargs)
        if host_params.get("scheme") == "https":
            pool_kwargs.update(server_hostname=self.target.host, assert_hostname=self.target.host)
        return host_params, pool_kwargs


def classify(content_type: str, head: bytes) -> str | None:
    """'html', 'xml', 'json', 'text' or None (not text) from the media type and first bytes."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if b"\x00" in head[:1024]:
        return None  # binary, whatever the header says
    if mime in ("text/html", "application/xhtml+xml"):
        return "html"
    if mime in ("text/xml", "application/xml") or mime.endswith("+xml"):
        return "xml"
    if mime in ("application/json", "text/json") or mime.endswith("+json"):
        return "json"
    if mime in ("text/css", "text/javascript", "application/javascript"):
        return None
    if mime.startswith("text/"):
        return "text"
    if mime:
        return None
    start = head.lstrip()[:512].lower()  # no Content-Type: sniff
    if start.startswith(b"<?xml"):
        return "html" if b"<html" in start else "xml"
    if start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in start:
        return "html"
    if start[:1] in (b"{", b"["):
        return "json"
    return "text"


class SafeFetcher:
    """Fetches single URLs under a ``FetchConfig``; safe to share between threads."""

    def __init__(self, config: FetchConfig | None = None, *, resolver: Resolver | None = None):
        self.config = config or FetchConfig()
        self.resolver = resolver

    def fetch(self, url: str) -> FetchedPage:
        cfg = self.config
        deadline = time.monotonic() + cfg.deadline
        current = url.strip()
        redirects: list[str] = []
        while True:
            target = check_url(
                current,
                allow_private=cfg.allow_private,
                resolver=self.resolver,
                timeout=max(0.0, deadline - time.monotonic()),
            )
            session, resp = self._send(target, deadline)
            try:
                if resp.status_code in _REDIRECTS and resp.headers.get("Location"):
                    if len(redirects) >= cfg.max_redirects:
                        raise FetchError(
                            f"{url}: more than {cfg.max_redirects} redirects "
                            f"(last to {resp.headers['Location']})"
                        )
                    current = urljoin(current, resp.headers["Location"].strip())
                    redirects.append(current)
                    continue
                if not 200 <= resp.status_code < 300:
                    raise FetchError(f"HTTP {resp.status_code} {resp.reason or ''}".strip())
                return self._read(url, current, resp, redirects, deadline)
            finally:
                resp.close()
                session.close()

    def _send(self, target: Target, deadline: float) -> tuple[requests.Session, requests.Response]:
        cfg = self.config
        last_error: Exception | None = None
        for address in target.addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            session = requests.Session()
            session.trust_env = False  # an environment proxy would resolve the host itself
            adapter = PinnedAdapter(target, address)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            headers = {
                "User-Agent": cfg.user_agent,
                "Host": target.host_header,
                "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,"
                "application/json;q=0.8,*/*;q=0.1",
                "Accept-Encoding": "gzip, deflate",
            }
            wait = min(cfg.timeout, remaining)
            try:
                resp = session.get(
                    target.url,
                    headers=headers,
                    stream=True,
                    allow_redirects=False,
                    timeout=(wait, wait),
                    verify=cfg.verify,
                )
                return session, resp
            except requests.RequestException as exc:  # try the host's next address, if any
                session.close()
                last_error = exc
        if last_error is None:
            raise DeadlineExceeded(f"{target.url}: no time left (deadline {cfg.deadline:g} s)")
        if isinstance(last_error, requests.Timeout):
            raise FetchError(f"{target.url}: timed out after {cfg.timeout:g} s") from last_error
        raise FetchError(
            f"{target.url}: request failed: {type(last_error).__name__}: {last_error}"
        ) from last_error

    def _read(
        self,
        url: str,
        final_url: str,
        resp: requests.Response,
        redirects: list[str],
        deadline: float,
    ) -> FetchedPage:
        cfg = self.config
        content_type = resp.headers.get("Content-Type", "")
        mime = content_type.split(";", 1)[0].strip().lower()
        if mime and classify(content_type, b"") is None:
            raise SkippedContent(
                f"skipped: content type {mime} is not text "
                "(only HTML, plain text, XML and JSON are read)"
            )
        body = bytearray()
        truncated = False
        try:
            while True:
                if time.monotonic() > deadline:
                    raise DeadlineExceeded(
                        f"gave up after the {cfg.deadline:g} s deadline ({len(body)} bytes read)"
                    )
                chunk = resp.raw.read1(
                    min(_CHUNK, cfg.max_bytes - len(body) + 1), decode_content=True
                )
                if not chunk:
                    break
                body += chunk
                if len(body) > cfg.max_bytes:
                    del body[cfg.max_bytes :]
                    truncated = True
                    break
        except FetchError:
            raise
        except Exception as exc:  # noqa: BLE001 - urllib3/socket errors while streaming
            if time.monotonic() > deadline:
                raise DeadlineExceeded(f"gave up after the {cfg.deadline:g} s deadline") from exc
            raise FetchError(f"reading the body failed: {type(exc).__name__}: {exc}") from exc
        kind = classify(content_type, bytes(body[:1024]))
        if kind is None:
            raise SkippedContent(
                f"skipped: the body is binary, not text (content type {mime or 'not given'})"
            )
        text, encoding = decode_body(bytes(body), content_type)
        return FetchedPage(
            url=url,
            final_url=final_url,
            status=resp.status_code,
            content_type=mime,
            kind=kind,
            text=text,
            encoding=encoding,
            truncated=truncated,
            redirects=redirects,
        )
