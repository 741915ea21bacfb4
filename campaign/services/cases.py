"""Cases and their state: every change with its CaseEvent in the same transaction, the findings
a case holds, when it is ready for a letter, and what needs a person (the work queue)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone

from campaign import schedule, workflow
from campaign.models import (
    Attention,
    Campaign,
    Case,
    CaseEvent,
    CaseSequence,
    Contact,
    Partner,
    ServerOwner,
    Suppression,
)
from campaign.selectors import AnyUser
from scanning.models import OPEN_VERDICTS, Finding, Verdict

logger = logging.getLogger(__name__)


class IllegalTransition(Exception):
    def __init__(self, case: Case, to_status: str) -> None:
        super().__init__(f"Case {case.reference} cannot go from {case.status} to {to_status}.")
        self.case = case
        self.to_status = to_status


def _actor_fields(actor: AnyUser | None, actor_label: str) -> dict[str, Any]:
    if actor is not None and actor.is_authenticated:
        return {"actor": actor, "actor_label": actor_label or actor.get_username()}
    return {"actor": None, "actor_label": actor_label or "system"}


@transaction.atomic
def case_transition(
    *,
    case: Case,
    to_status: str,
    actor: AnyUser | None = None,
    actor_label: str = "",
    note: str = "",
    kind: str = CaseEvent.Kind.STATUS_CHANGED,
    data: dict[str, Any] | None = None,
    attention: str | None = None,
) -> Case:
    """The only writer of a case's status. It also keeps the case's schedule (next action) and
    whether it needs a person (`attention`, the work queue): `attention` names the reason when
    the caller knows better than the default for the new status."""
    # Lock the row and re-read the status: two workers on one case must not both pass the check.
    locked = Case.objects.select_for_update().get(pk=case.pk)
    if not workflow.can_transition(locked.status, to_status):
        raise IllegalTransition(locked, to_status)
    from_status = locked.status
    now = timezone.now()
    if to_status == Case.Status.NEEDS_REVIEW and not note.strip():
        # Never an empty review reason: whoever sends a case to review says so at least.
        who = actor.get_username() if actor is not None and actor.is_authenticated else ""
        note = f"Sent to review by {who or actor_label or 'the system'}."
    review_reason = note[:255] if to_status == Case.Status.NEEDS_REVIEW else ""
    locked.status, locked.status_changed_at, locked.review_reason = to_status, now, review_reason
    if to_status == Case.Status.NOTIFIED:
        # The schedule counts from the letter that made the case notified (again, after a reopen).
        locked.notified_at, locked.reminder_step_at = now, None
    locked.attention, locked.attention_note = _attention_after(locked, to_status, attention, note)
    locked.attention_at = now if locked.attention else None
    plan = schedule.case_plan(locked, locked.campaign, now)
    locked.next_action, locked.next_action_at = plan.action, plan.at
    Case.objects.filter(pk=case.pk).update(
        status=to_status,
        status_changed_at=now,
        review_reason=review_reason,
        notified_at=locked.notified_at,
        reminder_step_at=locked.reminder_step_at,
        attention=locked.attention,
        attention_note=locked.attention_note,
        attention_at=locked.attention_at,
        next_action=plan.action,
        next_action_at=plan.at,
    )
    CaseEvent.objects.create(
        case=locked,
        at=now,
        kind=kind,
        from_status=from_status,
        to_status=to_status,
        note=note,
        data=data or {},
        **_actor_fields(actor, actor_label),
    )
    for name in (
        "status",
        "status_changed_at",
        "review_reason",
        "notified_at",
        "reminder_step_at",
        "attention",
        "attention_note",
        "attention_at",
        "next_action",
        "next_action_at",
    ):
        setattr(case, name, getattr(locked, name))
    return case


def _attention_after(case: Case, to_status: str, given: str | None, note: str) -> tuple[str, str]:
    """Whether a case in its new status needs a person, and why."""
    if given is not None:
        return given, note[:255]
    if to_status == Case.Status.NEEDS_REVIEW:
        kind = Attention.REOPENED if case.attention == Attention.REOPENED else Attention.REVIEW
        return kind, note[:255]
    if to_status == Case.Status.ESCALATED:
        if case.attention == Attention.BOUNCED:  # the more telling reason stays
            return case.attention, case.attention_note
        return Attention.ESCALATED, note[:255]
    if to_status == Case.Status.SUPPRESSED:
        return case.attention, case.attention_note
    return "", ""


@transaction.atomic
def case_record_event(
    *,
    case: Case,
    kind: str,
    actor: AnyUser | None = None,
    actor_label: str = "",
    note: str = "",
    data: dict[str, Any] | None = None,
) -> CaseEvent:
    """An event that does not change the status (a note, a letter sent, a correction)."""
    return CaseEvent.objects.create(
        case=case,
        kind=kind,
        note=note,
        data=data or {},
        from_status=case.status,
        to_status=case.status,
        **_actor_fields(actor, actor_label),
    )


def next_case_reference(year: int) -> str:
    # Must run inside the caller's transaction: the row lock serialises concurrent openers.
    CaseSequence.objects.get_or_create(year=year)
    CaseSequence.objects.filter(year=year).update(last=F("last") + 1)
    last = CaseSequence.objects.select_for_update().get(year=year).last
    return f"SYS-{year}-{last:06d}"


def case_language(owner: ServerOwner) -> str:
    """The partner's first letter language, unless the owner prefers another it supports."""
    languages = owner.partner.letter_languages or ["en"]
    if owner.preferred_language and owner.preferred_language in languages:
        return owner.preferred_language
    return languages[0]


def owner_triage_reason(owner: ServerOwner) -> str:
    """Why the lead agency holds this owner: no partner for its country, or no country known."""
    if not owner.partner.is_lead or owner.country == owner.partner.country:
        return ""
    if not owner.country:
        return "Owner's country unknown: lead agency triage."
    return f"No partner agency for {owner.country}: lead agency triage."


def owner_is_suppressed(owner: ServerOwner, *, partner: Partner) -> bool:
    """Suppressed as a whole, or every usable contact has asked not to be written to, as far as
    `partner`'s letters go (the case's partner): its own suppressions and the global ones."""
    active = Suppression.objects.active().affecting(partner)
    if active.filter(server_owner=owner).exists():
        return True
    # The partner agency's own address is never written to, so it keeps no letter going; and
    # addresses compare as letters.services compares them: case-insensitively.
    emails = {e.lower() for e in _letter_contacts(owner).values_list("email", flat=True)}
    suppressed = {
        e.lower()
        for e in active.annotate(email_lower=Lower("email"))
        .filter(email_lower__in=emails)
        .values_list("email", flat=True)
    }
    return bool(emails) and emails <= suppressed


def _letter_contacts(owner: ServerOwner) -> QuerySet[Contact]:
    """Contacts a letter can go to: not bounced, not the partner agency's follow-up address."""
    return owner.contacts.filter(bounced_at__isnull=True).exclude(kind=Contact.Kind.PARTNER)


@transaction.atomic
def case_add_finding(
    *, campaign: Campaign, owner: ServerOwner, finding: Finding, actor_label: str = "system"
) -> Case:
    """Open the owner's case in this campaign, or join it; a finding on a fixed case reopens it."""
    case = Case.objects.select_for_update().filter(server_owner=owner, campaign=campaign).first()
    created = case is None
    if case is None:
        now = timezone.now()
        case = Case.objects.create(
            reference=next_case_reference(now.year),
            campaign=campaign,
            server_owner=owner,
            partner=owner.partner,
            language=case_language(owner),
            opened_at=now,
        )
        CaseEvent.objects.create(
            case=case,
            kind=CaseEvent.Kind.OPENED,
            to_status=case.status,
            actor_label=actor_label,
            note=f"Opened for {owner.name}.",
        )
    case.findings.add(finding)
    CaseEvent.objects.create(
        case=case,
        kind=CaseEvent.Kind.FINDING_ADDED,
        from_status=case.status,
        to_status=case.status,
        actor_label=actor_label,
        note=f"{finding.target} {finding.verdict}",
        data={"finding": finding.pk, "verdict": finding.verdict},
    )
    if case.status in workflow.CLOSED_STATUSES and finding.verdict in OPEN_VERDICTS:
        case_transition(
            case=case,
            to_status=Case.Status.NEEDS_REVIEW,
            actor_label=actor_label,
            kind=CaseEvent.Kind.REOPENED,
            note=f"New open finding on {finding.target}.",
            attention=Attention.REOPENED,
        )
    elif created or case.status in (Case.Status.NEW, Case.Status.NEEDS_REVIEW):
        case_settle(case=case, actor_label=actor_label)
    return case


# The review reason of a case held back only because its evidence is weak: stronger evidence
# (a confirmation by the canary) settles it again.
WEAK_EVIDENCE_ONLY = "Weak evidence only."


def case_finding_revised(
    *,
    finding: Finding,
    previous_verdict: str,
    actor_label: str = "canary",
    by_canary: bool | None = None,
) -> list[Case]:
    """A provisional finding became final (scanning's `finding_confirmed`/`finding_settled`,
    sent inside scanning's transaction): each case holding it records the new verdict, and a
    case waiting only for stronger evidence is settled again. `by_canary`: a late canary hit
    raised it (a proxy's can raise it to likely-open only); None: judged by the verdict."""
    confirmed = finding.verdict == Verdict.CONFIRMED_OPEN if by_canary is None else by_canary
    kind = CaseEvent.Kind.FINDING_CONFIRMED if confirmed else CaseEvent.Kind.FINDING_SETTLED
    if not confirmed:
        why = "no delivery to our canary by the deadline"
    elif finding.protocol == "smtp":
        why = "our canary received the test message"
    else:
        why = "our canary logged the request the proxy passed on"
    cases = list(Case.objects.select_for_update().filter(findings=finding).order_by("pk"))
    for case in cases:
        CaseEvent.objects.create(
            case=case,
            kind=kind,
            from_status=case.status,
            to_status=case.status,
            actor_label=actor_label,
            note=f"{finding.target}: {previous_verdict} → {finding.verdict}, {why}.",
            data={
                "finding": finding.pk,
                "from_verdict": previous_verdict,
                "verdict": finding.verdict,
            },
        )
        if case.status == Case.Status.NEW or (
            case.status == Case.Status.NEEDS_REVIEW and case.review_reason == WEAK_EVIDENCE_ONLY
        ):
            case_settle(case=case, actor_label=actor_label)
    return cases


def case_settle(*, case: Case, actor_label: str = "system") -> Case:
    """Move a new or reviewed case to where its evidence and contacts put it."""
    owner = case.server_owner
    strong = case.findings.filter(
        verdict__in=(Verdict.CONFIRMED_OPEN, Verdict.LIKELY_OPEN)
    ).exists()
    attention: str | None = None
    if owner_is_suppressed(owner, partner=case.partner):
        target, note = Case.Status.SUPPRESSED, "A contact of this owner asked not to be written to."
    elif not strong:
        target, note = Case.Status.NEEDS_REVIEW, WEAK_EVIDENCE_ONLY
    elif triage := owner_triage_reason(owner):
        target, note, attention = Case.Status.NEEDS_REVIEW, triage, Attention.TRIAGE
    elif not _letter_contacts(owner).exists():
        target, note = Case.Status.NEEDS_REVIEW, "No usable contact."
    else:
        target, note = Case.Status.READY, ""
    if target != case.status and workflow.can_transition(case.status, target):
        case_transition(
            case=case, to_status=target, actor_label=actor_label, note=note, attention=attention
        )
    return case


# --- What needs a person (the work queue) --------------------------------------------------------
@transaction.atomic
def case_attention_set(*, case: Case, attention: str, note: str, **fields: Any) -> None:
    now = timezone.now()
    Case.objects.filter(pk=case.pk).update(
        attention=attention, attention_note=note[:255], attention_at=now, **fields
    )
    case.attention, case.attention_note, case.attention_at = attention, note[:255], now
    for name, value in fields.items():
        setattr(case, name, value)


@transaction.atomic
def case_attention_clear(
    *, case: Case, actor: AnyUser | None, note: str, actor_label: str = ""
) -> None:
    """A person dealt with what the work queue showed; the case leaves the queue."""
    locked = Case.objects.select_for_update().get(pk=case.pk)
    if not locked.attention:
        return
    case_record_event(
        case=locked,
        kind=CaseEvent.Kind.HANDLED,
        actor=actor,
        actor_label=actor_label,
        note=note,
        data={"attention": locked.attention},
    )
    Case.objects.filter(pk=case.pk).update(attention="", attention_note="", attention_at=None)
    case.attention, case.attention_note, case.attention_at = "", "", None
