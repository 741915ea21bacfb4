"""Sending a queued letter: claim with a lease, render, hand to the ESP, record.

The one window that cannot be made safe is "the ESP accepted the message, then we crashed before
recording it". `handed_at` marks its start: a claim that expires before it is taken over and the
letter sent; one that expires after it is settled from the ESP's tracking events, or left to a
person as `unknown`. Nothing guesses.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import socket
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from anymail.signals import EventType
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from campaign import workflow
from campaign.models import Attention, Case, CaseEvent, Suppression
from campaign.services import (
    IllegalTransition,
    case_attention_set,
    case_record_event,
    case_transition,
)
from letters import emails, links, printing, rendering
from letters.models import DeliveryEvent, Letter, LetterKind
from letters.services.queueing import QUEUEABLE

logger = logging.getLogger(__name__)

TRANSIENT, PERMANENT, AMBIGUOUS = "transient", "permanent", "ambiguous"


def _smtp_code_kind(code: int) -> str:
    return TRANSIENT if 400 <= code < 500 else PERMANENT


def send_error_kind(exc: BaseException) -> str:
    """transient: the message surely did not leave, try again later; permanent: it never will;
    ambiguous: it may have been accepted (a reply lost in a timeout or a dropped connection)."""
    if isinstance(exc, AnymailRecipientsRefused):
        return PERMANENT
    if isinstance(exc, AnymailAPIError):
        status = getattr(exc, "status_code", None)
        if status is not None:
            return TRANSIENT if status == 429 or status >= 500 else PERMANENT
        cause = exc.__cause__
        if cause is not None and (
            "ConnectTimeout" in type(cause).__name__
            or ("ConnectionError" in type(cause).__name__ and "Read" not in str(cause))
        ):
            return TRANSIENT  # the request never reached the ESP
        return AMBIGUOUS if cause is not None else TRANSIENT
    if isinstance(exc, AnymailError):  # invalid address, unsupported feature, configuration
        return PERMANENT
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        # Greylisting answers 450/451 on RCPT: only if every refusal is temporary, try again.
        codes = [code for code, _msg in exc.recipients.values()]
        return TRANSIENT if codes and all(400 <= c < 500 for c in codes) else PERMANENT
    if isinstance(exc, smtplib.SMTPResponseException):  # sender, data, connect, helo, auth
        return _smtp_code_kind(exc.smtp_code)
    if isinstance(exc, ConnectionRefusedError | socket.gaierror | smtplib.SMTPNotSupportedError):
        return TRANSIENT
    if isinstance(exc, smtplib.SMTPServerDisconnected | TimeoutError | OSError):
        return AMBIGUOUS
    if isinstance(exc, SoftTimeLimitExceeded):  # cut off mid-conversation
        return AMBIGUOUS
    return PERMANENT


def _is_transient(exc: BaseException) -> bool:
    return send_error_kind(exc) == TRANSIENT


def _letter_failed(letter: Letter, error: str, *, claim: str | None = None) -> None:
    now = timezone.now()
    rows = Letter.objects.filter(pk=letter.pk, status=Letter.Status.SENDING)
    if claim is not None:
        rows = rows.filter(claimed_by=claim)
    with transaction.atomic():
        if not rows.update(
            status=Letter.Status.FAILED,
            error=error[:2000],
            status_changed_at=now,
            lease_until=None,
            handed_at=None,
        ):
            return
        case_record_event(
            case=letter.case,
            kind=CaseEvent.Kind.NOTE,
            actor_label="worker",
            note=f"Letter to {letter.recipient_email} failed: {error[:500]}",
            data={"letter": str(letter.public_id), "failed": True},
        )
        case_attention_set(
            case=letter.case,
            attention=Attention.LETTER_FAILED,
            note=f"{letter.get_kind_display()} to {letter.recipient_email} failed: {error[:150]}",
        )
    logger.warning("Letter %s failed: %s", letter.public_id, error)


def retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(settings.LETTER_RETRY_BACKOFF * 2 ** max(attempts - 1, 0), 1800))


def _letter_requeued(letter: Letter, error: str, *, claim: str | None = None) -> None:
    """Back to the outbox with a back-off; the dispatcher sends it when it is due."""
    rows = Letter.objects.filter(pk=letter.pk, status=Letter.Status.SENDING)
    if claim is not None:
        rows = rows.filter(claimed_by=claim)
    now = timezone.now()
    rows.update(
        status=Letter.Status.QUEUED,
        error=error[:2000],
        status_changed_at=now,
        not_before=now + retry_delay(letter.attempts),
        claimed_by="",
        lease_until=None,
        handed_at=None,
    )


def _send_refusal(letter: Letter) -> str | None:
    """Checked again at send time: the case or its owner may have changed since queueing."""
    if not letter.recipient_email.strip():
        return "The letter has no recipient address."
    active = Suppression.objects.active().affecting(letter.case.partner_id)
    if active.filter(email__iexact=letter.recipient_email).exists():
        return "The recipient asked not to be written to (suppressed)."
    if active.filter(server_owner_id=letter.case.server_owner_id).exists():
        return "The owner asked not to be written to (suppressed)."
    if letter.case.status not in QUEUEABLE[LetterKind(letter.kind)]:
        return f"The case is “{letter.case.get_status_display()}” now: not sent."
    return None


def _claim(letter_id: int, claim: str) -> bool:
    """QUEUED (and due) -> SENDING under a lease. Also takes over a claim that expired before the
    message was handed to the ESP, and this task's own claim when the broker redelivers it."""
    now = timezone.now()
    S = Letter.Status
    due = Q(status=S.QUEUED) & (Q(not_before__isnull=True) | Q(not_before__lte=now))
    expired = Q(status=S.SENDING, handed_at__isnull=True) & (
        Q(lease_until__lt=now) | Q(claimed_by=claim)
    )
    return bool(
        Letter.objects.filter(due | expired, id=letter_id).update(
            status=S.SENDING,
            claimed_by=claim,
            lease_until=now + timedelta(seconds=settings.LETTER_SEND_LEASE),
            status_changed_at=now,
            attempts=F("attempts") + 1,
        )
    )


def letter_send(*, letter_id: int, last_attempt: bool = False, claim: str = "") -> None:
    # Claim first, outside any transaction: one worker moves QUEUED -> SENDING and commits
    # before the network call; a redelivered task or a second worker then finds nothing to do.
    claim = claim or f"direct:{uuid.uuid4().hex}"
    if not _claim(letter_id, claim):
        # This task's own earlier run handed the letter over and died (the broker redelivered
        # it): no need to wait for the lease, the question is open now.
        letter_settle_expired(letter_id=letter_id, claim=claim)
        return
    letter = Letter.objects.select_related(
        "case__partner", "case__server_owner", "case__campaign", "template"
    ).get(id=letter_id)
    try:
        refusal = _send_refusal(letter)
        if refusal:
            _letter_failed(letter, refusal, claim=claim)
            return
        # A retry renders again: the link of an attempt that never left is dropped.
        letter.remediation_links.all().delete()
        url, _link = links.remediation_link_issue(letter.case, letter)
        rendered = rendering.render_letter_record(letter, remediation_url=url)
        pdf = printing.letter_pdf(rendered)
        message = emails.advisory_message(letter, rendered=rendered, pdf=pdf)
    except (OperationalError, InterfaceError):
        raise  # the task retries and takes over its own claim
    except SoftTimeLimitExceeded:  # a slow worker, not a broken template: later, elsewhere
        if letter.attempts >= settings.LETTER_MAX_ATTEMPTS:
            _letter_failed(letter, "Rendering timed out on every attempt.", claim=claim)
        else:
            _letter_requeued(letter, "Rendering hit the task's time limit.", claim=claim)
        return
    except Exception as exc:  # a template that does not render fails visibly, before any send
        _letter_failed(letter, f"Could not render the letter: {type(exc).__name__}: {exc}")
        return
    # The last moment a takeover is safe: from here on, a crash leaves a question for a person.
    name = _store_pdf(letter, pdf)
    handed = Letter.objects.filter(
        pk=letter.pk, status=Letter.Status.SENDING, claimed_by=claim, handed_at__isnull=True
    ).update(handed_at=timezone.now(), pdf=name, pdf_sha256=hashlib.sha256(pdf).hexdigest())
    if not handed:  # another worker took the letter over; it sends
        return
    try:
        sent = message.send()
    except Exception as exc:  # no error may leave the letter in SENDING
        error = f"{type(exc).__name__}: {exc}"
        kind = send_error_kind(exc)
        letter.refresh_from_db(fields=["attempts"])
        if (
            kind == TRANSIENT
            and not last_attempt
            and letter.attempts < settings.LETTER_MAX_ATTEMPTS
        ):
            _record_with_retries(_letter_requeued, letter, error, claim=claim)
        elif kind == AMBIGUOUS:
            _record_with_retries(_letter_unknown, letter, error, claim=claim)
        else:
            _record_with_retries(_letter_failed, letter, error, claim=claim)
        return
    if not sent:  # the backend took nothing (e.g. no valid recipient): not sent, say so
        _record_with_retries(
            _letter_failed, letter, "The mail backend reported 0 messages sent.", claim=claim
        )
        return
    status = getattr(message, "anymail_status", None)
    message_id = status.message_id if status is not None else None
    _record_with_retries(
        _mark_sent_after_send,
        letter,
        "" if message_id is None else str(message_id),
        claim=claim,
    )


def _mark_sent_after_send(letter: Letter, esp_message_id: str, *, claim: str) -> None:
    letter_mark_sent(letter=letter, esp_message_id=esp_message_id, claim=claim)


def _record_with_retries(record: Any, letter: Letter, text: str, *, claim: str) -> None:
    """After the network call the outcome is known only in this process: a database blip must
    not lose it, so the write is retried here (a new connection each time) for about a minute."""
    delay = 0.5
    for attempt in range(8):
        try:
            record(letter, text, claim=claim)
            return
        except (OperationalError, InterfaceError):
            if attempt == 7:
                raise
            logger.warning("Letter %s: database unavailable, retrying the record", letter.pk)
            connection.close()
            time.sleep(delay)
            delay = min(delay * 2, 15)


def _store_pdf(letter: Letter, pdf: bytes) -> str:
    try:
        return letter.pdf.storage.save(
            f"letters/{timezone.now():%Y/%m}/{letter.case.reference}-{letter.public_id}.pdf",
            ContentFile(pdf),
        )
    except Exception:  # a storage error must not stop the letter; the sha256 is still kept
        logger.exception("Letter %s: its PDF could not be stored.", letter.public_id)
        return ""


def _letter_unknown(letter: Letter, error: str, *, claim: str | None = None) -> None:
    rows = Letter.objects.filter(pk=letter.pk, status=Letter.Status.SENDING)
    if claim is not None:
        rows = rows.filter(claimed_by=claim)
    with transaction.atomic():
        if not rows.update(
            status=Letter.Status.UNKNOWN,
            error=error[:2000],
            status_changed_at=timezone.now(),
            lease_until=None,
        ):
            return
        case_record_event(
            case=letter.case,
            kind=CaseEvent.Kind.NOTE,
            actor_label="worker",
            note=(
                f"Letter to {letter.recipient_email}: the ESP may or may not have accepted it "
                f"({error[:300]}). A person decides: mark sent, or send again."
            ),
            data={"letter": str(letter.public_id), "unknown": True},
        )


# Any of these from the ESP for a letter means it accepted the message.
ACCEPTED_EVENTS = (
    EventType.QUEUED,
    EventType.SENT,
    EventType.DELIVERED,
    EventType.DEFERRED,
    EventType.BOUNCED,
    EventType.OPENED,
    EventType.CLICKED,
    EventType.COMPLAINED,
    EventType.UNSUBSCRIBED,
)


def letter_settle_expired(
    *, letter_id: int, now: datetime | None = None, claim: str | None = None
) -> str:
    """A letter whose send claim expired (or whose claim is `claim`, a redelivered task's own)
    after it was handed to the ESP: sent if the ESP's tracking says so, failed if the ESP
    rejected it, else `unknown` for a person. Returns what was done ('' when the letter is not
    in that state)."""
    now = now or timezone.now()
    dead = Q(lease_until__lt=now) | Q(claimed_by=claim) if claim else Q(lease_until__lt=now)
    letter = (
        Letter.objects.select_related("case")
        .filter(dead, pk=letter_id, status=Letter.Status.SENDING, handed_at__isnull=False)
        .first()
    )
    if letter is None:
        return ""
    events = DeliveryEvent.objects.filter(letter=letter)
    if events.filter(event_type__in=ACCEPTED_EVENTS).exists():
        letter_mark_sent(letter=letter, esp_message_id=letter.esp_message_id, claim=None)
        return "sent"
    if events.filter(event_type=EventType.REJECTED).exists():
        _letter_failed(letter, "The ESP rejected the message (tracking event).")
        return "failed"
    _letter_unknown(
        letter,
        f"The worker stopped after handing the letter to the ESP at {letter.handed_at:%H:%M:%S} "
        "UTC and before recording the answer; no tracking event has arrived.",
    )
    return "unknown"


def letter_mark_sent(
    *,
    letter: Letter,
    esp_message_id: str,
    pdf: bytes | None = None,
    claim: str | None = None,
    actor: object = None,
    note: str = "",
) -> bool:
    """The message has left: record it. Nothing here may make it go out again. With `claim`,
    only while this worker still holds the letter."""
    now = timezone.now()
    with transaction.atomic():
        rows = Letter.objects.filter(pk=letter.pk)
        if claim is not None:
            rows = rows.filter(claimed_by=claim)
        values: dict[str, object] = {"sent_at": now, "error": "", "lease_until": None}
        if esp_message_id:
            values["esp_message_id"] = esp_message_id[:255]
        if pdf is not None:
            values["pdf_sha256"] = hashlib.sha256(pdf).hexdigest()
            values["pdf"] = _store_pdf(letter, pdf)
        # Conditional: a delivery webhook faster than this commit must not be overwritten.
        moved = rows.filter(status__in=(Letter.Status.SENDING, Letter.Status.UNKNOWN)).update(
            status=Letter.Status.SENT, status_changed_at=now, **values
        )
        if not moved:
            if not rows.filter(status__in=(Letter.Status.DELIVERED, Letter.Status.BOUNCED)).update(
                **values
            ):
                return False
        case = Case.objects.get(pk=letter.case_id)
        case_record_event(
            case=case,
            kind=CaseEvent.Kind.LETTER_SENT,
            actor=actor,  # type: ignore[arg-type]
            actor_label="" if actor is not None else "worker",
            note=note or f"{letter.get_kind_display()} sent to {letter.recipient_email}.",
            data={"letter": str(letter.public_id), "esp_message_id": esp_message_id},
        )
        target = {
            LetterKind.INITIAL: Case.Status.NOTIFIED,
            LetterKind.REMINDER: Case.Status.REMINDED,
        }
        to_status = target.get(LetterKind(letter.kind))
        if to_status and workflow.can_transition(case.status, to_status):
            try:
                case_transition(case=case, to_status=to_status, actor_label="worker")
            except IllegalTransition:  # the case moved on meanwhile; the letter still went
                pass
    return True
