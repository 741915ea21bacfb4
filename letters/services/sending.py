"""Sending a queued letter: claim, render, hand to the ESP, record."""

from __future__ import annotations

import hashlib
import logging
import smtplib

from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from django.core.files.base import ContentFile
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from campaign import workflow
from campaign.models import Attention, Case, CaseEvent, Suppression
from campaign.services import (
    IllegalTransition,
    case_attention_set,
    case_record_event,
    case_transition,
)
from letters import emails, links, rendering
from letters.models import Letter, LetterKind
from letters.services.queueing import QUEUEABLE
from letters.tasks import TransientSendError

logger = logging.getLogger(__name__)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, AnymailRecipientsRefused):
        return False
    if isinstance(exc, AnymailAPIError):
        status = getattr(exc, "status_code", None)
        return status is None or status == 429 or status >= 500
    if isinstance(exc, AnymailError):  # invalid address, unsupported feature, configuration
        return False
    if isinstance(exc, smtplib.SMTPRecipientsRefused | smtplib.SMTPSenderRefused):
        return False
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    return isinstance(exc, OSError | OperationalError | InterfaceError)


def _letter_failed(letter: Letter, error: str) -> None:
    now = timezone.now()
    Letter.objects.filter(pk=letter.pk, status=Letter.Status.SENDING).update(
        status=Letter.Status.FAILED, error=error[:2000], status_changed_at=now
    )
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


def _letter_requeued(letter: Letter, error: str) -> None:
    Letter.objects.filter(pk=letter.pk, status=Letter.Status.SENDING).update(
        status=Letter.Status.QUEUED, error=error[:2000], status_changed_at=timezone.now()
    )


def _send_refusal(letter: Letter) -> str | None:
    """Checked again at send time: the case or its owner may have changed since queueing."""
    active = Suppression.objects.active().affecting(letter.case.partner_id)
    if active.filter(email__iexact=letter.recipient_email).exists():
        return "The recipient asked not to be written to (suppressed)."
    if active.filter(server_owner_id=letter.case.server_owner_id).exists():
        return "The owner asked not to be written to (suppressed)."
    if letter.case.status not in QUEUEABLE[LetterKind(letter.kind)]:
        return f"The case is “{letter.case.get_status_display()}” now: not sent."
    return None


def letter_send(*, letter_id: int, last_attempt: bool = False) -> None:
    # Claim first, outside any transaction: one worker moves QUEUED -> SENDING and commits
    # before the network call; a redelivered task or a second worker then finds nothing to do.
    claimed = Letter.objects.filter(id=letter_id, status=Letter.Status.QUEUED).update(
        status=Letter.Status.SENDING, status_changed_at=timezone.now()
    )
    if not claimed:
        return
    letter = Letter.objects.select_related(
        "case__partner", "case__server_owner", "case__campaign", "template"
    ).get(id=letter_id)
    try:
        refusal = _send_refusal(letter)
        if refusal:
            _letter_failed(letter, refusal)
            return
        # A retry renders again: the link of an attempt that never left is dropped.
        letter.remediation_links.all().delete()
        url, _link = links.remediation_link_issue(letter.case, letter)
        rendered = rendering.render_letter_record(letter, remediation_url=url)
        pdf = rendering.letter_pdf(rendered)
        message = emails.advisory_message(letter, rendered=rendered, pdf=pdf)
    except (OperationalError, InterfaceError) as exc:
        _letter_requeued(letter, f"database: {exc}")
        raise TransientSendError(letter_id) from exc
    except Exception as exc:  # a template that does not render fails visibly, before any send
        _letter_failed(letter, f"Could not render the letter: {type(exc).__name__}: {exc}")
        return
    try:
        message.send()
    except Exception as exc:  # no error may leave the letter in SENDING
        error = f"{type(exc).__name__}: {exc}"
        if _is_transient(exc) and not last_attempt:
            _letter_requeued(letter, error)
            raise TransientSendError(letter_id) from exc
        _letter_failed(letter, error)
        return
    status = getattr(message, "anymail_status", None)
    message_id = status.message_id if status is not None else None
    letter_mark_sent(
        letter=letter, esp_message_id="" if message_id is None else str(message_id), pdf=pdf
    )


def letter_mark_sent(*, letter: Letter, esp_message_id: str, pdf: bytes) -> None:
    """The message has left: record it. Nothing here may make it go out again."""
    name = ""
    try:
        name = letter.pdf.storage.save(
            f"letters/{timezone.now():%Y/%m}/{letter.case.reference}-{letter.public_id}.pdf",
            ContentFile(pdf),
        )
    except Exception:  # any storage error: the letter went out and must not stay SENDING
        logger.exception("Letter %s was sent but its PDF could not be stored.", letter.public_id)
    now = timezone.now()
    with transaction.atomic():
        Letter.objects.filter(pk=letter.pk).update(
            esp_message_id=esp_message_id[:255],
            pdf=name,
            pdf_sha256=hashlib.sha256(pdf).hexdigest(),
            sent_at=now,
            error="",
        )
        # Conditional: a delivery webhook faster than this commit must not be overwritten.
        Letter.objects.filter(pk=letter.pk, status=Letter.Status.SENDING).update(
            status=Letter.Status.SENT, status_changed_at=now
        )
        case = Case.objects.get(pk=letter.case_id)
        case_record_event(
            case=case,
            kind=CaseEvent.Kind.LETTER_SENT,
            actor_label="worker",
            note=f"{letter.get_kind_display()} sent to {letter.recipient_email}.",
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
