"""Every change to partners' cases goes through here, with its CaseEvent in the same transaction."""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone

from campaign import workflow
from campaign.models import (
    Campaign,
    Case,
    CaseEvent,
    CaseSequence,
    Contact,
    ServerOwner,
    Suppression,
)
from campaign.selectors import AnyUser
from scanning.models import OPEN_VERDICTS, Finding, ScanRun, Verdict


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
) -> Case:
    # Lock the row and re-read the status: two workers on one case must not both pass the check.
    locked = Case.objects.select_for_update().get(pk=case.pk)
    if not workflow.can_transition(locked.status, to_status):
        raise IllegalTransition(locked, to_status)
    from_status = locked.status
    now = timezone.now()
    review_reason = note[:255] if to_status == Case.Status.NEEDS_REVIEW else ""
    Case.objects.filter(pk=case.pk).update(
        status=to_status, status_changed_at=now, review_reason=review_reason
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
    case.status, case.status_changed_at, case.review_reason = to_status, now, review_reason
    return case


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


def owner_is_suppressed(owner: ServerOwner) -> bool:
    """Suppressed as a whole, or every usable contact has asked not to be written to."""
    now = timezone.now()
    active = Suppression.objects.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
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
        )
    elif created or case.status in (Case.Status.NEW, Case.Status.NEEDS_REVIEW):
        case_settle(case=case, actor_label=actor_label)
    return case


def case_settle(*, case: Case, actor_label: str = "system") -> Case:
    """Move a new or reviewed case to where its evidence and contacts put it."""
    owner = case.server_owner
    strong = case.findings.filter(
        verdict__in=(Verdict.CONFIRMED_OPEN, Verdict.LIKELY_OPEN)
    ).exists()
    if owner_is_suppressed(owner):
        target, note = Case.Status.SUPPRESSED, "A contact of this owner asked not to be written to."
    elif not strong:
        target, note = Case.Status.NEEDS_REVIEW, "Weak evidence only."
    elif triage := owner_triage_reason(owner):
        target, note = Case.Status.NEEDS_REVIEW, triage
    elif not _letter_contacts(owner).exists():
        target, note = Case.Status.NEEDS_REVIEW, "No usable contact."
    else:
        target, note = Case.Status.READY, ""
    if target != case.status and workflow.can_transition(case.status, target):
        case_transition(case=case, to_status=target, actor_label=actor_label, note=note)
    return case


# --- The recipient's remediation page ------------------------------------------------------------
class RecheckRateLimited(Exception):
    def __init__(self, case: Case, seconds_left: int) -> None:
        super().__init__(f"Case {case.reference} was re-checked recently; {seconds_left}s left.")
        self.seconds_left = seconds_left


def case_target_ids(case: Case) -> list[int]:
    """The targets on record for a case: the only addresses a re-check may probe."""
    return sorted(set(case.findings.values_list("target_id", flat=True)))


def case_last_recheck(case: Case) -> CaseEvent | None:
    return (
        CaseEvent.objects.filter(case=case, kind=CaseEvent.Kind.RECHECK_REQUESTED)
        .order_by("-at", "-id")
        .first()
    )


@transaction.atomic
def case_request_recheck(*, case: Case, actor_label: str = "recipient") -> ScanRun:
    """Queue a re-probe of the case's own targets, at most once per RECHECK_MIN_INTERVAL."""
    from scanning.services import scan_run_start

    # The lock serialises two clicks at once: the second sees the first one's event.
    case = Case.objects.select_for_update().get(pk=case.pk)
    last = case_last_recheck(case)
    interval = settings.RECHECK_MIN_INTERVAL
    if last is not None and interval:
        left = int((last.at - timezone.now()).total_seconds()) + interval
        if left > 0:
            raise RecheckRateLimited(case, left)
    target_ids = case_target_ids(case)
    run = scan_run_start(
        target_ids=target_ids, label=f"Re-check of {case.reference}", confirm_relays=True
    )
    case_record_event(
        case=case,
        kind=CaseEvent.Kind.RECHECK_REQUESTED,
        actor_label=actor_label,
        note=f"Re-check of {len(target_ids)} server(s) queued (scan #{run.pk}).",
        data={"scan_run": run.pk, "targets": target_ids},
    )
    return run


CORRECTION_REASONS = {
    "not_mine": "The recipient says this is not their server.",
    "other_contact": "The recipient asks to write to another contact: {email}.",
}


@transaction.atomic
def case_correction(
    *, case: Case, kind: str, email: str = "", note: str = "", actor_label: str = "recipient"
) -> CaseEvent:
    """A correction from the recipient: recorded and sent to the partner's review queue. Nothing
    else changes automatically (no contact added, no owner changed): staff decide."""
    if kind not in CORRECTION_REASONS:
        raise ValueError(f"unknown correction {kind!r}")
    case = Case.objects.select_for_update().get(pk=case.pk)
    reason = CORRECTION_REASONS[kind].format(email=email)
    event = case_record_event(
        case=case,
        kind=CaseEvent.Kind.CORRECTION,
        actor_label=actor_label,
        note=" ".join(part for part in (reason, note) if part),
        data={"correction": kind, "email": email, "note": note},
    )
    if workflow.can_transition(case.status, Case.Status.NEEDS_REVIEW):
        case_transition(
            case=case, to_status=Case.Status.NEEDS_REVIEW, actor_label=actor_label, note=reason
        )
    elif case.status == Case.Status.NEEDS_REVIEW:  # already queued: say why once more
        Case.objects.filter(pk=case.pk).update(review_reason=reason[:255])
    return event


@transaction.atomic
def case_opt_out(
    *, case: Case, email: str, reason: str = "", actor_label: str = "recipient"
) -> Suppression:
    """The recipient asks not to be written to about this server: their address is suppressed
    (every letter service checks it before sending), the case stops where the workflow allows."""
    case = (
        Case.objects.select_related("server_owner").select_for_update(of=("self",)).get(pk=case.pk)
    )
    now = timezone.now()
    active = Suppression.objects.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    # With no address known (a link without a letter, an owner without contacts): the owner.
    who = {"email": email} if email else {"server_owner": case.server_owner}
    lookup = {"email__iexact": email} if email else {"server_owner": case.server_owner}
    suppression = active.filter(reason=Suppression.Reason.OPT_OUT, **lookup).first()
    if suppression is None:
        suppression = Suppression.objects.create(
            partner=case.partner,
            reason=Suppression.Reason.OPT_OUT,
            **who,
            note=f"Opt-out on the remediation page of {case.reference} "
            f"({case.server_owner.name})." + (f" Reason given: {reason}" if reason else ""),
        )
    case_record_event(
        case=case,
        kind=CaseEvent.Kind.OPT_OUT,
        actor_label=actor_label,
        note=f"{email or 'The owner'} asked not to be written to about this server."
        + (f" Reason: {reason}" if reason else ""),
        data={"email": email, "reason": reason, "suppression": suppression.pk},
    )
    if workflow.can_transition(case.status, Case.Status.SUPPRESSED):
        case_transition(
            case=case,
            to_status=Case.Status.SUPPRESSED,
            actor_label=actor_label,
            note=f"Opt-out by {email or 'the owner'}.",
        )
    return suppression


# Statuses in which a verified-closed server closes the case (the workflow allows FIXED).
RECHECKABLE_STATUSES = frozenset(
    s for s in Case.Status.values if workflow.can_transition(s, Case.Status.FIXED)
)


def case_apply_recheck_result(*, finding: Finding, actor_label: str = "re-probe") -> list[Case]:
    """A `closed` finding: each open case holding that target records it; a case whose every
    target is now closed is verified fixed, and `case_fixed` is sent once that is committed."""
    from campaign.signals import case_fixed

    if finding.verdict != Verdict.CLOSED:
        return []
    fixed: list[Case] = []
    # One port may speak several protocols: only a case holding this very service is concerned.
    case_ids = (
        Case.objects.filter(
            findings__target_id=finding.target_id,
            findings__protocol=finding.protocol,
            status__in=RECHECKABLE_STATUSES,
        )
        .values_list("pk", flat=True)
        .distinct()
    )
    for case_id in list(case_ids):
        with transaction.atomic():
            case = Case.objects.select_for_update().get(pk=case_id)
            if case.status not in RECHECKABLE_STATUSES:
                continue  # moved on meanwhile
            case.findings.add(finding)
            case_record_event(
                case=case,
                kind=CaseEvent.Kind.RECHECK_RESULT,
                actor_label=actor_label,
                note=f"{finding.target} is closed now.",
                data={
                    "finding": finding.pk,
                    "verdict": finding.verdict,
                    "scan_run": finding.scan_run_id,
                },
            )
            latest: dict[tuple[int, str], Finding] = {}  # per service: target and protocol
            for f in case.findings.order_by("probed_at", "id"):
                latest[(f.target_id, f.protocol)] = f
            if latest and all(f.verdict == Verdict.CLOSED for f in latest.values()):
                case_transition(
                    case=case,
                    to_status=Case.Status.FIXED,
                    actor_label=actor_label,
                    kind=CaseEvent.Kind.STATUS_CHANGED,
                    note="Verified fixed: a re-probe found every server of this case closed.",
                    data={"finding": finding.pk, "scan_run": finding.scan_run_id},
                )
                transaction.on_commit(functools.partial(case_fixed.send, sender=Case, case=case))
                fixed.append(case)
    return fixed
