"""Letter state changes: templates (versions, approval), queueing, sending, tracking, sweeps."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import smtplib
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from anymail.signals import AnymailTrackingEvent, EventType
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from campaign import selectors, workflow
from campaign.models import Case, CaseEvent, Contact, Partner, Suppression
from campaign.services import (
    IllegalTransition,
    case_record_event,
    case_transition,
    owner_is_suppressed,
)
from letters import emails, links, rendering
from letters.models import DeliveryEvent, Letter, LetterKind, LetterTemplate
from letters.tasks import TransientSendError, send_letter_task

logger = logging.getLogger(__name__)

STUCK_AFTER = timedelta(hours=6)


def letters_stuck(*, now: timezone.datetime | None = None) -> QuerySet[Letter]:
    """Letters left in QUEUED or SENDING for hours: reported for review, never resent, because
    a duplicate advisory letter is worse than a late one."""
    cutoff = (now or timezone.now()) - STUCK_AFTER
    return Letter.objects.filter(
        status__in=(Letter.Status.QUEUED, Letter.Status.SENDING), status_changed_at__lt=cutoff
    )


# --- Templates ----------------------------------------------------------------------------------
class ApprovalRefused(Exception):
    pass


def _issue_dict(issue: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(issue) and not isinstance(issue, type):
        return {k: v for k, v in dataclasses.asdict(issue).items() if _jsonable(v)}
    if hasattr(issue, "_asdict"):
        return dict(issue._asdict())
    return {"problem": str(issue)}


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def template_tone_problems(template: LetterTemplate) -> list[dict[str, Any]] | None:
    """The tone check's findings for a template, or None while letters.tone is not installed."""
    try:
        from letters import tone
    except ImportError as exc:
        if exc.name != "letters.tone":
            raise
        logger.warning("letters.tone is missing: template %s was not tone-checked.", template.pk)
        return None
    return [_issue_dict(issue) for issue in tone.tone_problems_for_template(template)]


@transaction.atomic
def template_new_version(
    *,
    partner: Partner,
    kind: str,
    language: str,
    subject: str,
    body_html: str,
    body_text: str = "",
    actor: AbstractBaseUser | None = None,
    source_path: str = "",
) -> LetterTemplate:
    """A new draft version; approved versions are never edited in place."""
    Partner.objects.select_for_update().filter(pk=partner.pk).first()  # serialise numbering
    last = LetterTemplate.objects.filter(partner=partner, kind=kind, language=language).aggregate(
        v=Max("version")
    )["v"]
    template = LetterTemplate(
        partner=partner,
        kind=kind,
        language=language,
        version=(last or 0) + 1,
        status=LetterTemplate.Status.DRAFT,
        subject=subject,
        body_html=body_html,
        body_text=body_text,
        source_path=source_path,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    template.tone_report = template_tone_problems(template) or []
    template.save()
    return template


def template_approval_refusal(template: LetterTemplate, actor: AbstractBaseUser) -> str | None:
    if not selectors.has_role(actor, "approver", template.partner):
        return f"Only an approver of {template.partner.country_name} can approve its templates" + (
            " (the lead's approvers approve only the lead's own)."
            if not template.partner.is_lead
            else "."
        )
    if template.status == LetterTemplate.Status.APPROVED:
        return "This version is already approved."
    for source in (template.subject, template.body_html, template.body_text):
        error = rendering.sandbox_check(source)
        if error:
            return f"The template does not render in the sandbox: {error}"
    problems = template_tone_problems(template)
    if problems:
        template.tone_report = problems
        LetterTemplate.objects.filter(pk=template.pk).update(tone_report=problems)
        return f"The tone check found {len(problems)} problem(s); fix them in a new version."
    return None


@transaction.atomic
def template_approve(*, template: LetterTemplate, actor: AbstractBaseUser) -> LetterTemplate:
    template = (
        LetterTemplate.objects.select_for_update().select_related("partner").get(pk=template.pk)
    )
    refusal = template_approval_refusal(template, actor)
    if refusal:
        raise ApprovalRefused(refusal)
    slot = LetterTemplate.objects.filter(
        partner=template.partner, kind=template.kind, language=template.language
    )
    slot.filter(status=LetterTemplate.Status.APPROVED).update(status=LetterTemplate.Status.RETIRED)
    now = timezone.now()
    template.status = LetterTemplate.Status.APPROVED
    template.approved_by = actor  # type: ignore[assignment]
    template.approved_at = now
    template.tone_report = []
    template.save(update_fields=["status", "approved_by", "approved_at", "tone_report"])
    return template


@dataclass
class LoadReport:
    created: int = 0
    unchanged: int = 0
    approved: int = 0
    problems: list[str] = field(default_factory=list)


def templates_load_shipped(
    *,
    partners: QuerySet[Partner] | None = None,
    actor: AbstractBaseUser | None = None,
    approve_as: AbstractBaseUser | None = None,
) -> LoadReport:
    """Shipped files -> versions for every partner in each of its letter languages. An unchanged
    file adds nothing; a changed one adds a draft. `approve_as` approves the shipped version
    where a slot has no approved version yet (the demo)."""
    report = LoadReport()
    files: dict[str, list[tuple[str, str, rendering.TemplateSource]]] = {}
    for language, kind, path in rendering.shipped_files():
        rel = f"templates/letters/{language}/{kind}.html"
        try:
            source = rendering.parse_shipped(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            report.problems.append(f"{rel}: {exc}")
            continue
        files.setdefault(language, []).append((kind, rel, source))
    for partner in partners if partners is not None else Partner.objects.all():
        for language in partner.letter_languages:
            for kind, rel, source in files.get(language, []):
                slot = LetterTemplate.objects.filter(partner=partner, kind=kind, language=language)
                template = slot.filter(source_path=rel).order_by("-version").first()
                if template and (template.subject, template.body_html) == (
                    source.subject,
                    source.body_html,
                ):
                    report.unchanged += 1
                else:
                    template = template_new_version(
                        partner=partner,
                        kind=kind,
                        language=language,
                        subject=source.subject,
                        body_html=source.body_html,
                        actor=actor,
                        source_path=rel,
                    )
                    report.created += 1
                if approve_as is None:
                    continue
                if slot.filter(status=LetterTemplate.Status.APPROVED).exists():
                    continue
                try:
                    template_approve(template=template, actor=approve_as)
                    report.approved += 1
                except ApprovalRefused as exc:
                    report.problems.append(f"{partner.country} {rel}: {exc}")
    return report


# --- Queueing -----------------------------------------------------------------------------------
class LetterNotQueued(Exception):
    pass


# Where each kind of letter may go out from; a fresh initial letter needs a `ready` case.
QUEUEABLE = {
    LetterKind.INITIAL: {Case.Status.READY, Case.Status.NOTIFIED, Case.Status.REMINDED},
    LetterKind.REMINDER: {Case.Status.NOTIFIED, Case.Status.REMINDED},
    LetterKind.FIXED: {Case.Status.FIXED},
}


def email_is_suppressed(email: str, *, partner: Partner) -> bool:
    """Whether `partner`'s letters must not go to this address (its own or a global one)."""
    return Suppression.objects.active().affecting(partner).filter(email__iexact=email).exists()


def letter_next_contact(case: Case, *, kind: str = LetterKind.INITIAL) -> Contact | None:
    """The first contact in the owner's chain that has not bounced, is not suppressed and has
    not had this letter yet. The partner agency itself follows up by hand, not by letter."""
    used = {
        e.lower()
        for e in Letter.objects.filter(case=case, kind=kind).values_list(
            "recipient_email", flat=True
        )
    }
    suppressed = {
        e.lower()
        for e in Suppression.objects.active()
        .affecting(case.partner_id)
        .values_list("email", flat=True)
        if e
    }
    contacts = case.server_owner.contacts.filter(bounced_at__isnull=True).exclude(
        kind=Contact.Kind.PARTNER
    )
    for contact in contacts.order_by("position"):
        if contact.email.lower() not in used and contact.email.lower() not in suppressed:
            return contact
    return None


IN_FLIGHT = (Letter.Status.QUEUED, Letter.Status.SENDING)
LIVE = (*IN_FLIGHT, Letter.Status.SENT, Letter.Status.DELIVERED)


def _superseded(letter: Letter) -> bool:
    """A later letter of this kind for the case is on its way or went out: staff (or a bounce)
    moved on to another contact, so this one must not lead to a second letter."""
    return Letter.objects.filter(
        case_id=letter.case_id, kind=letter.kind, pk__gt=letter.pk, status__in=LIVE
    ).exists()


def letter_queue_refusal(
    case: Case, *, kind: str = LetterKind.INITIAL, fresh: bool = False
) -> str | None:
    """Why this case cannot have this letter queued now, or None."""
    allowed = {Case.Status.READY} if fresh and kind == LetterKind.INITIAL else QUEUEABLE[kind]
    if case.status not in allowed:
        return f"its status is “{case.get_status_display()}”"
    # The case stays `ready` until the letter is sent: a second click would pick the next contact.
    if Letter.objects.filter(case=case, kind=kind, status__in=IN_FLIGHT).exists():
        return f"a {kind} letter is on its way already"
    if owner_is_suppressed(case.server_owner, partner=case.partner):
        return "the owner or its contacts asked not to be written to"
    if rendering.approved_template(case.partner, kind=kind, language=case.language) is None:
        return f"no approved {kind} template in “{case.language}” for {case.partner.country}"
    if letter_next_contact(case, kind=kind) is None:
        return "no usable contact left (all bounced, suppressed or already written to)"
    return None


@transaction.atomic
def letter_queue(
    *,
    case: Case,
    kind: str = LetterKind.INITIAL,
    actor: AbstractBaseUser | None = None,
    actor_label: str = "",
    fresh: bool = False,
    note: str = "",
) -> Letter:
    # Lock the case: two staff (or a webhook and a click) queueing at once pick one contact.
    case = (
        Case.objects.select_for_update(of=("self",))
        .select_related("partner", "server_owner")
        .get(pk=case.pk)
    )
    refusal = letter_queue_refusal(case, kind=kind, fresh=fresh)
    if refusal:
        raise LetterNotQueued(f"{case.reference}: {refusal}.")
    template = rendering.approved_template(case.partner, kind=kind, language=case.language)
    contact = letter_next_contact(case, kind=kind)
    assert template is not None and contact is not None
    now = timezone.now()
    try:
        with transaction.atomic():
            letter = Letter.objects.create(
                case=case,
                kind=kind,
                language=case.language,
                template=template,
                contact=contact,
                recipient_email=contact.email,
                status=Letter.Status.QUEUED,
                queued_at=now,
                status_changed_at=now,
            )
    except IntegrityError:  # the unique (case, kind, recipient): never the same letter twice
        raise LetterNotQueued(
            f"{case.reference}: a {kind} letter to {contact.email} exists already."
        ) from None
    case_record_event(
        case=case,
        kind=CaseEvent.Kind.LETTER_QUEUED,
        actor=actor,
        actor_label=actor_label,
        note=note or f"{letter.get_kind_display()} to {contact.email} ({contact.kind}).",
        data={"letter": str(letter.public_id), "template_version": template.version},
    )
    send_letter_task.delay_on_commit(letter.id)  # the worker must find a committed row
    return letter


@transaction.atomic
def letter_retry(*, letter: Letter, actor: AbstractBaseUser | None = None) -> bool:
    """A FAILED letter goes back to the queue (same recipient, same row)."""
    if _superseded(letter):
        return False
    moved = Letter.objects.filter(pk=letter.pk, status=Letter.Status.FAILED).update(
        status=Letter.Status.QUEUED, status_changed_at=timezone.now(), error=""
    )
    if moved:
        case_record_event(
            case=letter.case,
            kind=CaseEvent.Kind.LETTER_QUEUED,
            actor=actor,
            note=f"Retry of the failed letter to {letter.recipient_email}.",
            data={"letter": str(letter.public_id)},
        )
        send_letter_task.delay_on_commit(letter.pk)
    return bool(moved)


# --- Sending ------------------------------------------------------------------------------------
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


# --- Tracking -----------------------------------------------------------------------------------
POSTMARK_HARD_TYPES = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
POSTMARK_HARD_CODES = {1, 100000, 100002}


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


def bounce_kind(esp: str, event: AnymailTrackingEvent, raw: Any) -> str:
    """'hard', 'soft' or '' (not a bounce), from the ESP's own event, not anymail's summary."""
    if event.event_type == EventType.DEFERRED:
        return "soft"
    if event.event_type not in (EventType.BOUNCED, EventType.REJECTED):
        return ""
    raw = raw if isinstance(raw, dict) else {}
    if esp == "postmark":
        if raw.get("Type") in POSTMARK_HARD_TYPES or raw.get("TypeCode") in POSTMARK_HARD_CODES:
            return "hard"
        if raw.get("SuppressionReason") == "HardBounce":
            return "hard"
        return "soft" if raw.get("Type") or raw.get("TypeCode") else ""
    if esp == "mailgun":
        data = raw.get("event-data", raw)
        severity = data.get("severity")
        if severity:
            return "hard" if severity == "permanent" else "soft"
        return "hard" if data.get("event") in ("bounced", "failed") else ""
    if esp == "amazon_ses":
        bounce = raw.get("bounce") or {}
        kind = bounce.get("bounceType")
        if kind:
            return "hard" if kind == "Permanent" else "soft"
        return ""
    if esp == "sendgrid":
        if raw.get("event") == "bounce":
            return "soft" if raw.get("type") == "blocked" else "hard"
        if raw.get("event") == "dropped" and "bounce" in str(raw.get("reason", "")).lower():
            return "hard"
        return ""
    return "hard" if event.event_type == EventType.BOUNCED else ""


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
        pk=record.letter_id
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
        )
    else:
        case_record_event(
            case=case,
            kind=CaseEvent.Kind.NOTE,
            actor_label="bounce",
            note=f"No letter to the next contact: {reason}",
        )
