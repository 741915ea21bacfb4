"""RDAP for IP addresses (RFC 9082, 9083, 9224): bootstrap, bounded referrals, errors as types.

A small client on urllib: whoisit only talks https and falls back to public registry servers when
the bootstrap has no match, and ipwhois hard-codes ARIN's bootstrap and looks ASNs up over public
DNS. Both would fetch from outside the machine in tests; this client only asks what the bootstrap
files under RDAP_BOOTSTRAP name.

An RDAP answer picks who receives a letter, so it must come from a registry: https only (no
fallback to http), certificates verified (against RDAP_CA_BUNDLE when set, else the system store),
redirects and referrals followed only to the registries the bootstrap names, and one deadline
(RDAP_DEADLINE) across every request, redirect, referral and read of a lookup.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from time import monotonic
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
        deadline = Deadline(float(settings.RDAP_DEADLINE))
        status, _headers, body = _get(url, timeout, deadline)
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
        # https only: IANA lists plain http beside https for some registries.
        secure = tuple(u for u in urls if urlsplit(u).scheme == "https")
        for prefix in prefixes:
            table.append((ipaddress.ip_network(prefix, strict=False), secure))
    # Longest prefix first, so the first containing network is the most specific.
    table.sort(key=lambda item: item[0].prefixlen, reverse=True)
    return tuple(table)


def _host(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or "").lower(), parts.port or 443


def registries() -> frozenset[tuple[str, int]]:
    """(host, port) of every registry the bootstrap names: the only places a lookup may go."""
    source, timeout = str(settings.RDAP_BOOTSTRAP), float(settings.RDAP_TIMEOUT)
    return frozenset(
        _host(url)
        for version in (4, 6)
        for _network, urls in _services(source, version, timeout)
        for url in urls
    )


def clear_bootstrap_cache() -> None:
    _services.cache_clear()
    _ssl_context.cache_clear()


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


class Deadline:
    """One lookup's time, shared by every connection, redirect, referral and read in it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = monotonic() + seconds

    def timeout(self, per_request: float, host: str) -> float:
        """The socket timeout for the next step: what is left, at most `per_request`."""
        left = self.end - monotonic()
        if left <= 0:
            raise RdapTimeout(f"the lookup ran past its {self.seconds:g}s deadline at {host}")
        return min(per_request, left)


@functools.lru_cache(maxsize=4)
def _ssl_context(ca_bundle: str) -> ssl.SSLContext:
    # Certificates and host names are verified; RDAP_CA_BUNDLE replaces the system store.
    return ssl.create_default_context(cafile=ca_bundle or None)


def _opener() -> urllib.request.OpenerDirector:
    # No proxies from the environment: an RDAP answer must come from the server the bootstrap
    # named.
    context = _ssl_context(str(getattr(settings, "RDAP_CA_BUNDLE", "") or ""))
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=context),
        _NoRedirect(),
    )


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError | socket.timeout) or (
        isinstance(exc, urllib.error.URLError)
        and isinstance(exc.reason, TimeoutError | socket.timeout)
    )


def _read_body(response: Any, deadline: Deadline, per_request: float, host: str) -> bytes:
    # read() would loop over a server dripping a byte at a time; each chunk checks the deadline.
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BYTES:
        deadline.timeout(per_request, host)
        chunk = response.read1(64 * 1024)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _get(url: str, per_request: float, deadline: Deadline) -> tuple[int, Any, bytes]:
    host = urlsplit(url).netloc
    if urlsplit(url).scheme != "https":
        raise RdapError(f"refusing {url!r}: RDAP is asked over https only")
    request = urllib.request.Request(url, headers={"Accept": ACCEPT, "User-Agent": USER_AGENT})
    timeout = deadline.timeout(per_request, host)
    try:
        with _opener().open(request, timeout=timeout) as response:
            body = _read_body(response, deadline, per_request, host)
            return response.status, response.headers, body
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, b""
    except RdapError:
        raise
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


def _check_hop(url: str, came_from: str, what: str) -> None:
    """A redirect or referral goes on only over https, to a registry the bootstrap names."""
    if urlsplit(url).scheme != "https":
        raise RdapError(f"{came_from} sent a {what} to {url!r}, which is not https")
    if _host(url) not in registries():
        raise RdapError(
            f"{came_from} sent a {what} to {urlsplit(url).netloc}, "
            "which is not a registry in the bootstrap"
        )


def lookup_ip(address: str) -> RdapAnswer:
    """The RDAP network object for one address, following redirects and registry referrals."""
    ip = ipaddress.ip_address(address)
    per_request = float(settings.RDAP_TIMEOUT)
    deadline = Deadline(float(settings.RDAP_DEADLINE))
    bases = base_urls_for(ip)
    last_error: RdapError | None = None
    for base in bases:
        url = urljoin(base if base.endswith("/") else base + "/", f"ip/{ip.compressed}")
        try:
            return _follow(url, per_request, deadline)
        except (RdapTimeout, RdapRateLimited, RdapNotFound):
            raise  # the registry answered (or is slow): another server would not help
        except RdapError as exc:
            last_error = exc
    assert last_error is not None
    raise last_error


def _follow(url: str, per_request: float, deadline: Deadline) -> RdapAnswer:
    for _hop in range(MAX_REFERRALS + 1):
        status, headers, body = _get(url, per_request, deadline)
        host = urlsplit(url).netloc
        if status in REDIRECT_CODES:
            location = headers.get("Location") if headers else None
            if not location:
                raise RdapError(f"{host} answered HTTP {status} without a Location")
            url = urljoin(url, location)
            _check_hop(url, host, "redirect")
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
        _check_hop(referral, host, "referral")
        url = referral
    raise RdapError(f"more than {MAX_REFERRALS} referrals, last at {urlsplit(url).netloc}")
