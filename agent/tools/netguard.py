"""Which URLs a tool may fetch: http(s) only, and only hosts whose every address is public.

A plan's URLs come from a model that just read arbitrary web text, so a page can steer the next
fetch toward the cloud metadata service or an admin port on the local network (SSRF). The check
resolves the host once; the caller then connects to exactly the addresses checked here (see
``fetch.PinnedAdapter``), so a DNS answer that changes between check and connect cannot slip by.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent.errors import ToolError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]


class BlockedURLError(ToolError):
    """A URL was refused before any request was made (scheme, credentials, non-public host)."""


# Not reachable on the public internet, or special-purpose (RFC 6890 and successors). Listed
# explicitly because ``ipaddress`` flags vary across Python patch releases (CGNAT 100.64/10 is not
# ``is_private``; 192.0.0.0/24 and 6to4 were ``is_global`` on 3.11.7).
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "::/96",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "2002::/16",
        "64:ff9b:1::/48",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_BLOCKED_HOSTNAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def embedded_ipv4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::a.b.c.d) one."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr in _NAT64:
            return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def is_public_address(address: str | IPAddress) -> bool:
    """True when ``address`` is a globally routable unicast address (embedded IPv4 unwrapped)."""
    try:
        addr = ipaddress.ip_address(
            address.split("%", 1)[0] if isinstance(address, str) else address
        )
    except ValueError:
        return False
    inner = embedded_ipv4(addr)
    if inner is not None:
        return is_public_address(inner)
    if any(addr in net for net in _BLOCKED_NETWORKS if net.version == addr.version):
        return False
    return addr.is_global and not (
        addr.is_multicast
        or addr.is_reserved
        or addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_unspecified
    )


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6), without duplicates, in resolver order.

    Tests replace this function (``agent.tools.netguard.resolve_host``) to simulate DNS.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ToolError(f"cannot resolve host {host!r}: {exc}") from exc
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


@dataclass(frozen=True)
class Target:
    """A URL that passed the check, with the addresses to connect to."""

    url: str
    scheme: str
    host: str  # ASCII (IDNA) host name or IP literal, without brackets
    port: int
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _ascii_host(host: str) -> str:
    try:
        host.encode("ascii")
        return host.lower().rstrip(".")
    except UnicodeEncodeError:
        pass
    import idna  # requests depends on it; IDNA 2008 as requests itself uses

    try:
        return idna.encode(host, uts46=True).decode("ascii").rstrip(".")
    except idna.IDNAError as exc:
        raise BlockedURLError(
            f"host {host!r} is not a valid international domain name: {exc}"
        ) from exc


def check_url(
    url: str,
    *,
    allow_private: bool = False,
    resolver: Resolver | None = None,
    timeout: float | None = None,
) -> Target:
    """Validate ``url`` and resolve its host; raise ``BlockedURLError`` when it must not be fetched.

    With ``allow_private`` only the scheme and form are checked (for local use and tests); the
    host is still resolved once and the connection pinned to what was resolved. ``timeout``
    bounds the DNS lookup (``getaddrinfo`` itself has none).
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise BlockedURLError(f"refused {url!r}: malformed URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BlockedURLError(
            f"refused {url!r}: only http and https URLs are fetched, "
            f"not {scheme or 'a relative URL'!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise BlockedURLError(f"refused {url!r}: URLs with credentials (user@host) are not fetched")
    raw_host = parts.hostname
    if not raw_host:
        raise BlockedURLError(f"refused {url!r}: the URL has no host")
    host = _ascii_host(raw_host)
    if port is None:
        port = 443 if scheme == "https" else 80
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        literal = None
    if (
        not allow_private
        and literal is None
        and (host in _BLOCKED_HOSTNAMES or host.endswith(".localhost"))
    ):
        raise BlockedURLError(f"refused {url!r}: {host} is a local host name")
    if literal is not None:
        addresses = [str(literal)]
    else:
        addresses = _resolve(resolver or resolve_host_dynamic, host, port, timeout)
        if not addresses:
            raise ToolError(f"cannot resolve host {host!r}: no addresses")
    if not allow_private:
        bad = [a for a in addresses if not is_public_address(a)]
        if bad:
            raise BlockedURLError(
                f"refused {url!r}: {host} resolves to non-public address {', '.join(bad)} "
                "(loopback, private, link-local, CGNAT, multicast or reserved); "
                "use allow_private=True only for trusted local use"
            )
    return Target(url=url.strip(), scheme=scheme, host=host, port=port, addresses=tuple(addresses))


_DNS_POOL: ThreadPoolExecutor | None = None
_DNS_POOL_LOCK = threading.Lock()


def _resolve(resolve: Resolver, host: str, port: int, timeout: float | None) -> list[str]:
    if timeout is None:
        return [str(a) for a in resolve(host, port)]
    global _DNS_POOL
    with _DNS_POOL_LOCK:
        if _DNS_POOL is None:
            _DNS_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dns")
    future = _DNS_POOL.submit(resolve, host, port)
    try:
        return [str(a) for a in future.result(timeout=max(0.0, timeout))]
    except FutureTimeout:
        raise ToolError(f"cannot resolve host {host!r}: no answer within {timeout:.1f} s") from None


def resolve_host_dynamic(host: str, port: int) -> list[str]:
    """``resolve_host`` looked up at call time, so tests can patch the module attribute."""
    return list(globals()["resolve_host"](host, port))
