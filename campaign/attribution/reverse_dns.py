"""Reverse DNS (PTR) for a target, asked of the resolver ATTRIBUTION_DNS_SERVER names."""

from __future__ import annotations

import dns.exception
import dns.resolver
import dns.reversename
from django.conf import settings


def _resolver() -> dns.resolver.Resolver:
    server = settings.ATTRIBUTION_DNS_SERVER
    timeout = float(settings.ATTRIBUTION_DNS_TIMEOUT)
    if server:
        if isinstance(server, str):
            host, _, port = server.rpartition(":")
            server = (host.strip("[]"), int(port))
        # configure=False: never read /etc/resolv.conf, so only the named server is asked.
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [server[0]]
        resolver.port = int(server[1])
    else:
        resolver = dns.resolver.Resolver()
    resolver.timeout = resolver.lifetime = timeout
    return resolver


def reverse_dns(address: str) -> str:
    """The PTR name of an address, lower case without the final dot; '' when there is none."""
    try:
        name = dns.reversename.from_address(address)
        answer = _resolver().resolve(name, "PTR", search=False)
    except (dns.exception.DNSException, ValueError):
        return ""  # no PTR, NXDOMAIN, a timeout: none of them stops attribution
    for record in answer:
        return str(record.target).rstrip(".").lower()[:255]
    return ""
