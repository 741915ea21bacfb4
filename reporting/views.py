"""The campaign dashboard: the admin's front page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from campaign import selectors as campaign_selectors
from campaign.models import Case
from letters.models import Letter
from reporting import charts, services
from reporting.models import PartnerFigures
from reporting.selectors import (
    BOUNCE_WARN_RATE,
    COMPLAINT_WARN_RATE,
    CURVE_TABLE_DAYS,
    Dashboard,
    dashboard_for,
)
from reporting.tasks import refresh_figures
from scanning.kinds import KIND_LABELS

CURVE_TICKS = (0, 7, 14, 30, 45, 60, 90)


def _changelist(model: type[Model], **params: object) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    if not campaign_selectors.is_member(user):
        return {}
    if not PartnerFigures.objects.exists():
        services.figures_refresh()  # a first visit after install: no periodic run yet
    board = dashboard_for(user)
    # English until the dashboard's messages join the staff catalogues: a page in one language
    # reads better than one where a few shared phrases come out translated.
    with translation.override("en"):
        return {"board": board, **_sections(board)}


def _sections(board: Dashboard) -> dict[str, Any]:
    t = board.total
    f = t.figures
    status_labels = dict(Case.Status.choices)
    funnel = [
        (_("Targets probed"), f["targets_probed"]),
        (_("Servers found open"), f["found_open"]),
        (_("Owners attributed"), f["owners_attributed"]),
        (_("Cases"), f["cases"]),
        (_("Letters sent"), f["letters_sent"]),
        (_("Letters delivered"), f["letters_delivered"]),
        (_("Letters bounced"), f["letters_bounced"]),
        (_("Cases verified fixed"), f["cases_fixed"]),
    ]
    kinds = [
        {
            "label": KIND_LABELS.get(kind, kind),
            "found": f["kinds"].get(kind, {}).get("found", 0),
            "open": f["kinds"].get(kind, {}).get("open", 0),
            "closed": f["kinds"].get(kind, {}).get("closed", 0),
        }
        for kind in (*KIND_LABELS, *sorted(set(f["kinds"]) - set(KIND_LABELS)))
    ]
    software = sorted(
        (
            {"label": name, "found": v.get("found", 0), "closed": v.get("closed", 0)}
            for name, v in f["software"].items()
        ),
        key=lambda row: (-row["found"], row["label"]),
    )
    statuses = [
        {
            "code": code,
            "label": label,
            "count": f["cases_by_status"].get(code, 0),
            "url": _changelist(Case, status__exact=code),
        }
        for code, label in Case.Status.choices
    ]
    stuck = [
        (
            _("Cases needing review"),
            board.stuck["needs_review"],
            _changelist(Case, status__exact=Case.Status.NEEDS_REVIEW),
        ),
        (
            _("Cases escalated to the partner"),
            board.stuck["escalated"],
            _changelist(Case, status__exact=Case.Status.ESCALATED),
        ),
        (
            _("Letters that failed to send"),
            board.stuck["failed_letters"],
            _changelist(Letter, status__exact=Letter.Status.FAILED),
        ),
    ]
    if "triage" in board.stuck:
        stuck.append(
            (
                _("Owners in the lead agency's triage"),
                board.stuck["triage"],
                _changelist(Case, status__exact=Case.Status.NEEDS_REVIEW, triage="yes"),
            )
        )
    curve_rows = [t.curve[d] for d in CURVE_TABLE_DAYS if d < len(t.curve)]
    fixed_total = f["fixed_after_first"] + f["fixed_after_reminder"]
    return {
        "funnel": funnel,
        "funnel_chart": charts.hbars(funnel, title=_("Campaign funnel")),
        "evidence": f["found_open_by_evidence"],
        "curve_rows": curve_rows,
        "curve_chart": charts.line(
            [(d, None if s is None else s * 100) for d, _fixed, _eligible, s in t.curve],
            title=_("Share verified fixed, by days since the first letter"),
            x_label=_("days since the first letter"),
            x_ticks=CURVE_TICKS,
        ),
        "fixed_after_first": f["fixed_after_first"],
        "fixed_after_reminder": f["fixed_after_reminder"],
        "fixed_after_first_share": f["fixed_after_first"] / fixed_total if fixed_total else None,
        "fixed_after_reminder_share": (
            f["fixed_after_reminder"] / fixed_total if fixed_total else None
        ),
        "kinds": kinds,
        "kinds_chart": charts.hbars(
            [(row["label"], row["found"]) for row in kinds], title=_("Servers found open, by kind")
        ),
        "software": software[:12],
        "software_more": max(0, len(software) - 12),
        "software_chart": charts.hbars(
            [(row["label"], row["found"]) for row in software[:12]],
            title=_("Servers found open, by detected software"),
            colour=charts.PALETTE[1],
        ),
        "statuses": statuses,
        "status_chart": charts.hbars(
            [(row["label"], row["count"]) for row in statuses if row["count"]],
            title=_("Cases by status"),
            colour=charts.PALETTE[3],
        ),
        "stuck": stuck,
        "status_labels": status_labels,
        "partner_case_url": _changelist(Case),
        "bounce_warn_rate": BOUNCE_WARN_RATE,
        "complaint_warn_rate": COMPLAINT_WARN_RATE,
    }


def refresh_view(request: HttpRequest) -> HttpResponse:
    """Queues a refresh of the figures (the periodic task does the same)."""
    if request.method == "POST" and campaign_selectors.is_member(request.user):
        refresh_figures.delay_on_commit()
        messages.info(request, _("The figures are being recomputed; reload in a minute."))
    return HttpResponseRedirect(reverse("admin:index"))
