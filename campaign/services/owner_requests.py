"""What the owner asks for on their page: a re-check of their servers, a correction (not mine,
another contact), an opt-out; and what a re-check's result does to their cases."""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaign import workflow
from campaign.models import (
    Attention,
    Case,
    CaseEvent,
    Suppression,
)
from campaign.services.cases import case_attention_set, case_record_event, case_transition
from scanning.models import Finding, ScanRun, Verdict

logger = logging.getLogger(__name__)


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
