"""Scanning's state changes: exclusions and scan runs."""

from __future__ import annotations

import ipaddress

from django.db import transaction
from django.utils import timezone

from scanning.models import Exclusion


@transaction.atomic
def exclusion_request(*, network: str, requester_email: str, reason: str = "") -> Exclusion:
    """An owner asks us not to scan their network; staff approve it in the admin."""
    normalised = str(ipaddress.ip_network(network, strict=False))
    return Exclusion.objects.create(
        network=normalised,
        requester_email=requester_email,
        reason=reason,
        status=Exclusion.Status.REQUESTED,
    )


def excluded_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Approved, unexpired exclusions, read once per batch and checked before every connection."""
    now = timezone.now()
    rows = Exclusion.objects.filter(status=Exclusion.Status.APPROVED).exclude(expires_at__lte=now)
    return [ipaddress.ip_network(n, strict=False) for n in rows.values_list("network", flat=True)]
