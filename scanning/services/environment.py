"""Exclusions (networks whose owners asked not to be scanned) and what the probes read from
settings: limits, canary and scanner identity."""

from __future__ import annotations

import ipaddress
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from scanning.models import Exclusion
from scanning.probes import cli
from scanning.probes.base import Limits

logger = logging.getLogger(__name__)


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


def scan_limits() -> Limits:
    return Limits(
        connect_timeout=settings.SCAN_CONNECT_TIMEOUT,
        reply_timeout=settings.SCAN_REPLY_TIMEOUT,
        exchange_timeout=settings.SCAN_EXCHANGE_TIMEOUT,
        # No campaign session waits for the canary: a relay that took the test message is
        # stored provisional and upgraded whenever the delivery arrives (scanning/confirmation.py).
        confirm_wait=0,
    )


def probe_environment(*, limits: Limits | None = None) -> cli.ProbeEnvironment:
    """What the probe command and scan workers read from settings. The command passes
    the bounds of docs/probes.md; campaign scans use the SCAN_* settings."""
    from scanning.hitstore import DatabaseHitStore

    return cli.ProbeEnvironment(
        scanner_name=settings.SCANNER_NAME,
        public_base_url=settings.PUBLIC_BASE_URL,
        contact=settings.SCANNER_CONTACT_EMAIL,
        canary_domain=settings.CANARY_DOMAIN,
        canary_http_addr=settings.CANARY_HTTP_ADDR,
        canary_tls_addr=settings.CANARY_TLS_ADDR,
        canary_smtp_addr=settings.CANARY_SMTP_ADDR,
        canary_selfcheck_addr=settings.CANARY_SELFCHECK_ADDR,
        canary_secret=settings.CANARY_SECRET,
        deployed_hits=DatabaseHitStore,
        limits=limits or scan_limits(),
    )
