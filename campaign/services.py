"""Every change to partners' cases goes through here, with its CaseEvent in the same transaction."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
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
    NextAction,
    Partner,
    ServerOwner,
    Suppression,
)
from campaign.selectors import AnyUser
from scanning.models import OPEN_VERDICTS, Finding, ScanRun, Verdict

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
    *, finding: Finding, previous_verdict: str, actor_label: str = "canary"
) -> list[Case]:
    """A provisional finding became final (scanning's `finding_confirmed`/`finding_settled`,
    sent inside scanning's transaction): each case holding it records the new verdict, and a
    case waiting only for stronger evidence is settled again."""
    confirmed = finding.verdict == Verdict.CONFIRMED_OPEN
    kind = CaseEvent.Kind.FINDING_CONFIRMED if confirmed else CaseEvent.Kind.FINDING_SETTLED
    why = (
        "our canary received the test message"
        if confirmed
        else "no delivery to our canary by the deadline"
    )
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
    # The lock serialises two clicks at once: the second sees the first one's event.
    case = Case.objects.select_for_update().get(pk=case.pk)
    last = case_last_recheck(case)
    interval = settings.RECHECK_MIN_INTERVAL
    if last is not None and interval:
        left = int((last.at - timezone.now()).total_seconds()) + interval
        if left > 0:
            raise RecheckRateLimited(case, left)
    return case_reprobe_start(case=case, actor_label=actor_label)


@transaction.atomic
def case_reprobe_start(*, case: Case, actor_label: str, why: str = "") -> ScanRun:
    """Re-probe the case's targets on record on the `scans` queue, with the same probes and
    relay confirmation as any campaign scan. The recipient's "check again" and the schedule
    both come here; the schedule's reminder and escalation read the run's result."""
    from scanning.services import scan_run_start

    target_ids = case_target_ids(case)
    run = scan_run_start(
        target_ids=target_ids, label=f"Re-check of {case.reference}", confirm_relays=True
    )
    now = timezone.now()
    Case.objects.filter(pk=case.pk).update(reprobe_requested_at=now, reprobe_run=run)
    case.reprobe_requested_at, case.reprobe_run = now, run
    queued = f"Re-check of {len(target_ids)} server(s) queued (scan #{run.pk})."
    case_record_event(
        case=case,
        kind=CaseEvent.Kind.RECHECK_REQUESTED,
        actor_label=actor_label,
        note=f"{why}: {queued}" if why else queued,
        data={"scan_run": run.pk, "targets": target_ids},
    )
    return run


CORRECTION_REASONS = {
    "not_mine": "The recipient says this is not their server.",
    "other_contact": "The recipient asks to write to another contact: {contact}.",
}


@transaction.atomic
def case_correction(
    *,
    case: Case,
    kind: str,
    email: str = "",
    name: str = "",
    note: str = "",
    actor_label: str = "recipient",
) -> CaseEvent:
    """A correction from the recipient: recorded and sent to the partner's review queue. Nothing
    else changes automatically (no contact added, no owner changed): staff decide. Every
    suggestion is its own event with its data; a later one never replaces an earlier one."""
    if kind not in CORRECTION_REASONS:
        raise ValueError(f"unknown correction {kind!r}")
    case = Case.objects.select_for_update().get(pk=case.pk)
    contact = f"{name} <{email}>" if name and email else email
    reason = CORRECTION_REASONS[kind].format(contact=contact)
    event = case_record_event(
        case=case,
        kind=CaseEvent.Kind.CORRECTION,
        actor_label=actor_label,
        note=" ".join(part for part in (reason, note) if part),
        data={"correction": kind, "email": email, "name": name, "note": note},
    )
    attention = Attention.NOT_MINE if kind == "not_mine" else Attention.OTHER_CONTACT
    if workflow.can_transition(case.status, Case.Status.NEEDS_REVIEW):
        case_transition(
            case=case,
            to_status=Case.Status.NEEDS_REVIEW,
            actor_label=actor_label,
            note=reason,
            attention=attention,
        )
    else:  # already in review, or past it: a person reads it all the same
        fields: dict[str, Any] = {}
        if case.status == Case.Status.NEEDS_REVIEW and not case.review_reason:
            # The first reason stands; this one is in its own event.
            fields["review_reason"] = reason[:255]
        case_attention_set(case=case, attention=attention, note=reason, **fields)
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
    active = Suppression.objects.active().affecting(case.partner)
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
    # A person acknowledges it (and checks nothing else is on its way to that address).
    case_attention_set(
        case=case, attention=Attention.OPT_OUT, note=f"Opt-out by {email or 'the owner'}."
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


# --- The schedule --------------------------------------------------------------------------------
SCHEDULE_ACTOR = "schedule"
# A claimed case whose task never ran (a lost worker) is claimed again after this.
SWEEP_LEASE = timedelta(minutes=15)
SWEEP_BATCH = 500


def case_reschedule(*, case: Case, now: datetime | None = None) -> schedule.Plan:
    """Write the case's plan (next action and when) from its current state."""
    now = now or timezone.now()
    plan = schedule.case_plan(case, case.campaign, now)
    Case.objects.filter(pk=case.pk).update(
        next_action=plan.action, next_action_at=plan.at, schedule_claimed_until=None
    )
    case.next_action, case.next_action_at, case.schedule_claimed_until = plan.action, plan.at, None
    return plan


def _schedule_again(case: Case, action: str, at: datetime) -> None:
    Case.objects.filter(pk=case.pk).update(
        next_action=action, next_action_at=at, schedule_claimed_until=None
    )
    case.next_action, case.next_action_at = action, at


@dataclass
class SweepReport:
    claimed: int = 0
    lines: list[str] = field(default_factory=list)


def _due_cases(now: datetime) -> QuerySet[Case]:
    return Case.objects.filter(
        next_action_at__lte=now, campaign__is_paused=False, partner__automation_paused=False
    ).filter(Q(schedule_claimed_until__isnull=True) | Q(schedule_claimed_until__lte=now))


def cases_overdue(*, now: datetime) -> QuerySet[Case]:
    """Due for longer than a few sweeps and claimed by none: the sweep is not running."""
    return _due_cases(now - 3 * SWEEP_LEASE).filter(
        Q(schedule_claimed_until__isnull=True) | Q(schedule_claimed_until__lte=now)
    )


def schedule_sweep(
    *,
    now: datetime | None = None,
    inline: bool = False,
    batch_size: int = SWEEP_BATCH,
    max_cases: int | None = None,
) -> SweepReport:
    """Claim due cases in batches and hand each to `case_advance`: queued on `default` (the
    beat's sweep) or run here (`inline`, the campaign_tick command). Two sweeps at once claim
    disjoint cases (SKIP LOCKED, then a lease), so none is acted on twice or skipped."""
    from campaign.tasks import advance_case_task

    now = now or timezone.now()
    report = SweepReport()
    rounds: dict[int, int] = {}
    while max_cases is None or report.claimed < max_cases:
        size = batch_size if max_cases is None else min(batch_size, max_cases - report.claimed)
        with transaction.atomic():
            due = (
                _due_cases(now)
                .order_by("next_action_at", "id")
                .select_for_update(skip_locked=True, of=("self",))
            )
            ids = list(due.values_list("id", flat=True)[:size])
            if not ids:
                break
            Case.objects.filter(id__in=ids).update(schedule_claimed_until=now + SWEEP_LEASE)
        report.claimed += len(ids)
        for case_id in ids:
            if not inline:
                advance_case_task.delay(case_id)
                continue
            # A case whose steps fall due one after another (long overdue) may come back in
            # this sweep; a few rounds at most, then it waits for the lease.
            rounds[case_id] = rounds.get(case_id, 0) + 1
            if rounds[case_id] > 3:
                continue
            try:
                report.lines.append(case_advance(case_id=case_id, now=now))
            except Exception as exc:  # one broken case must not stop the sweep; its lease expires
                logger.exception("schedule: case %s failed", case_id)
                report.lines.append(f"case #{case_id}: failed ({type(exc).__name__}: {exc})")
    if not inline and report.claimed:
        report.lines.append(f"{report.claimed} case(s) queued")
    return report


def case_advance(*, case_id: int, now: datetime | None = None) -> str:
    """Take the case's due step, if it is still due once the case is locked. Returns a line
    saying what happened."""
    now = now or timezone.now()
    with transaction.atomic():
        # Waits for the row rather than skipping it: a sweep's claim (SKIP LOCKED) may hold it
        # for a moment after re-checking it, and a skipped case would wait out its lease.
        case = (
            Case.objects.select_for_update(of=("self",))
            .select_related("campaign", "partner", "server_owner")
            .filter(pk=case_id)
            .first()
        )
        if case is None:
            return f"case #{case_id}: gone"
        if case.campaign.is_paused or case.partner.automation_paused:
            Case.objects.filter(pk=case.pk).update(schedule_claimed_until=None)
            return f"{case.reference}: paused"
        if case.next_action_at is None or case.next_action_at > now:
            Case.objects.filter(pk=case.pk).update(schedule_claimed_until=None)
            return f"{case.reference}: not due"
        plan = schedule.case_plan(case, case.campaign, now)
        if not plan.action or plan.at is None or plan.at > now:
            case_reschedule(case=case, now=now)
            return f"{case.reference}: rescheduled ({case.next_action_label})"
        step = STEPS[plan.action]
        line = step(case, now)
        Case.objects.filter(pk=case.pk).update(schedule_claimed_until=None)
        return f"{case.reference}: {line}"


def _days_since(then: datetime, now: datetime) -> int:
    return max(0, (now - then).days)


def _letter_at(case: Case) -> datetime:
    return case.notified_at or case.status_changed_at


def _event(case: Case, note: str, **data: Any) -> None:
    case_record_event(
        case=case,
        kind=CaseEvent.Kind.SCHEDULED,
        actor_label=SCHEDULE_ACTOR,
        note=note,
        data=data,
    )


def _fresh_outcome(case: Case, now: datetime, action: str, step_name: str) -> str | None:
    """The result of a re-probe of the last 48 hours, or None after queueing one (or while it
    runs): the step comes back when it is done."""
    outcome = schedule.reprobe_outcome(case, case_target_ids(case), now)
    if outcome is None:
        case_reprobe_start(
            case=case,
            actor_label=SCHEDULE_ACTOR,
            why=f"{step_name} is due: re-probe first, "
            f"{_days_since(_letter_at(case), now)} days after the letter",
        )
        _schedule_again(case, action, now + schedule.REPROBE_WAIT)
        return None
    if outcome == schedule.Seen.PENDING:
        _schedule_again(case, action, now + schedule.REPROBE_WAIT)
        return None
    return outcome


def _seen_at(case: Case) -> str:
    return schedule.short_date(case.reprobe_requested_at or timezone.now())


def _step_reprobe(case: Case, now: datetime) -> str:
    if case.status == Case.Status.NEEDS_REVIEW:
        why = "re-probe: open again after a fix, before a person decides"
    else:
        why = f"re-probe: {_days_since(_letter_at(case), now)} days after the letter"
    case_reprobe_start(case=case, actor_label=SCHEDULE_ACTOR, why=why)
    case_reschedule(case=case, now=now)
    return f"re-probe queued; next: {case.next_action_label}"


def _step_reminder(case: Case, now: datetime) -> str:
    from campaign.signals import case_reminder_due

    outcome = _fresh_outcome(case, now, NextAction.REMINDER, "reminder")
    if outcome is None:
        return f"reminder waits for a re-probe ({case.next_action_label})"
    seen = _seen_at(case)
    if outcome != schedule.Seen.OPEN:
        # Never remind a server we have not just seen open.
        again = now + schedule.NOT_SEEN_OPEN_RETRY
        _event(
            case,
            f"no reminder: the re-probe of {seen} found it {schedule.SEEN_WORDS[outcome]}; "
            f"looking again on {schedule.short_date(again)}",
            outcome=outcome,
        )
        _schedule_again(case, NextAction.REMINDER, again)
        return f"no reminder (re-probe: {outcome})"
    why = (
        f"reminder: still open at re-probe of {seen}, "
        f"{_days_since(_letter_at(case), now)} days after the letter"
    )
    Case.objects.filter(pk=case.pk).update(reminder_step_at=now)
    case.reminder_step_at = now
    refusals = [
        str(response)
        for _receiver, response in case_reminder_due.send(sender=Case, case=case, note=why)
        if response
    ]
    if refusals:
        _event(case, f"no reminder letter: {'; '.join(refusals)}", outcome=outcome)
    else:
        _event(case, why, outcome=outcome)
    case_reschedule(case=case, now=now)
    return "reminder queued" if not refusals else f"reminder refused: {'; '.join(refusals)}"


def _step_escalate(case: Case, now: datetime) -> str:
    if case.status == Case.Status.NEEDS_REVIEW:  # every contact bounced
        why = "escalated: every contact bounced; the partner follows up in its own way"
    else:
        outcome = _fresh_outcome(case, now, NextAction.ESCALATE, "escalation")
        if outcome is None:
            return f"escalation waits for a re-probe ({case.next_action_label})"
        why = (
            f"escalated: {schedule.SEEN_WORDS[outcome]} at re-probe of {_seen_at(case)}, "
            f"{_days_since(_letter_at(case), now)} days after the letter (final deadline); "
            "the partner follows up in its own way"
        )
    case_transition(
        case=case,
        to_status=Case.Status.ESCALATED,
        actor_label=SCHEDULE_ACTOR,
        note=why,
    )
    return why


def _step_unresponsive(case: Case, now: datetime) -> str:
    outcome = _fresh_outcome(case, now, NextAction.UNRESPONSIVE, "closing")
    if outcome is None:
        return f"closing waits for a re-probe ({case.next_action_label})"
    why = (
        f"unresponsive: no change in {_days_since(case.status_changed_at, now)} days since the "
        f"escalation of {schedule.short_date(case.status_changed_at)}; "
        f"{schedule.SEEN_WORDS[outcome]} at re-probe of {_seen_at(case)}"
    )
    case_transition(
        case=case, to_status=Case.Status.UNRESPONSIVE, actor_label=SCHEDULE_ACTOR, note=why
    )
    return why


def _step_close(case: Case, now: datetime) -> str:
    end = case.campaign.ends_on
    if case.status in schedule.SCHEDULED_STATUSES:
        to_status = Case.Status.UNRESPONSIVE
        why = f"unresponsive: the campaign ended on {end}, the server not verified fixed"
    else:
        to_status = Case.Status.WITHDRAWN
        why = f"withdrawn: the campaign ended on {end} before a letter went out"
    case_transition(case=case, to_status=to_status, actor_label=SCHEDULE_ACTOR, note=why)
    return why


STEPS: dict[str, Callable[[Case, datetime], str]] = {
    NextAction.REPROBE: _step_reprobe,
    NextAction.REMINDER: _step_reminder,
    NextAction.ESCALATE: _step_escalate,
    NextAction.UNRESPONSIVE: _step_unresponsive,
    NextAction.CLOSE: _step_close,
}


def case_reprobe_seen(*, finding: Finding) -> int:
    """A finding of a run a case's step waits for: make that step due now instead of an hour
    later (the run is finished once its last finding is announced)."""
    if finding.scan_run_id is None:
        return 0
    run = ScanRun.objects.filter(pk=finding.scan_run_id).only("status").first()
    if run is None or run.status in (ScanRun.Status.PENDING, ScanRun.Status.RUNNING):
        return 0
    now = timezone.now()
    return Case.objects.filter(
        reprobe_run_id=finding.scan_run_id,
        next_action_at__gt=now,
        next_action_at__lte=now + schedule.REPROBE_WAIT,
    ).update(next_action_at=now)


def campaign_reschedule(*, campaign: Campaign) -> int:
    """Plans again every case of a campaign whose intervals or end date changed."""
    count = 0
    now = timezone.now()
    cases = Case.objects.filter(campaign=campaign).exclude(status__in=schedule.FINAL_STATUSES)
    for case in cases.select_related("campaign").iterator(chunk_size=1000):
        case_reschedule(case=case, now=now)
        count += 1
    return count


@transaction.atomic
def campaign_end(*, campaign: Campaign, actor: AnyUser | None = None) -> int:
    """End a campaign today: no new cases join it, and the schedule closes every case still
    open with a final status (unresponsive after a letter, withdrawn before one)."""
    today = timezone.localdate()
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if campaign.ends_on is None or campaign.ends_on > today:
        campaign.ends_on = max(today, campaign.starts_on)
    campaign.is_active = False
    campaign.save(update_fields=["ends_on", "is_active"])
    open_cases = Case.objects.filter(campaign=campaign).exclude(status__in=schedule.FINAL_STATUSES)
    count = open_cases.update(next_action=NextAction.CLOSE, next_action_at=timezone.now())
    logger.info("campaign %s ended by %s: %s case(s) to close", campaign.slug, actor, count)
    return count


class NotAllowed(Exception):
    pass


@transaction.atomic
def partner_set_automation_paused(*, partner: Partner, paused: bool, actor: AnyUser) -> Partner:
    """An approver of the partner (or the lead) pauses or resumes the schedule for the partner's
    cases; they keep their dates and continue where they were."""
    from campaign import selectors

    if not selectors.has_role(actor, "approver", partner) and not (
        selectors.sees_all_partners(actor) and selectors.has_role(actor, "caseworker")
    ):
        raise NotAllowed(f"Only an approver of {partner.country_name} can pause its automation.")
    Partner.objects.filter(pk=partner.pk).update(automation_paused=paused)
    partner.automation_paused = paused
    logger.info("automation for %s %s by %s", partner.country, "paused" if paused else "on", actor)
    return partner
