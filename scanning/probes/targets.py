"""Targets: how they are written, which addresses the policy refuses, which protocols a port gets.

Plain Python, no network: everything here is decided before anything is sent (docs/probes.md).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from scanning.probes.base import Protocol, Target

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], Sequence[str]]

AUTO = "auto"
PROTOCOL_CHOICES = ("smtp", "http", "socks4", "socks5", AUTO)
SMTP_PORTS = frozenset({25, 465, 587, 2525})
SOCKS_PORTS = frozenset({1080, 1081, 4145, 9050, 9150})
HTTP_PORTS = frozenset({80, 81, 3128, 3129, 6588, 8000, 8008, 8080, 8081, 8118, 8123, 8888})

# Special-purpose ranges Python's flags do not name (CGNAT is neither private nor global there).
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_DOCUMENTATION = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
)
_PRIVATE = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
# IETF protocol assignments: Python 3.11 calls only parts of this /24 private.
_IETF_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")


class TargetError(ValueError):
    """A target argument that is not `HOST:PORT` / `[v6]:PORT`; the message names it."""


class TargetRefused(PermissionError):
    """Targets the address policy forbids; raised before anything is sent to any target."""

    def __init__(self, refused: list[tuple[Target, str]]) -> None:
        super().__init__("refused: " + ", ".join(f"{t.given} ({why})" for t, why in refused))
        self.refused = refused


def parse_port(text: str, *, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise TargetError(f"{what}: bad port {text!r} (1-65535)")
    return int(text)


def split_host_port(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[v6]:PORT` into (host, port); raises TargetError naming `text`."""
    raw = text.strip()
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise TargetError(f"{text}: expected [IPv6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = raw.rpartition(":")
        if not sep:
            raise TargetError(f"{text}: expected HOST:PORT")
        if ":" in host:
            raise TargetError(f"{text}: an IPv6 address needs brackets, as in [{host}]:{port_text}")
    if not host:
        raise TargetError(f"{text}: no host")
    return host, parse_port(port_text, what=text)


def parse_target(text: str, *, resolver: Resolver | None = None) -> Target:
    """One target argument. IP literals only, unless a resolver is injected for names.

    The default refuses names: resolving would send a DNS query off the machine, which tests must
    never do, and a name can point anywhere the address policy would refuse.
    """
    host, port = split_host_port(text)
    if "%" in host:
        raise TargetError(f"{text}: scoped addresses (%zone) are not supported")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if text.strip().startswith("["):
            raise TargetError(f"{text}: {host!r} is not an IPv6 address") from None
        if resolver is None:
            raise TargetError(
                f"{text}: {host!r} is not an IP address; give an IP literal "
                "(names are not resolved here)"
            ) from None
        addresses = list(resolver(host))
        if not addresses:
            raise TargetError(f"{text}: {host!r} did not resolve") from None
        try:
            ip = ipaddress.ip_address(addresses[0])
        except ValueError:
            raise TargetError(f"{text}: resolver gave {addresses[0]!r}") from None
    return Target(given=text.strip(), ip=str(ip), port=port)


def refuse_reason(ip: str | IPAddress, allow_private: bool) -> str | None:
    """Why the policy forbids probing `ip` ("loopback", "private", ...), or None."""
    if allow_private:
        return None
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return refuse_reason(addr.ipv4_mapped, allow_private)  # ::ffff:10.0.0.1 is 10.0.0.1
    if isinstance(addr, ipaddress.IPv6Address) and addr.sixtofour is not None:
        # 2002:0a00:0001:: is 6to4 around 10.0.0.1: the packets end there.
        embedded = refuse_reason(addr.sixtofour, allow_private)
        if embedded:
            return f"6to4 around {embedded}"
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link-local"
    if addr.is_multicast:
        return "multicast"
    if isinstance(addr, ipaddress.IPv4Address) and addr in _CGNAT:
        return "shared address space (CGNAT)"
    if isinstance(addr, ipaddress.IPv4Address) and addr in _IETF_ASSIGNMENTS:
        return "reserved"
    if any(addr in net for net in _DOCUMENTATION):
        return "documentation"
    if any(addr in net for net in _PRIVATE):
        return "private"
    if isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local:
        return "site-local"
    if addr.is_reserved or addr.is_private or not addr.is_global:
        return "reserved"
    return None


def protocols_for_port(port: int) -> list[Protocol] | None:
    """What `--protocol auto` tries on a well-known port; None: read the greeting first."""
    if port in SMTP_PORTS:
        return [Protocol.SMTP]
    if port in SOCKS_PORTS:
        return [Protocol.SOCKS5, Protocol.SOCKS4]
    if port in HTTP_PORTS:
        return [Protocol.HTTP]
    return None


LOOPBACK_CANARY = "the canary listens on loopback, which a proxy there would take as its own"


def canary_reachable(target: Target, protocol: str, canary_http_host: str) -> bool:
    """May a proxy at `target` be aimed at the canary? Never at the proxy's own loopback.

    docs/probes.md: a proxy is never pointed at loopback or private ranges behind it, and a remote
    proxy told to fetch 127.0.0.1 would fetch its own. SMTP needs no such care: the test mail is
    addressed to the canary domain, never to an address.
    """
    smtp_only = protocol == Protocol.SMTP or (
        protocol == AUTO and protocols_for_port(target.port) == [Protocol.SMTP]
    )
    if smtp_only or target.address.is_loopback:
        return True
    try:
        return not ipaddress.ip_address(canary_http_host).is_loopback
    except ValueError:
        return True  # a name: the deployment's, resolved by the proxy as a real client would
