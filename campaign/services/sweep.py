"""The schedule at work: the sweep that claims due cases and takes each one step (re-probe,
reminder, escalation, close), and the campaign- and partner-wide switches around it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from campaign import schedule
from campaign.models import (
    Campaign,
    Case,
    CaseEvent,
    NextAction,
    Partner,
)
from campaign.selectors import AnyUser
from campaign.services.cases import case_record_event, case_transition
from campaign.services.owner_requests import case_reprobe_start, case_target_ids
from scanning.models import Finding, ScanRun

logger = logging.getLogger(__name__)


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
