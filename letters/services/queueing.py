"""Queueing letters: who may get which letter, and putting it in the outbox."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from campaign.models import Case, CaseEvent, Contact, Partner, Suppression
from campaign.selectors import AnyUser
from campaign.services import case_record_event, owner_is_suppressed
from letters import rendering
from letters.models import Letter, LetterKind
from letters.tasks import dispatch_letters_task

STUCK_AFTER = timedelta(hours=6)


def letters_stuck(*, now: datetime | None = None) -> QuerySet[Letter]:
    """Letters left in QUEUED or SENDING for hours: reported for review, never resent, because
    a duplicate advisory letter is worse than a late one."""
    cutoff = (now or timezone.now()) - STUCK_AFTER
    return Letter.objects.filter(
        status__in=(Letter.Status.QUEUED, Letter.Status.SENDING), status_changed_at__lt=cutoff
    )


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
    # A blank address would match every owner-level suppression (whose email is blank).
    if not email.strip():
        return False
    return Suppression.objects.active().affecting(partner).filter(email__iexact=email).exists()


def address_problem(email: str) -> str | None:
    """Why a contact address cannot be written to, or None."""
    if not email.strip():
        return "the address is empty"
    try:
        validate_email(email)
    except ValidationError:
        return f"“{email}” is not a valid e-mail address"
    return None


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
        if address_problem(contact.email):
            continue
        if contact.email.lower() not in used and contact.email.lower() not in suppressed:
            return contact
    return None


# UNKNOWN may have gone out: nothing new of that kind until a person settles it.
IN_FLIGHT = (Letter.Status.QUEUED, Letter.Status.SENDING, Letter.Status.UNKNOWN)
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
    allowed = (
        {Case.Status.READY} if fresh and kind == LetterKind.INITIAL else QUEUEABLE[LetterKind(kind)]
    )
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
        bad = [
            problem
            for email in case.server_owner.contacts.filter(bounced_at__isnull=True)
            .exclude(kind=Contact.Kind.PARTNER)
            .values_list("email", flat=True)
            if (problem := address_problem(email))
        ]
        if bad:
            return "no usable contact left (" + "; ".join(bad) + ")"
        return "no usable contact left (all bounced, suppressed or already written to)"
    return None


@transaction.atomic
def letter_queue(
    *,
    case: Case,
    kind: str = LetterKind.INITIAL,
    actor: AnyUser | None = None,
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
    # The row is the outbox; the dispatcher sends it at the ESP's rate (the worker must find a
    # committed row, hence on commit).
    dispatch_letters_task.delay_on_commit()
    return letter


@transaction.atomic
def letter_retry(*, letter: Letter, actor: AnyUser | None = None) -> bool:
    """A FAILED letter goes back to the queue (same recipient, same row)."""
    if _superseded(letter):
        return False
    moved = Letter.objects.filter(pk=letter.pk, status=Letter.Status.FAILED).update(
        status=Letter.Status.QUEUED,
        status_changed_at=timezone.now(),
        error="",
        not_before=None,
        lease_until=None,
        claimed_by="",
        handed_at=None,
        attempts=0,
    )
    if moved:
        case_record_event(
            case=letter.case,
            kind=CaseEvent.Kind.LETTER_QUEUED,
            actor=actor,
            note=f"Retry of the failed letter to {letter.recipient_email}.",
            data={"letter": str(letter.public_id)},
        )
        dispatch_letters_task.delay_on_commit()
    return bool(moved)
