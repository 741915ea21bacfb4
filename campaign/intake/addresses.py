"""IP addresses, ports and protocols as the intake files give them."""

from __future__ import annotations

import ipaddress
import re

# Never a suspect found in a spam sample: the receiving side's own networks and addresses that
# cannot be a server on the internet. The documentation ranges (TEST-NET-1/2/3, 2001:db8::/32)
# are deliberately NOT here: they are what fixtures and demo data use.
NOT_ROUTED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/128",
        "::1/128",
        "fc00::/7",  # unique local
        "fe80::/10",
        "ff00::/8",
    )
)

PROTOCOL_NAMES = {
    "smtp": "smtp",
    "http": "http",
    "http-proxy": "http",
    "https": "http",  # a CONNECT proxy is probed as http
    "socks4": "socks4",
    "socks4a": "socks4",
    "socks5": "socks5",
    "unknown": "unknown",
    "auto": "unknown",
}

PORT_PROTOCOLS = {
    **dict.fromkeys((25, 465, 587, 2525), "smtp"),
    **dict.fromkeys((80, 3128, 3129, 6588, 8000, 8080, 8081, 8118, 8123, 8888), "http"),
    **dict.fromkeys((1080, 1081, 9050), "socks5"),
    4145: "socks4",
}


class BadValue(ValueError):
    pass


# The common case, a plain dotted quad as ipaddress accepts it (no leading zeros), is checked
# without building an address object: a million-row import calls this a million times.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def normalize_ip(raw: str) -> str:
    text = raw.strip()
    if _PLAIN_IPV4.fullmatch(text):
        first = int(text[: text.index(".")])
        if 224 <= first <= 239 or text == "0.0.0.0":
            raise BadValue(f"{text} is not a unicast address")
        return text
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text[:5].lower() == "ipv6:":
        text = text[5:]
    if not text:
        raise BadValue("missing IP address")
    if "%" in text:  # stored without it, so it would merge wrongly; and it names a local interface
        raise BadValue(f"IP address with a zone id {raw.strip()[:60]!r}: not an internet address")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise BadValue(f"bad IP address {raw.strip()[:60]!r}") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # the same host; Target stores it unpacked
    if address.is_unspecified or address.is_multicast:
        raise BadValue(f"{address} is not a unicast address")
    return str(address)


def is_not_routed(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return any(address in network for network in NOT_ROUTED if network.version == address.version)


def parse_port(raw: str) -> int:
    text = raw.strip()
    if not text:
        raise BadValue("missing port")
    if not (text.isascii() and text.isdigit()):  # int() takes "2_5", "+25" and Arabic digits
        raise BadValue(f"bad port {text[:20]!r}")
    port = int(text)
    if not 1 <= port <= 65535:
        raise BadValue(f"port {port} out of range 1-65535")
    return port


def parse_protocol(raw: str, port: int) -> str:
    text = raw.strip().lower()
    if not text:
        return PORT_PROTOCOLS.get(port, "unknown")
    try:
        return PROTOCOL_NAMES[text]
    except KeyError:
        raise BadValue(
            f"unknown protocol {text[:20]!r} (smtp, http, socks4, socks5 or empty)"
        ) from None


def parse_asn(raw: str) -> int | None:
    text = raw.strip().upper().removeprefix("AS")
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) >= 2**32:
        raise BadValue(f"bad ASN {raw.strip()[:20]!r}")
    return int(text) or None  # Shadowserver writes 0 for "unknown"


def parse_country(raw: str) -> str:
    text = raw.strip().upper()
    if not text:
        return ""
    if len(text) != 2 or not text.isascii() or not text.isalpha():
        raise BadValue(f"bad country {raw.strip()[:20]!r} (ISO 3166-1 alpha-2, e.g. DE)")
    return text
