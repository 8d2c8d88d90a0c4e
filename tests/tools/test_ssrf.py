"""SSRF: every local target is refused with default settings, and no request reaches it."""

from __future__ import annotations

import pytest
import responses

from agent.errors import ToolError
from agent.tools.documents import parse_documents
from agent.tools.fetch import FetchConfig, SafeFetcher
from agent.tools.netguard import BlockedURLError
from agent.tools.scraper import TextScraper

PAGE = "<html><body><p>secret internal page</p></body></html>"

REFUSED = [
    "http://127.0.0.1/admin",
    "http://127.0.0.1:8080/",
    "http://10.0.0.5/",
    "http://172.16.0.1/",
    "http://172.31.0.9/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://100.100.100.200/latest/meta-data/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://localhost/",
    "http://internal.example.com/",  # resolves to a private address (fake DNS below)
]


@pytest.fixture
def dns(fake_dns):
    fake_dns["internal.example.com"] = "10.1.2.3"
    fake_dns["public.example.com"] = "93.184.216.34"
    return fake_dns


@pytest.mark.parametrize("url", REFUSED)
def test_local_targets_are_refused_and_never_requested(url: str, dns) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(url, body=PAGE, content_type="text/html")
        with pytest.raises(ToolError, match="refused"):
            TextScraper()(url)
        assert len(rsps.calls) == 0


def test_file_url_is_refused(dns) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        with pytest.raises(ToolError, match="only http and https"):
            TextScraper()("file:///etc/passwd")
        assert len(rsps.calls) == 0


def test_redirect_from_public_to_private_is_refused(dns) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(
            "https://public.example.com/go",
            status=302,
            headers={"Location": "http://169.254.169.254/latest/meta-data/"},
        )
        rsps.get(
            "http://169.254.169.254/latest/meta-data/", body="ami-id", content_type="text/plain"
        )
        with pytest.raises(ToolError, match="169.254.169.254"):
            TextScraper()("https://public.example.com/go")
        assert [c.request.url for c in rsps.calls] == ["https://public.example.com/go"]


def test_relative_redirect_to_a_private_name_is_refused(dns) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(
            "https://public.example.com/a",
            status=301,
            headers={"Location": "//internal.example.com/x"},
        )
        with pytest.raises(BlockedURLError):
            SafeFetcher().fetch("https://public.example.com/a")
        assert len(rsps.calls) == 1


def test_redirect_to_file_scheme_is_refused(dns) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(
            "https://public.example.com/a", status=307, headers={"Location": "file:///etc/passwd"}
        )
        with pytest.raises(BlockedURLError, match="only http and https"):
            SafeFetcher().fetch("https://public.example.com/a")


def test_more_than_five_redirects_are_refused(dns) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        for i in range(7):
            rsps.get(
                f"https://public.example.com/r{i}", status=302, headers={"Location": f"/r{i + 1}"}
            )
        with pytest.raises(ToolError, match="more than 5 redirects"):
            SafeFetcher().fetch("https://public.example.com/r0")
        assert len(rsps.calls) == 6


def test_redirects_within_the_limit_are_followed_and_each_hop_resolved(dns) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get("https://public.example.com/old", status=301, headers={"Location": "/new"})
        rsps.get(
            "https://public.example.com/new", body="<p>moved here</p>", content_type="text/html"
        )
        page = SafeFetcher().fetch("https://public.example.com/old")
    assert page.final_url == "https://public.example.com/new"
    assert page.redirects == ["https://public.example.com/new"]
    assert dns.lookups == ["public.example.com", "public.example.com"]


def test_one_refused_url_does_not_stop_the_others(dns) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(
            "https://public.example.com/ok", body="<p>public text</p>", content_type="text/html"
        )
        out = TextScraper()("http://10.0.0.1/\nhttps://public.example.com/ok")
        assert [c.request.url for c in rsps.calls] == ["https://public.example.com/ok"]
    docs = parse_documents(out)
    assert docs[0].url == "http://10.0.0.1/" and "refused" in (docs[0].error or "")
    assert docs[1].text == "public text" and docs[1].ok


# --- real sockets: nothing reaches a loopback server, and the connection is pinned ------------


def test_real_loopback_server_receives_nothing_by_default(loopback) -> None:
    loopback.add("/", PAGE)
    for url in (
        loopback.url("/"),
        loopback.url("/", host="[::ffff:127.0.0.1]"),
        loopback.url("/", host="localhost"),
    ):
        with pytest.raises(ToolError, match="refused"):
            TextScraper()(url)
    assert loopback.requests == []


def test_connection_goes_to_the_checked_address_with_the_host_name_kept(loopback, fake_dns) -> None:
    # "pinned.test" exists only in the fake resolver: the request can only arrive if the
    # connection went to the address the check resolved, not to a second DNS lookup.
    fake_dns["pinned.test"] = "127.0.0.1"
    loopback.add("/page", PAGE)
    page = SafeFetcher(FetchConfig(allow_private=True)).fetch(
        loopback.url("/page", host="pinned.test")
    )
    assert page.text == PAGE
    assert loopback.requests[0][1]["Host"] == f"pinned.test:{loopback.port}"
    assert fake_dns.lookups == ["pinned.test"]


def test_real_host_name_resolving_to_loopback_is_refused(loopback, fake_dns) -> None:
    fake_dns["pinned.test"] = "127.0.0.1"
    loopback.add("/", PAGE)
    with pytest.raises(BlockedURLError, match="127.0.0.1"):
        SafeFetcher().fetch(loopback.url("/", host="pinned.test"))
    assert loopback.requests == []


# --- TLS: the pinned connection still sends SNI and verifies the certificate for the host name --


def _make_cert(tmp_path, host: str):
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available to make a test certificate")
    cert, key = tmp_path / f"{host}.pem", tmp_path / f"{host}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={host}",
            "-addext",
            f"subjectAltName=DNS:{host}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_server(tmp_path):
    import http.server
    import ssl
    import threading

    cert, key = _make_cert(tmp_path, "pinned.test")
    seen_sni: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = f"tls ok for {self.headers['Host']}".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.sni_callback = lambda sock, name, c: seen_sni.append(name)
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], cert, seen_sni
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_tls_to_pinned_address_uses_sni_and_verifies_the_host_name(tls_server, fake_dns) -> None:
    port, cert, seen_sni = tls_server
    fake_dns["pinned.test"] = "127.0.0.1"
    fetcher = SafeFetcher(FetchConfig(allow_private=True, verify=str(cert)))
    page = fetcher.fetch(f"https://pinned.test:{port}/")
    assert page.text == f"tls ok for pinned.test:{port}"
    assert seen_sni == ["pinned.test"]


def test_tls_certificate_for_another_name_is_rejected(tls_server, fake_dns) -> None:
    port, cert, _ = tls_server
    fake_dns["other.test"] = "127.0.0.1"  # same address, but the certificate is for pinned.test
    with pytest.raises(ToolError, match="doesn.t match .pinned.test."):
        SafeFetcher(FetchConfig(allow_private=True, verify=str(cert))).fetch(
            f"https://other.test:{port}/"
        )


def test_ipv6_address_is_pinned_too(fake_dns) -> None:
    import http.server
    import socket
    import threading

    class V6Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = self.headers["Host"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    try:
        httpd = V6Server(("::1", 0), Handler)
    except OSError:
        pytest.skip("no IPv6 loopback")
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        port = httpd.server_address[1]
        fake_dns["six.test"] = "::1"
        page = SafeFetcher(FetchConfig(allow_private=True)).fetch(f"http://six.test:{port}/")
        assert page.text == f"six.test:{port}"
        with pytest.raises(BlockedURLError):
            SafeFetcher().fetch(f"http://six.test:{port}/")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_next_checked_address_is_tried_when_one_refuses(loopback, fake_dns) -> None:
    # The server listens on 127.0.0.1 only; 127.0.0.3 refuses the connection.
    fake_dns["multi.test"] = ["127.0.0.3", "127.0.0.1"]
    loopback.add("/", "<p>second address</p>")
    page = SafeFetcher(FetchConfig(allow_private=True)).fetch(loopback.url("/", host="multi.test"))
    assert page.text == "<p>second address</p>"
    assert loopback.requests[0][1]["Host"] == f"multi.test:{loopback.port}"
