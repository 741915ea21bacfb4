"""Remediation links: a 128-bit random token per letter, stored only as its sha256."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, time, timedelta

from django.conf import settings
from django.utils import timezone

from campaign.models import Case
from letters.models import Letter, RemediationLink

# What previews and `render_letter` print where a real link would go: the same shape, no token.
PREVIEW_URL = f"{settings.PUBLIC_BASE_URL}/r/preview/"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def link_url(token: str) -> str:
    return f"{settings.PUBLIC_BASE_URL}/r/{token}/"


def link_expiry(case: Case) -> datetime:
    campaign = case.campaign
    grace = timedelta(days=settings.REMEDIATION_LINK_GRACE_DAYS)
    if campaign.ends_on:
        end = datetime.combine(campaign.ends_on, time.max, tzinfo=timezone.get_current_timezone())
    else:  # an open-ended campaign: as long as the case's own deadline
        end = timezone.now() + timedelta(days=campaign.final_deadline_days)
    return end + grace


def remediation_link_issue(case: Case, letter: Letter | None = None) -> tuple[str, RemediationLink]:
    """A new link for this case (and letter); the raw token exists only in the returned URL."""
    token = secrets.token_urlsafe(16)  # 16 bytes = 128 bits
    link = RemediationLink.objects.create(
        case=case, letter=letter, token_hash=token_hash(token), expires_at=link_expiry(case)
    )
    Case.objects.filter(pk=case.pk).update(remediation_token_hash=link.token_hash)
    return link_url(token), link


def remediation_link_find(token: str, *, at: datetime | None = None) -> RemediationLink | None:
    """The valid link for a token, or None. The lookup is by hash, so the stored value is never
    compared against attacker input character by character; the final check is constant-time."""
    if not token or len(token) > 64:
        return None
    wanted = token_hash(token)
    link = RemediationLink.objects.select_related("case").filter(token_hash=wanted).first()
    if link is None or not hmac.compare_digest(link.token_hash, wanted):
        return None
    return link if link.is_valid(at) else None
