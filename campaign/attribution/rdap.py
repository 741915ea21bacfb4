"""RDAP for IP addresses (RFC 9082, 9083, 9224): bootstrap, bounded referrals, errors as types.

A small client on urllib: whoisit only talks https and falls back to public registry servers when
the bootstrap has no match, and ipwhois hard-codes ARIN's bootstrap and looks ASNs up over public
DNS. Both would fetch from outside the machine in tests; this client only asks what the bootstrap
files under RDAP_BOOTSTRAP name.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from django.conf import settings
from django.utils import timezone

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REFERRALS = 5
MAX_BYTES = 4 * 1024 * 1024
USER_AGENT = "SecureYourServer-attribution/1.0 (+advisory campaign; RDAP lookups)"
ACCEPT = "application/rdap+json, application/json;q=0.9"
REDIRECT_CODES = (301, 302, 303, 307, 308)


class RdapError(Exception):
    kind = "error"


class RdapTimeout(RdapError):
    kind = "timeout"


class RdapNotFound(RdapError):
    kind = "not_found"


class RdapNoServer(RdapError):
    kind = "no_server"


class RdapRateLimited(RdapError):
    kind = "rate_limited"

    def __init__(self, message: str, retry_after: int | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RdapAnswer:
    data: dict[str, Any]
    url: str


# --- Bootstrap ----------------------------------------------------------------------------------


def _read_bootstrap(source: str, name: str, timeout: float) -> dict[str, Any]:
    if urlsplit(source).scheme in ("http", "https"):
        url = urljoin(source.rstrip("/") + "/", name)
        status, _headers, body = _get(url, timeout)
        if status != 200:
            raise RdapNoServer(f"bootstrap {url} answered HTTP {status}")
        return json.loads(body)
    return json.loads((Path(source) / name).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=16)
def _services(
    source: str, version: int, timeout: float
) -> tuple[tuple[IPNetwork, tuple[str, ...]], ...]:
    doc = _read_bootstrap(source, f"ipv{version}.json", timeout)
    table = []
    for entry in doc.get("services", []):
        prefixes, urls = entry[0], entry[1]
        # https first; plain http only where a registry (or a test server) offers nothing else.
        ordered = tuple(
            sorted(
                (u for u in urls if urlsplit(u).scheme in ("http", "https")),
                key=lambda u: urlsplit(u).scheme != "https",
            )
        )
        for prefix in prefixes:
            table.append((ipaddress.ip_network(prefix, strict=False), ordered))
    # Longest prefix first, so the first containing network is the most specific.
    table.sort(key=lambda item: item[0].prefixlen, reverse=True)
    return tuple(table)


def clear_bootstrap_cache() -> None:
    _services.cache_clear()


def base_urls_for(ip: IPAddress) -> tuple[str, ...]:
    source = str(settings.RDAP_BOOTSTRAP)
    for network, urls in _services(source, ip.version, float(settings.RDAP_TIMEOUT)):
        if ip in network and urls:
            return urls
    raise RdapNoServer(f"no RDAP service for {ip} in the bootstrap files")


# --- HTTP ---------------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # Referrals are followed by hand so they can be counted, bounded and checked.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# No proxies from the environment: an RDAP answer must come from the server the bootstrap named.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError | socket.timeout) or (
        isinstance(exc, urllib.error.URLError)
        and isinstance(exc.reason, TimeoutError | socket.timeout)
    )


def _get(url: str, timeout: float) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(url, headers={"Accept": ACCEPT, "User-Agent": USER_AGENT})
    host = urlsplit(url).netloc
    try:
        with _opener.open(request, timeout=timeout) as response:
            body = response.read(MAX_BYTES + 1)
            return response.status, response.headers, body
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, b""
    except Exception as exc:
        if _is_timeout(exc):
            raise RdapTimeout(f"{host} did not answer within {timeout:g}s") from None
        if isinstance(exc, urllib.error.URLError | OSError):
            reason = getattr(exc, "reason", exc)
            raise RdapError(f"cannot reach {host}: {reason}") from None
        raise


def _retry_after(value: str | None) -> int | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, int((when - timezone.now()).total_seconds()))


def _referral(data: dict[str, Any], url: str) -> str | None:
    """A registry that holds only a pointer (no contacts) to another registry's answer."""
    if data.get("entities"):
        return None
    here = urlsplit(url).netloc
    for link in data.get("links") or []:
        if not isinstance(link, dict) or link.get("rel") != "related":
            continue
        href = str(link.get("href") or "")
        parts = urlsplit(href)
        if (
            parts.scheme in ("http", "https")
            and parts.netloc != here
            and "/ip/" in parts.path
            and "json" in str(link.get("type") or "application/rdap+json")
        ):
            return href
    return None


def lookup_ip(address: str) -> RdapAnswer:
    """The RDAP network object for one address, following redirects and registry referrals."""
    ip = ipaddress.ip_address(address)
    timeout = float(settings.RDAP_TIMEOUT)
    bases = base_urls_for(ip)
    last_error: RdapError | None = None
    for base in bases:
        url = urljoin(base if base.endswith("/") else base + "/", f"ip/{ip.compressed}")
        try:
            return _follow(url, timeout)
        except (RdapTimeout, RdapRateLimited, RdapNotFound):
            raise  # the registry answered (or is slow): another scheme would not help
        except RdapError as exc:
            last_error = exc
    assert last_error is not None
    raise last_error


def _follow(url: str, timeout: float) -> RdapAnswer:
    for _hop in range(MAX_REFERRALS + 1):
        status, headers, body = _get(url, timeout)
        host = urlsplit(url).netloc
        if status in REDIRECT_CODES:
            location = headers.get("Location") if headers else None
            if not location:
                raise RdapError(f"{host} answered HTTP {status} without a Location")
            url = urljoin(url, location)
            if urlsplit(url).scheme not in ("http", "https"):
                raise RdapError(f"{host} redirected to a non-HTTP URL")
            continue
        if status == 429:
            retry = _retry_after(headers.get("Retry-After") if headers else None)
            wait = f", retry after {retry}s" if retry is not None else ""
            raise RdapRateLimited(f"{host} rate-limited us (HTTP 429{wait})", retry)
        if status == 404:
            raise RdapNotFound(f"{host} has no network for this address (HTTP 404)")
        if status != 200:
            raise RdapError(f"{host} answered HTTP {status}")
        if len(body) > MAX_BYTES:
            raise RdapError(f"{host} sent more than {MAX_BYTES} bytes")
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # 4 MB of "[[[[" is valid JSON nested too deep
            raise RdapError(f"{host} sent something that is not JSON") from None
        if not isinstance(data, dict):
            raise RdapError(f"{host} sent JSON that is not an RDAP object")
        referral = _referral(data, url)
        if referral is None:
            return RdapAnswer(data=data, url=url)
        url = referral
    raise RdapError(f"more than {MAX_REFERRALS} referrals, last at {urlsplit(url).netloc}")
