"""A case's schedule after its letter: what happens next, when, and how to say it.

Reads only. `campaign.services` writes the plan onto the case (`next_action`, `next_action_at`)
at every status change, and the sweep acts on cases whose time has come.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from datetime import timedelta

from django.utils import formats, timezone
from django.utils.translation import gettext

from campaign.models import Attention, Campaign, Case, NextAction
from scanning.models import OPEN_VERDICTS, Finding, ScanRun, Verdict

S = Case.Status

# A reminder or an escalation rests on a re-probe this recent; older ones are taken again.
REPROBE_FRESH = timedelta(hours=48)
# A step that queued a re-probe looks again this much later (sooner when the re-probe ends).
REPROBE_WAIT = timedelta(hours=1)
# A reminder not sent because the server was not seen open is tried again this much later.
NOT_SEEN_OPEN_RETRY = timedelta(days=1)

# Statuses in which nothing more happens by itself.
FINAL_STATUSES = frozenset({S.FIXED, S.UNRESPONSIVE, S.WITHDRAWN, S.SUPPRESSED})
# The life after the letter, which the schedule runs.
SCHEDULED_STATUSES = frozenset({S.NOTIFIED, S.REMINDED, S.ESCALATED})


@dataclass(frozen=True)
class Plan:
    action: str  # a NextAction, or "" when the schedule waits for a person (or nothing is left)
    at: dt.datetime | None


NOTHING = Plan("", None)


def days(n: int) -> timedelta:
    return timedelta(days=n)


def campaign_end_at(campaign: Campaign, now: dt.datetime) -> dt.datetime | None:
    """The campaign's last moment: the end of its `ends_on` day (UTC), or now for a campaign
    the lead ended (no longer active, with an end date)."""
    if campaign.ends_on is None:
        return None
    midnight = dt.datetime.combine(campaign.ends_on + timedelta(days=1), dt.time(), dt.UTC)
    return midnight if campaign.is_active else min(midnight, now)


def case_plan(case: Case, campaign: Campaign, now: dt.datetime) -> Plan:
    if case.status in FINAL_STATUSES:
        return NOTHING
    plan = _life_plan(case, campaign, now)
    end = campaign_end_at(campaign, now)
    if end is not None and (plan.at is None or plan.at >= end):
        return Plan(NextAction.CLOSE, end)
    return plan


def _life_plan(case: Case, campaign: Campaign, now: dt.datetime) -> Plan:
    if case.status in (S.NOTIFIED, S.REMINDED):
        letter_at = case.notified_at or case.status_changed_at
        deadline = letter_at + days(campaign.final_deadline_days)
        reminder = letter_at + days(campaign.reminder_after_days)
        reprobe = letter_at + days(campaign.reprobe_after_days)
        reminding = (
            case.status == S.NOTIFIED
            and case.reminder_step_at is None
            and reminder < deadline
            and now < deadline
        )
        if not reminding:
            return Plan(NextAction.ESCALATE, deadline)
        # The first re-probe, unless the one before the reminder would come right after it.
        first_reprobe_pending = reprobe < reminder - REPROBE_FRESH and (
            case.reprobe_requested_at is None or case.reprobe_requested_at < reprobe
        )
        if first_reprobe_pending:
            return Plan(NextAction.REPROBE, reprobe)
        return Plan(NextAction.REMINDER, reminder)
    if case.status == S.ESCALATED:
        return Plan(
            NextAction.UNRESPONSIVE,
            case.status_changed_at + days(campaign.unresponsive_after_days),
        )
    if case.status == S.NEEDS_REVIEW and case.attention == Attention.BOUNCED:
        # No one left to write to: the partner follows up in its own way.
        return Plan(NextAction.ESCALATE, case.status_changed_at)
    if case.status == S.NEEDS_REVIEW and case.attention == Attention.REOPENED:
        # Open again after a fix: look once more before a person decides on another letter.
        seen = case.reprobe_requested_at
        if seen is None or seen < case.status_changed_at:
            return Plan(NextAction.REPROBE, case.status_changed_at)
    return NOTHING


# --- What the last re-probe said -----------------------------------------------------------------
class Seen:
    OPEN = "open"
    CLOSED = "closed"
    UNREACHABLE = "unreachable"
    INCONCLUSIVE = "inconclusive"
    PENDING = "pending"


SEEN_WORDS = {
    Seen.OPEN: "still open",
    Seen.CLOSED: "closed",
    Seen.UNREACHABLE: "unreachable",
    Seen.INCONCLUSIVE: "inconclusive",
}


def reprobe_outcome(case: Case, target_ids: list[int], now: dt.datetime) -> str | None:
    """What a re-probe of the last REPROBE_FRESH said about the case's servers: a Seen value, or
    None when there is no such re-probe (one must be taken)."""
    requested = case.reprobe_requested_at
    if requested is None or case.reprobe_run_id is None or now - requested > REPROBE_FRESH:
        return None
    run = ScanRun.objects.filter(pk=case.reprobe_run_id).first()
    if run is None:
        return None
    if run.status in (ScanRun.Status.PENDING, ScanRun.Status.RUNNING):
        return Seen.PENDING
    findings = list(
        Finding.objects.filter(scan_run=run, target_id__in=target_ids).values_list(
            "verdict", "transport_status"
        )
    )
    if any(verdict in OPEN_VERDICTS for verdict, _ in findings):
        return Seen.OPEN
    if findings and all(verdict == Verdict.CLOSED for verdict, _ in findings):
        return Seen.CLOSED
    if not findings or any(status != Finding.TransportStatus.SUCCESS for _, status in findings):
        return Seen.UNREACHABLE
    return Seen.INCONCLUSIVE


# --- Words for people ----------------------------------------------------------------------------
def short_date(value: dt.datetime) -> str:
    return formats.date_format(timezone.localtime(value), "j M")


WAITING: dict[str, str] = {
    S.NEW: "attribution pending: run attribution for its targets",
    S.NEEDS_REVIEW: "a person reviews it (work queue)",
    S.READY: "queue the advisory letter",
    S.FIXED: "nothing: verified fixed",
    S.UNRESPONSIVE: "nothing: closed as unresponsive",
    S.WITHDRAWN: "nothing: withdrawn",
    S.SUPPRESSED: "nothing: the contact asked not to be written to",
}


def next_action_label(case: Case) -> str:
    """ "re-probe on 14 Dec", "reminder on 28 Dec if still open", "hand to the partner on 5 Feb"."""
    if not case.next_action or case.next_action_at is None:
        return gettext(WAITING.get(case.status, "—"))
    day = short_date(case.next_action_at)
    if case.next_action == NextAction.REPROBE:
        return gettext("re-probe on %(day)s") % {"day": day}
    if case.next_action == NextAction.REMINDER:
        return gettext("reminder on %(day)s if still open") % {"day": day}
    if case.next_action == NextAction.ESCALATE:
        return gettext("hand to the partner on %(day)s") % {"day": day}
    if case.next_action == NextAction.UNRESPONSIVE:
        return gettext("close as unresponsive on %(day)s if nothing changes") % {"day": day}
    # The campaign's end is the midnight after its last day: name that last day.
    day = short_date(case.next_action_at - timedelta(microseconds=1))
    if case.status in WAITING:  # a person acts first; the end date only bounds it
        return gettext("%(waiting)s; closed at the campaign's end on %(day)s") % {
            "waiting": gettext(WAITING[case.status]),
            "day": day,
        }
    return gettext("close at the campaign's end on %(day)s") % {"day": day}
