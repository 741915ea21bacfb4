"""Computing the campaign's figures: one pass over findings, cases and letters, stored per partner.

The dashboard and /results/ read the stored rows (a few dozen), never the million findings behind
them; a periodic task refreshes them (`reporting.refresh_figures`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from campaign.models import Attribution, Case
from letters.models import Letter, LetterKind
from reporting.models import PartnerFigures
from scanning.kinds import kind_of
from scanning.models import OPEN_VERDICTS, Finding, Verdict

# The fix-rate curve runs to this many days after the first letter.
CURVE_DAYS = 90
EVIDENCE_RANK = {"strong": 0, "medium": 1, "weak": 2}
CLOSED_VERDICTS = (Verdict.CLOSED, Verdict.AUTH_REQUIRED)
SENT_STATUSES_DELIVERED = (Letter.Status.DELIVERED, Letter.Status.COMPLAINED)


def blank_figures() -> dict[str, Any]:
    return {
        "targets_probed": 0,
        "found_open": 0,
        "found_open_by_evidence": {"strong": 0, "medium": 0, "weak": 0},
        "owners_attributed": 0,
        "cases": 0,
        "cases_by_status": {},
        "letters_sent": 0,
        "letters_delivered": 0,
        "letters_bounced": 0,
        "letters_complained": 0,
        "cases_notified": 0,
        "cases_fixed": 0,
        "notified_fixed": 0,
        "fixed_after_first": 0,
        "fixed_after_reminder": 0,
        "fix_hours": {},
        "curve_fixed": [0] * (CURVE_DAYS + 1),
        "curve_eligible": [0] * (CURVE_DAYS + 1),
        "kinds": {},
        "software": {},
        "months": {},
    }


def _bump(mapping: dict[str, Any], key: str, field: str | None = None, by: int = 1) -> None:
    if field is None:
        mapping[key] = mapping.get(key, 0) + by
        return
    entry = mapping.setdefault(key, {})
    entry[field] = entry.get(field, 0) + by


def _month(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")


def compute_figures(*, now: datetime | None = None) -> dict[int | None, dict[str, Any]]:
    """Every partner's figures (key None: servers no owner has been attributed to yet)."""
    now = now or timezone.now()
    figures: dict[int | None, dict[str, Any]] = defaultdict(blank_figures)
    target_owner: dict[int, tuple[int, int]] = {
        target_id: (owner_id, partner_id)
        for target_id, owner_id, partner_id in Attribution.objects.filter(
            server_owner__isnull=False
        ).values_list("target_id", "server_owner_id", "server_owner__partner_id")
    }
    owners_open: dict[int, set[int]] = defaultdict(set)

    # Findings, per target in time order: was it ever open, how strong the best evidence, is
    # it still open now. Servers are counted once however many times they were re-probed.
    rows = (
        Finding.objects.order_by("target_id", "probed_at", "id")
        .values_list(
            "target_id", "protocol", "verdict", "evidence_level", "software_family", "probed_at"
        )
        .iterator(chunk_size=20_000)
    )
    current: int | None = None
    state: dict[str, Any] = {}

    def flush() -> None:
        if current is None:
            return
        owner_partner = target_owner.get(current)
        partner_id = owner_partner[1] if owner_partner else None
        f = figures[partner_id]
        f["targets_probed"] += 1
        if state["first_open"] is None:
            return
        f["found_open"] += 1
        f["found_open_by_evidence"][state["evidence"]] += 1
        closed = state["last_verdict"] in CLOSED_VERDICTS
        kind = state["kind"]
        _bump(f["kinds"], kind, "found")
        _bump(f["kinds"], kind, "closed" if closed else "open")
        software = state["software"] or "unknown"
        _bump(f["software"], software, "found")
        _bump(f["software"], software, "closed" if closed else "open")
        _bump(f["months"], _month(state["first_open"]), "found")
        if owner_partner:
            owners_open[partner_id].add(owner_partner[0])  # type: ignore[index]

    for target_id, protocol, verdict, evidence, software, probed_at in rows:
        if target_id != current:
            flush()
            current = target_id
            state = {"first_open": None, "evidence": "weak", "kind": None, "software": ""}
        state["last_verdict"] = verdict
        if verdict in OPEN_VERDICTS:
            if state["first_open"] is None:
                state["first_open"] = probed_at
                state["evidence"] = evidence if evidence in EVIDENCE_RANK else "weak"
            elif EVIDENCE_RANK.get(evidence, 2) < EVIDENCE_RANK[state["evidence"]]:
                state["evidence"] = evidence
            state["kind"] = kind_of(protocol) or state["kind"] or "other"
            state["software"] = software.lower() or state["software"]
    flush()
    for partner_id, owners in owners_open.items():
        figures[partner_id]["owners_attributed"] = len(owners)

    for partner_id, status, n in (
        Case.objects.values_list("partner_id", "status").annotate(n=Count("id")).order_by()
    ):
        f = figures[partner_id]
        f["cases"] += n
        f["cases_by_status"][status] = n
        if status == Case.Status.FIXED:
            f["cases_fixed"] += n

    for partner_id, sent, delivered, bounced, complained in (
        Letter.objects.values_list("case__partner_id")
        .annotate(
            sent=Count("id", filter=Q(sent_at__isnull=False)),
            delivered=Count("id", filter=Q(status__in=SENT_STATUSES_DELIVERED)),
            bounced=Count("id", filter=Q(status=Letter.Status.BOUNCED)),
            complained=Count("id", filter=Q(status=Letter.Status.COMPLAINED)),
        )
        .order_by()
    ):
        f = figures[partner_id]
        f["letters_sent"] += sent
        f["letters_delivered"] += delivered
        f["letters_bounced"] += bounced
        f["letters_complained"] += complained

    notified = (
        Case.objects.annotate(
            first_sent=Min("letters__sent_at"),
            reminder_sent=Min("letters__sent_at", filter=Q(letters__kind=LetterKind.REMINDER)),
        )
        .filter(first_sent__isnull=False)
        .values_list("partner_id", "status", "status_changed_at", "first_sent", "reminder_sent")
        .order_by()
        .iterator(chunk_size=20_000)
    )
    # Fix-rate curve, by days since the first letter: at day d, of the cases notified at least d
    # days ago, the share verified fixed within d days (so young and old cohorts compare fairly).
    last_days: dict[int | None, list[int]] = defaultdict(lambda: [0] * (CURVE_DAYS + 1))
    fixed_diff: dict[int | None, list[int]] = defaultdict(lambda: [0] * (CURVE_DAYS + 2))
    for partner_id, status, changed_at, first_sent, reminder_sent in notified:
        f = figures[partner_id]
        f["cases_notified"] += 1
        _bump(f["months"], _month(first_sent), "notified")
        last_day = min(CURVE_DAYS, math.floor((now - first_sent).total_seconds() / 86400))
        if last_day >= 0:
            last_days[partner_id][last_day] += 1
        if status != Case.Status.FIXED or changed_at < first_sent:
            continue
        f["notified_fixed"] += 1
        _bump(f["months"], _month(changed_at), "fixed")
        if reminder_sent is not None and reminder_sent <= changed_at:
            f["fixed_after_reminder"] += 1
        else:
            f["fixed_after_first"] += 1
        took = (changed_at - first_sent).total_seconds()
        _bump(f["fix_hours"], str(int(took // 3600)))
        first_day = math.ceil(took / 86400)
        if first_day <= last_day:
            fixed_diff[partner_id][first_day] += 1
            fixed_diff[partner_id][last_day + 1] -= 1
    for key, counts in last_days.items():
        eligible, running = [0] * (CURVE_DAYS + 1), 0
        for d in range(CURVE_DAYS, -1, -1):
            running += counts[d]
            eligible[d] = running
        figures[key]["curve_eligible"] = eligible
    for key, diff in fixed_diff.items():
        fixed, running = [0] * (CURVE_DAYS + 1), 0
        for d in range(CURVE_DAYS + 1):
            running += diff[d]
            fixed[d] = running
        figures[key]["curve_fixed"] = fixed
    return dict(figures)


def figures_refresh(*, now: datetime | None = None) -> int:
    """Recompute and store every partner's figures; returns how many rows were written."""
    now = now or timezone.now()
    computed = compute_figures(now=now)  # outside the transaction: reads only, and long
    with transaction.atomic():
        PartnerFigures.objects.all().delete()
        PartnerFigures.objects.bulk_create(
            PartnerFigures(partner_id=partner_id, figures=f, computed_at=now)
            for partner_id, f in computed.items()
        )
    return len(computed)
