"""Reads behind the dashboard and /results/: stored figures merged over the partners one may see."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from campaign import selectors
from campaign.models import Case, Partner
from letters.models import Letter
from reporting.models import PartnerFigures
from reporting.services import CURVE_DAYS, blank_figures

# Sender reputation: ESPs and mailbox providers start to throttle or block above these rates.
BOUNCE_WARN_RATE = 0.05
COMPLAINT_WARN_RATE = 0.001
# Points of the fix-rate curve shown in its table (days since the first letter).
CURVE_TABLE_DAYS = (1, 3, 7, 14, 21, 30, 45, 60, 90)


def merge(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sum figures: numbers add, lists add element-wise, dicts merge key by key."""
    total = blank_figures()
    for row in rows:
        _add(total, row)
    return total


def _add(into: dict[str, Any], row: dict[str, Any]) -> None:
    for key, value in row.items():
        if isinstance(value, dict):
            _add(into.setdefault(key, {}), value)
        elif isinstance(value, list):
            mine = into.setdefault(key, [0] * len(value))
            into[key] = [a + b for a, b in zip(mine, value, strict=False)]
        else:
            into[key] = into.get(key, 0) + value


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def median_hours(histogram: dict[str, int]) -> float | None:
    """The median of a {hours: count} histogram (the mean of the two middle values if even)."""
    points = sorted((int(h), n) for h, n in histogram.items() if n)
    total = sum(n for _, n in points)
    if not total:
        return None
    wanted = [(total - 1) // 2, total // 2]
    values: list[int] = []
    seen = 0
    for hours, n in points:
        while wanted and wanted[0] < seen + n:
            values.append(hours)
            wanted.pop(0)
        seen += n
    return sum(values) / len(values)


@dataclass
class Derived:
    """Rates and medians computed from one set of merged figures."""

    figures: dict[str, Any]
    fix_share: float | None = None
    median_days_to_fix: float | None = None
    bounce_rate: float | None = None
    complaint_rate: float | None = None
    bounce_warning: bool = False
    complaint_warning: bool = False
    curve: list[tuple[int, int, int, float | None]] = field(default_factory=list)

    @classmethod
    def of(cls, figures: dict[str, Any]) -> Derived:
        sent = figures["letters_sent"]
        median = median_hours(figures["fix_hours"])
        derived = cls(
            figures=figures,
            fix_share=share(figures["notified_fixed"], figures["cases_notified"]),
            median_days_to_fix=None if median is None else median / 24,
            bounce_rate=share(figures["letters_bounced"], sent),
            complaint_rate=share(figures["letters_complained"], sent),
        )
        derived.bounce_warning = (derived.bounce_rate or 0) > BOUNCE_WARN_RATE
        derived.complaint_warning = (derived.complaint_rate or 0) > COMPLAINT_WARN_RATE
        derived.curve = [
            (d, fixed, eligible, share(fixed, eligible))
            for d, (fixed, eligible) in enumerate(
                zip(figures["curve_fixed"], figures["curve_eligible"], strict=True)
            )
        ]
        return derived

    def share_at(self, day: int) -> float | None:
        return self.curve[day][3] if day < len(self.curve) else None


@dataclass
class PartnerRow:
    partner: Partner | None
    derived: Derived


@dataclass
class Dashboard:
    sees_all: bool
    total: Derived
    partners: list[PartnerRow]
    computed_at: datetime | None
    stuck: dict[str, int]


def _newest(rows: QuerySet[PartnerFigures]) -> list[PartnerFigures]:
    # Two refreshes that overlapped can both have written rows: the newest per partner wins.
    ordered = rows.select_related("partner").order_by("computed_at", "id")
    return list({row.partner_id: row for row in ordered}.values())


def figures_rows(user: Any) -> list[PartnerFigures]:
    rows = PartnerFigures.objects.all()
    if not selectors.sees_all_partners(user):
        # Not through selectors.visible: the unattributed row (no partner) is the lead's alone.
        rows = rows.filter(partner__in=selectors.partners_for(user))
    return _newest(rows)


def stuck_counts(user: Any) -> dict[str, int]:
    """Live counts of what needs a person, from indexed columns (case status, letter status)."""
    cases = selectors.visible(Case.objects.all(), user)
    counts = {
        "needs_review": cases.filter(status=Case.Status.NEEDS_REVIEW).count(),
        "escalated": cases.filter(status=Case.Status.ESCALATED).count(),
        "failed_letters": selectors.visible(
            Letter.objects.filter(status=Letter.Status.FAILED), user, partner_field="case__partner"
        ).count(),
    }
    if selectors.sees_all_partners(user):
        counts["triage"] = cases.filter(
            Q(status=Case.Status.NEEDS_REVIEW) & Q(review_reason__icontains="triage")
        ).count()
    return counts


def dashboard_for(user: Any) -> Dashboard:
    sees_all = selectors.sees_all_partners(user)
    rows = figures_rows(user)
    by_partner = {row.partner_id: row for row in rows}
    partner_rows = [
        PartnerRow(
            p,
            Derived.of(
                merge([by_partner[p.id].figures]) if p.id in by_partner else blank_figures()
            ),
        )
        for p in selectors.partners_for(user).order_by("country")
    ]
    if sees_all and None in by_partner:
        partner_rows.append(PartnerRow(None, Derived.of(merge([by_partner[None].figures]))))
    return Dashboard(
        sees_all=sees_all,
        total=Derived.of(merge(row.figures for row in rows)),
        partners=partner_rows,
        computed_at=min((row.computed_at for row in rows), default=None),
        stuck=stuck_counts(user),
    )


def public_results() -> dict[str, Any]:
    """What /results/ publishes: counts per country and per month, nothing about any server."""
    rows = _newest(PartnerFigures.objects.all())
    total = merge(row.figures for row in rows)
    by_partner = {row.partner_id: row.figures for row in rows}
    countries = []
    for partner in Partner.objects.order_by("country_name"):
        f = merge([by_partner.get(partner.id, {})])
        countries.append(
            {
                "country": partner.country,
                "name": partner.country_name,
                "found": f["found_open"],
                "notified": f["cases_notified"],
                "fixed": f["notified_fixed"],
                "share_fixed": share(f["notified_fixed"], f["cases_notified"]),
            }
        )
    months = []
    cumulative_notified = cumulative_fixed = 0
    for month in sorted(total["months"]):
        m = total["months"][month]
        cumulative_notified += m.get("notified", 0)
        cumulative_fixed += m.get("fixed", 0)
        months.append(
            {
                "month": month,
                "found": m.get("found", 0),
                "notified": m.get("notified", 0),
                "fixed": m.get("fixed", 0),
                "share_fixed": share(cumulative_fixed, cumulative_notified),
            }
        )
    return {
        "found": total["found_open"],
        "notified": total["cases_notified"],
        "fixed": total["notified_fixed"],
        "share_fixed": share(total["notified_fixed"], total["cases_notified"]),
        "unattributed": by_partner.get(None, {}).get("found_open", 0),
        "countries": countries,
        "months": months,
        "computed_at": min((row.computed_at for row in rows), default=None),
        "curve_days": CURVE_DAYS,
    }
