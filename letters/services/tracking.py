"""ESP tracking events: stored once, applied to the letter and its case."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from typing import Any, cast

from anymail.signals import AnymailTrackingEvent, EventType
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from campaign import workflow
from campaign.models import Attention, Case, CaseEvent, Contact, Suppression
from campaign.services import case_record_event, case_transition
from letters.models import DeliveryEvent, Letter
from letters.services.bounces import bounce_kind
from letters.services.queueing import (
    LetterNotQueued,
    _superseded,
    letter_next_contact,
    letter_queue,
)

logger = logging.getLogger(__name__)


def esp_slug(esp_name: str) -> str:
    return esp_name.strip().lower().replace(" ", "_")


def _plain(value: Any) -> Any:
    if hasattr(value, "lists"):  # a QueryDict (Mailgun's legacy form posts)
        value = {k: v if len(v) > 1 else v[0] for k, v in value.lists()}
    return json.loads(json.dumps(value, default=str))


def stable_event_id(esp: str, event: AnymailTrackingEvent, raw: Any) -> str:
    if event.event_id:
        event_id = str(event.event_id)
        if esp == "amazon_ses" and event.recipient:  # one SNS notification, many recipients
            event_id = f"{event_id}:{str(event.recipient).lower()}"
        return event_id[:255]
    canonical = json.dumps(
        {"raw": raw, "type": event.event_type, "recipient": event.recipient},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _letter_for(event: AnymailTrackingEvent) -> Letter | None:
    public_id = (event.metadata or {}).get("letter")
    if public_id:
        try:
            letter = Letter.objects.filter(public_id=uuid.UUID(str(public_id))).first()
        except ValueError:
            letter = None
        if letter is not None:
            return letter
    if event.message_id:
        return Letter.objects.filter(esp_message_id=event.message_id).order_by("-id").first()
    return None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _bounce_kind_or_none(esp: str, event: AnymailTrackingEvent, raw: Any) -> str:
    try:
        return bounce_kind(esp, event, raw)
    except (TypeError, AttributeError, ValueError):  # a malformed payload: stored, not applied
        logger.warning("Tracking event from %s: bounce kind unreadable", esp)
        return ""


def delivery_event_record(*, esp_name: str, event: AnymailTrackingEvent) -> DeliveryEvent | None:
    """Store a tracking event once and apply it. Returns None for a duplicate. Raises only on
    transient database errors, so that the ESP retries."""
    esp = esp_slug(esp_name)
    raw = _plain(event.esp_event)
    values = {
        "esp": esp,
        "event_id": stable_event_id(esp, event, raw),
        "event_type": str(event.event_type or "unknown")[:20],
        # ESP payloads are untrusted: a number where a string belongs must not 500 the webhook.
        "message_id": _text(event.message_id)[:255],
        "recipient": _text(event.recipient)[:254],
        "bounce_kind": _bounce_kind_or_none(esp, event, raw),
        "description": _text(event.description or event.mta_response),
        "occurred_at": event.timestamp,
        "raw": raw if isinstance(raw, dict) else {"event": raw},
    }
    try:
        with transaction.atomic():
            try:
                with transaction.atomic():
                    record = DeliveryEvent.objects.create(letter=_letter_for(event), **values)
            except IntegrityError:
                return None  # stored before: a duplicate is applied once
            if record.letter_id:
                _apply_delivery_event(record)
            return record
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:  # a bug must not make the ESP retry forever; keep the event visibly
        logger.exception("Tracking event %s/%s not applied", esp, values["event_id"])
        values["description"] = f"NOT APPLIED ({type(exc).__name__}: {exc}) {values['description']}"
        try:
            with transaction.atomic():
                return DeliveryEvent.objects.create(**values)
        except IntegrityError:
            return None


def _apply_delivery_event(record: DeliveryEvent) -> None:
    letter = Letter.objects.select_related("case__partner", "case__server_owner", "contact").get(
        pk=cast(int, record.letter_id)
    )
    case = letter.case
    now = timezone.now()
    data = {"letter": str(letter.public_id), "delivery_event": record.pk, "esp": record.esp}
    S = Letter.Status
    if record.event_type == EventType.DELIVERED:
        if Letter.objects.filter(pk=letter.pk, status__in=(S.SENDING, S.SENT)).update(
            status=S.DELIVERED, status_changed_at=now
        ):
            case_record_event(
                case=case,
                kind=CaseEvent.Kind.LETTER_DELIVERED,
                actor_label=record.esp,
                note=f"Delivered to {letter.recipient_email}.",
                data=data,
            )
    elif record.bounce_kind == "hard":
        if not Letter.objects.filter(
            pk=letter.pk, status__in=(S.SENDING, S.SENT, S.DELIVERED)
        ).update(status=S.BOUNCED, status_changed_at=now):
            return  # bounced (or complained) already: the next contact was handled then
        contacts = case.server_owner.contacts.filter(email__iexact=letter.recipient_email)
        contacts.filter(bounced_at__isnull=True).update(bounced_at=now)
        case_record_event(
            case=case,
            kind=CaseEvent.Kind.LETTER_BOUNCED,
            actor_label=record.esp,
            note=f"Hard bounce from {letter.recipient_email}: {record.description[:300]}",
            data=data,
        )
        _queue_next_contact(case, letter)
    elif record.event_type == EventType.COMPLAINED:
        email = record.recipient or letter.recipient_email
        active = Suppression.objects.active().affecting(case.partner)
        if not active.filter(email__iexact=email).exists():
            Suppression.objects.create(
                partner=case.partner,
                email=email,
                reason=Suppression.Reason.COMPLAINT,
                note=f"ESP complaint on the letter for {case.reference}.",
            )
        Letter.objects.filter(pk=letter.pk, status__in=(S.SENT, S.DELIVERED)).update(
            status=S.COMPLAINED, status_changed_at=now
        )
        case_record_event(
            case=case,
            kind=CaseEvent.Kind.LETTER_COMPLAINED,
            actor_label=record.esp,
            note=f"{email} complained; the address is suppressed.",
            data=data,
        )
    # deferred, soft bounces, opens, clicks: recorded only


def _queue_next_contact(case: Case, bounced: Letter) -> None:
    # Locked before looking for a later letter: a staff resend holds this lock while it queues.
    case = (
        Case.objects.select_for_update(of=("self",))
        .select_related("partner", "server_owner")
        .get(pk=case.pk)
    )
    if _superseded(bounced):  # staff resent to the next contact before this bounce arrived
        case_record_event(
            case=case,
            kind=CaseEvent.Kind.NOTE,
            actor_label="bounce",
            note="No letter to the next contact: a later letter of this kind is out or queued.",
        )
        return
    try:
        letter_queue(
            case=case,
            kind=bounced.kind,
            actor_label="bounce",
            note=f"Next contact after a hard bounce from {bounced.recipient_email}.",
        )
        return
    except LetterNotQueued as refusal:
        reason = str(refusal)
    if letter_next_contact(case, kind=bounced.kind) is None and workflow.can_transition(
        case.status, Case.Status.NEEDS_REVIEW
    ):
        has_partner_contact = case.server_owner.contacts.filter(kind=Contact.Kind.PARTNER).exists()
        case_transition(
            case=case,
            to_status=Case.Status.NEEDS_REVIEW,
            actor_label="bounce",
            note="Every contact bounced."
            + (" The partner agency follows up by hand." if has_partner_contact else ""),
            attention=Attention.BOUNCED,
        )
    else:
        case_record_event(
            case=case,
            kind=CaseEvent.Kind.NOTE,
            actor_label="bounce",
            note=f"No letter to the next contact: {reason}",
        )
