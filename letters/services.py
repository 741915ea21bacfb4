"""Letter state changes. Sending and rendering arrive with the letters issue; sweeps live here."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone

from letters.models import Letter

STUCK_AFTER = timedelta(hours=6)


def letters_stuck(*, now: timezone.datetime | None = None) -> QuerySet[Letter]:
    """Letters left in QUEUED or SENDING for hours: reported for review, never resent, because
    a duplicate advisory letter is worse than a late one."""
    cutoff = (now or timezone.now()) - STUCK_AFTER
    return Letter.objects.filter(
        status__in=(Letter.Status.QUEUED, Letter.Status.SENDING), status_changed_at__lt=cutoff
    )
