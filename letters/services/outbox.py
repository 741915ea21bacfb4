"""The outbox: the dispatcher that hands due letters to workers at the allowed rate, the
reconciler that repairs what a crash left behind, and the settling of letters by a person."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from campaign.models import CaseEvent, Partner
from campaign.selectors import AnyUser
from campaign.services import case_record_event
from letters.models import Heartbeat, Letter
from letters.services.queueing import _superseded
from letters.services.sending import letter_mark_sent, letter_settle_expired
from letters.tasks import dispatch_letters_task, send_letter_task

logger = logging.getLogger(__name__)

RATE_WINDOW = timedelta(seconds=60)


def heartbeat_record(name: str, *, now: datetime | None = None) -> None:
    Heartbeat.objects.update_or_create(name=name, defaults={"at": now or timezone.now()})


# --- Sending windows and rates ------------------------------------------------------------------
def partner_in_sending_window(partner: Partner, now: datetime) -> bool:
    start, end = partner.sending_window_start, partner.sending_window_end
    if start is None or end is None:
        return True
    local = now.astimezone(ZoneInfo(partner.time_zone)).time()
    if start <= end:
        return start <= local < end
    return local >= start or local < end  # a window across midnight, e.g. 22:00-06:00


def letters_due(*, now: datetime) -> QuerySet[Letter]:
    """Queued letters that may be handed to a worker now: not backing off, and not handed to a
    worker whose dispatch lease is still running."""
    return Letter.objects.filter(status=Letter.Status.QUEUED).filter(
        Q(not_before__isnull=True) | Q(not_before__lte=now),
        Q(lease_until__isnull=True) | Q(lease_until__lt=now),
    )


@dataclasses.dataclass
class DispatchReport:
    dispatched: int = 0
    budget: int = 0
    outside_window: list[str] = dataclasses.field(default_factory=list)
    at_partner_rate: list[str] = dataclasses.field(default_factory=list)


def _dispatch_lock() -> None:
    # Two dispatchers at once (a doorbell and the beat tick) would each spend the whole budget.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('letters.dispatch'))")


def letters_dispatch(*, now: datetime | None = None) -> DispatchReport:
    """Hand due letters to the send task, at most LETTER_RATE_PER_MINUTE a minute (the ESP's
    rate), each partner at most its own `letters_per_minute`, and only inside the partner's
    sending window. Only what may leave now enters the broker: a queue of 20,000 letters holds
    no worker slots and no countdowns."""
    now = now or timezone.now()
    report = DispatchReport()
    with transaction.atomic():
        _dispatch_lock()
        heartbeat_record("dispatch", now=now)
        recent = Letter.objects.filter(dispatched_at__gt=now - RATE_WINDOW)
        report.budget = min(
            settings.LETTER_RATE_PER_MINUTE - recent.count(), settings.LETTER_DISPATCH_BATCH
        )
        if report.budget <= 0:
            return report
        due = letters_due(now=now)
        held: list[int] = []
        capped: dict[int, int] = {}
        partners = Partner.objects.filter(
            Q(sending_window_start__isnull=False) | Q(letters_per_minute__isnull=False)
        )
        for partner in partners:
            if not partner_in_sending_window(partner, now):
                held.append(partner.pk)
                report.outside_window.append(partner.country)
            elif partner.letters_per_minute is not None:
                left = partner.letters_per_minute - recent.filter(case__partner=partner).count()
                if left <= 0:
                    held.append(partner.pk)
                    report.at_partner_rate.append(partner.country)
                else:
                    capped[partner.pk] = left
        order = ("queued_at", "id")
        picked = list(
            due.exclude(case__partner_id__in=[*held, *capped])
            .order_by(*order)
            .values_list("queued_at", "id")[: report.budget]
        )
        for partner_id, left in capped.items():
            picked += list(
                due.filter(case__partner_id=partner_id)
                .order_by(*order)
                .values_list("queued_at", "id")[: min(left, report.budget)]
            )
        picked.sort(key=lambda row: (row[0] or now, row[1]))
        ids = [letter_id for _queued, letter_id in picked[: report.budget]]
        if not ids:
            return report
        # Conditional, inside the lock: a letter claimed meanwhile is not dispatched again.
        rows = letters_due(now=now).filter(id__in=ids)
        ids = list(rows.values_list("id", flat=True))
        report.dispatched = Letter.objects.filter(id__in=ids).update(
            dispatched_at=now,
            lease_until=now + timedelta(seconds=settings.LETTER_DISPATCH_LEASE),
        )
        transaction.on_commit(lambda: [send_letter_task.delay(i) for i in ids])
    return report


# --- The reconciler -----------------------------------------------------------------------------
@dataclasses.dataclass
class ReconcileReport:
    requeued: int = 0  # sending, claim expired before the ESP had it: sent again
    settled_sent: int = 0  # claim expired after the hand-off, the ESP's events say it went
    settled_failed: int = 0
    unknown: int = 0  # left to a person
    queued_due: int = 0  # waiting in the outbox for the dispatcher

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def outbox_reconcile(*, now: datetime | None = None) -> ReconcileReport:
    """Letters whose row says work should be happening but no live worker holds them."""
    now = now or timezone.now()
    report = ReconcileReport()
    heartbeat_record("reconcile", now=now)
    expired = Letter.objects.filter(status=Letter.Status.SENDING, lease_until__lt=now)
    report.requeued = expired.filter(handed_at__isnull=True).update(
        status=Letter.Status.QUEUED,
        claimed_by="",
        lease_until=None,
        not_before=None,
        status_changed_at=now,
        error="The worker stopped before handing the letter to the ESP; queued again.",
    )
    for letter_id in expired.filter(handed_at__isnull=False).values_list("id", flat=True):
        outcome = letter_settle_expired(letter_id=letter_id, now=now)
        if outcome == "sent":
            report.settled_sent += 1
        elif outcome == "failed":
            report.settled_failed += 1
        elif outcome == "unknown":
            report.unknown += 1
    report.queued_due = letters_due(now=now).count()
    if report.requeued or report.queued_due:
        dispatch_letters_task.delay()
    if report.requeued or report.unknown or report.settled_sent or report.settled_failed:
        logger.warning("Outbox reconciled: %s", report.as_dict())
    return report


# --- What needs a person, and what they can do --------------------------------------------------
def letters_needing_attention(*, now: datetime | None = None) -> QuerySet[Letter]:
    """Unknown letters, send claims past their lease, and letters handed to a worker that never
    claimed them and not dispatched again for another lease (the dispatcher is not running).
    A long but moving queue (rate limit, sending window) is not stuck."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.LETTER_DISPATCH_LEASE)
    S = Letter.Status
    return Letter.objects.filter(
        Q(status=S.UNKNOWN)
        | Q(status=S.SENDING, lease_until__lt=now)
        | Q(status=S.QUEUED, lease_until__lt=stale)
    )


class LetterNotSettled(Exception):
    pass


@transaction.atomic
def letter_settle_sent(*, letter: Letter, actor: AnyUser, note: str = "") -> None:
    """A person confirmed (e.g. in the ESP's log) that an `unknown` letter went out."""
    letter = Letter.objects.select_for_update().select_related("case").get(pk=letter.pk)
    if letter.status != Letter.Status.UNKNOWN:
        raise LetterNotSettled(f"{letter}: only an “unknown” letter can be marked sent.")
    letter_mark_sent(
        letter=letter,
        esp_message_id=letter.esp_message_id,
        actor=actor,
        note=note or f"Marked sent by staff: the letter to {letter.recipient_email} went out.",
    )


@transaction.atomic
def letter_send_again(*, letter: Letter, actor: AnyUser) -> None:
    """A person decided that an `unknown` letter did not go out: send it again (same row)."""
    letter = Letter.objects.select_for_update().select_related("case").get(pk=letter.pk)
    if letter.status != Letter.Status.UNKNOWN:
        raise LetterNotSettled(f"{letter}: only an “unknown” letter can be sent again.")
    if _superseded(letter):
        raise LetterNotSettled(f"{letter}: a later letter of this kind is out or queued.")
    now = timezone.now()
    Letter.objects.filter(pk=letter.pk).update(
        status=Letter.Status.QUEUED,
        status_changed_at=now,
        not_before=None,
        lease_until=None,
        claimed_by="",
        handed_at=None,
        attempts=0,
        error="",
    )
    case_record_event(
        case=letter.case,
        kind=CaseEvent.Kind.LETTER_QUEUED,
        actor=actor,
        note=f"Sent again by staff: the letter to {letter.recipient_email} had not gone out.",
        data={"letter": str(letter.public_id), "send_again": True},
    )
    dispatch_letters_task.delay_on_commit()


@transaction.atomic
def letter_requeue(*, letter: Letter, actor: AnyUser) -> bool:
    """Put a stuck letter back in the outbox: queued ones now, sending ones only if their claim
    expired before the ESP had them. Returns False when that would risk a second letter."""
    now = timezone.now()
    S = Letter.Status
    rows = Letter.objects.filter(pk=letter.pk).filter(
        Q(status=S.QUEUED) | Q(status=S.SENDING, lease_until__lt=now, handed_at__isnull=True)
    )
    moved = rows.update(
        status=S.QUEUED,
        status_changed_at=now,
        not_before=None,
        lease_until=None,
        claimed_by="",
    )
    if moved:
        case_record_event(
            case=letter.case,
            kind=CaseEvent.Kind.NOTE,
            actor=actor,
            note=f"Letter to {letter.recipient_email} put back in the outbox by staff.",
            data={"letter": str(letter.public_id), "requeued": True},
        )
        dispatch_letters_task.delay_on_commit()
    return bool(moved)
