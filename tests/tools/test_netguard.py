from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ToolError
from agent.tools.netguard import BlockedURLError, check_url, embedded_ipv4, is_public_address

NON_PUBLIC = [
    "127.0.0.1",
    "127.255.0.9",
    "0.0.0.0",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "100.100.100.200",
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::7f00:1",
    "2002:7f00:1::1",
    "fd00:ec2::254",
    "fe80::1",
    "ff02::1",
    "2001:db8::1",
    "::127.0.0.1",
    "fe80::1%eth0",
]
PUBLIC = [
    "93.184.216.34",
    "1.1.1.1",
    "8.8.8.8",
    "172.32.0.1",
    "100.128.0.1",
    "2606:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:93.184.216.34",
    "64:ff9b::5db8:d822",
]


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert is_public_address(address)


def test_garbage_is_not_public() -> None:
    assert not is_public_address("not an ip")
    assert not is_public_address("")


def test_embedded_ipv4_forms() -> None:
    assert embedded_ipv4(ipaddress.ip_address("::ffff:10.1.2.3")) == ipaddress.ip_address(
        "10.1.2.3"
    )
    assert embedded_ipv4(ipaddress.ip_address("64:ff9b::a9fe:a9fe")) == ipaddress.ip_address(
        "169.254.169.254"
    )
    assert embedded_ipv4(ipaddress.ip_address("2606:4700::1111")) is None
    assert embedded_ipv4(ipaddress.ip_address("1.2.3.4")) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.1.2.3/admin",
        "http://172.16.5.4/",
        "http://192.168.0.1:8080/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]:80/",
        "http://localhost/",
        "http://api.localhost:8000/",
        "http://0.0.0.0/",
    ],
)
def test_check_url_refuses_local_targets_without_resolving(url: str, fake_dns) -> None:
    with pytest.raises(BlockedURLError):
        check_url(url)
    assert fake_dns.lookups == []  # IP literals and local names never reach DNS


def test_hostname_resolving_to_private_address_is_refused(fake_dns) -> None:
    fake_dns["intranet.example.com"] = "10.0.0.7"
    with pytest.raises(BlockedURLError, match="10.0.0.7"):
        check_url("https://intranet.example.com/")


def test_any_private_address_among_several_refuses(fake_dns) -> None:
    fake_dns["mixed.example.com"] = ["93.184.216.34", "127.0.0.1"]
    with pytest.raises(BlockedURLError, match="127.0.0.1"):
        check_url("https://mixed.example.com/")


def test_public_host_passes_with_its_addresses(fake_dns) -> None:
    fake_dns["example.com"] = ["93.184.216.34", "2606:2800:220:1::1"]
    target = check_url("https://Example.COM:8443/a?b#c")
    assert target.host == "example.com" and target.port == 8443 and target.scheme == "https"
    assert target.addresses == ("93.184.216.34", "2606:2800:220:1::1")
    assert target.host_header == "example.com:8443"


@pytest.mark.parametrize(
    "url, reason",
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://example.com/x", "only http and https"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("/relative/path", "relative"),
        ("http://user:pass@example.com/", "credentials"),
        ("http:///nohost", "no host"),
        ("http://example.com:99999/", "malformed"),
    ],
)
def test_malformed_or_forbidden_urls(url: str, reason: str, fake_dns) -> None:
    with pytest.raises(BlockedURLError, match=reason):
        check_url(url)


def test_allow_private_still_resolves_and_checks_form(fake_dns) -> None:
    fake_dns["box.lan"] = "192.168.1.5"
    assert check_url("http://box.lan/", allow_private=True).addresses == ("192.168.1.5",)
    assert check_url("http://127.0.0.1:8000/", allow_private=True).addresses == ("127.0.0.1",)
    with pytest.raises(BlockedURLError):
        check_url("file:///etc/passwd", allow_private=True)


def test_unresolvable_host_is_a_tool_error(fake_dns) -> None:
    with pytest.raises(ToolError, match="cannot resolve"):
        check_url("https://nowhere.invalid/")


def test_idn_host_is_checked_in_ascii_form(fake_dns) -> None:
    fake_dns["xn--bcher-kva.example"] = "93.184.216.34"
    assert check_url("https://bücher.example/").host == "xn--bcher-kva.example"


def test_ipv6_host_header_has_brackets(fake_dns) -> None:
    target = check_url("http://[2606:4700::1111]:8080/")
    assert target.host_header == "[2606:4700::1111]:8080"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))
def test_every_public_verdict_is_a_global_unicast_address(addr) -> None:
    if is_public_address(str(addr)):
        assert addr.is_global and not addr.is_multicast and not addr.is_private
        assert not addr.is_loopback and not addr.is_link_local
        assert addr not in ipaddress.ip_network("100.64.0.0/10") if addr.version == 4 else True


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses(v=4))
def test_mapped_and_nat64_forms_agree_with_ipv4(addr) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{addr}")
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(addr))
    assert is_public_address(mapped) == is_public_address(addr) == is_public_address(nat64)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_check_url_fuzz_only_raises_tool_errors(text: str) -> None:
    def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    try:
        target = check_url(text, resolver=resolver)
    except ToolError:
        return
    assert target.scheme in ("http", "https") and target.host
    assert target.addresses and all(is_public_address(a) for a in target.addresses)


def test_slow_dns_is_bounded_by_the_timeout() -> None:
    import time

    def slow(host: str, port: int) -> list[str]:
        time.sleep(1.0)
        return ["93.184.216.34"]

    t0 = time.monotonic()
    with pytest.raises(ToolError, match="no answer within 0.1 s"):
        check_url("https://slow.test/", resolver=slow, timeout=0.1)
    assert time.monotonic() - t0 < 0.8


@pytest.mark.parametrize(
    "url",
    ["http://2130706433/", "http://0x7f.1/", "http://127.1/", "http://017700000001/", "http://0/"],
)
def test_numeric_ipv4_spellings_resolve_to_loopback_and_are_refused(url: str) -> None:
    # The real resolver (no DNS traffic: getaddrinfo parses these numerically, as a browser or
    # requests would) turns them into 127.0.0.1 / 0.0.0.0, which the check then refuses.
    with pytest.raises(BlockedURLError, match="non-public"):
        check_url(url)
