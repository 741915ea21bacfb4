"""The work queue page in the admin: what needs a person in the user's partners, with actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _

from campaign import selectors, services, workqueue
from campaign.models import Attention, Partner

PAGE_SIZE = 200


def work_queue_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    if not selectors.is_member(request.user):
        raise PermissionDenied
    if request.method == "POST":
        return _post(model_admin, request)
    counts = workqueue.work_counts(request.user)
    cases = (
        workqueue.work_items(request.user)
        .select_related("partner", "server_owner", "campaign")
        .order_by("attention_at", "id")[: PAGE_SIZE * len(workqueue.ORDER)]
    )
    groups: dict[str, list[dict[str, Any]]] = {kind: [] for kind in workqueue.ORDER}
    for case in cases:
        rows = groups.setdefault(case.attention, [])
        if len(rows) < PAGE_SIZE:
            rows.append({"case": case, "actions": workqueue.actions_for(case)})
    labels = dict(Attention.choices)
    sections = [
        {"kind": kind, "label": labels.get(kind, kind), "count": counts.get(kind, 0), "rows": rows}
        for kind, rows in groups.items()
        if rows
    ]
    partners = [
        p
        for p in selectors.partners_for(request.user).order_by("country")
        if _may_pause(request, p)
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Work queue"),
        "sections": sections,
        "total": sum(counts.values()),
        "pausable_partners": partners,
        "opts": model_admin.model._meta,
    }
    return TemplateResponse(request, "admin/campaign/case/work_queue.html", context)


def _may_pause(request: HttpRequest, partner: Partner) -> bool:
    user = request.user
    return selectors.has_role(user, "approver", partner) or (
        selectors.sees_all_partners(user) and selectors.has_role(user, "caseworker")
    )


def _post(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    back = HttpResponseRedirect(reverse("admin:campaign_case_work_queue"))
    if "pause_partner" in request.POST or "resume_partner" in request.POST:
        raw = request.POST.get("pause_partner") or request.POST.get("resume_partner") or ""
        partner = selectors.partners_for(request.user).filter(pk=_int(raw)).first()
        if partner is None:
            messages.error(request, _("No such partner."))
            return back
        try:
            services.partner_set_automation_paused(
                partner=partner, paused="pause_partner" in request.POST, actor=request.user
            )
        except services.NotAllowed as exc:
            messages.error(request, str(exc))
            return back
        messages.success(
            request,
            (
                _("Automation paused for %s.")
                if partner.automation_paused
                else _("Automation on for %s.")
            )
            % partner.country_name,
        )
        return back
    case = (
        model_admin.get_queryset(request)
        .select_related("server_owner", "partner", "campaign")
        .filter(pk=_int(request.POST.get("case", "")))
        .first()
    )
    action = workqueue.ACTIONS.get(request.POST.get("action", ""))
    if case is None or action is None:
        messages.error(request, _("That item is gone or not yours."))
        return back
    if not model_admin.has_change_permission(request, case):
        raise PermissionDenied
    if case.attention not in action.attentions:
        messages.warning(request, _("%s was handled meanwhile.") % case.reference)
        return back
    try:
        done = action.handler(case, request.user)
    except (services.IllegalTransition, workqueue.NoGivenContact, ValueError) as exc:
        messages.error(request, f"{case.reference}: {exc}")
        return back
    except Exception as exc:  # an action of another app refusing (a letter not queued, ...)
        if type(exc).__name__.endswith(("NotQueued", "Refused", "NotAllowed")):
            messages.error(request, f"{case.reference}: {exc}")
            return back
        raise
    messages.success(request, f"{case.reference}: {done}.")
    return back


def _int(value: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
