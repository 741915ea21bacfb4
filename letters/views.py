"""The recipient's remediation page, reached by the link in their letter: what we saw and when, how
to fix it for their software, "check again", corrections and opt-out. No login: the token is the
key. What the page says is built in letters/owner_page.py from the reads in letters/selectors.py."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.html import escape
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods

from campaign import services as campaign_services
from campaign.models import Case, Partner
from config.security import public_page
from letters import guides, throttle
from letters.forms import NotMineForm, OptOutForm, OtherContactForm
from letters.models import RemediationLink
from letters.owner_page import (
    CASE_STATUS_TEXT,
    LANGUAGE_NAMES,
    RECHECK_STATUSES,
    confirmations,
    guides_for,
    local_day,
    next_text,
    page_languages,
    progress_text,
    server_rows,
)
from letters.rendering import bcp47
from letters.selectors import has_opted_out, recheck_of, recipient_email, remediation_link_for_page


def page_language(request: HttpRequest, case: Case) -> str:
    choices = page_languages(case)
    wanted = request.POST.get("lang") or request.GET.get("lang") or ""
    if wanted in choices:
        return wanted
    return choices[0] if choices else "en"


def _invalid(request: HttpRequest) -> HttpResponse:
    # One response for unknown, altered and expired tokens: nothing says whether a case exists.
    shipped = guides.languages()
    language = translation.get_language_from_request(request, check_path=False)
    if language not in shipped:
        language = "en"
    lead = Partner.objects.filter(is_lead=True).first()
    context = {
        "lang": language,
        "html_lang": bcp47(language),
        "contact_email": (lead.reply_to if lead else "") or settings.SCANNER_CONTACT_EMAIL,
    }
    with translation.override(language):
        return render(request, "remediation/invalid.html", context, status=404)


def _page(
    request: HttpRequest,
    link: RemediationLink,
    *,
    language: str,
    not_mine_form: NotMineForm | None = None,
    contact_form: OtherContactForm | None = None,
    optout_form: OptOutForm | None = None,
    message: str = "",
    status: int = 200,
) -> HttpResponse:
    case = link.case
    with translation.override(language):
        recheck = recheck_of(case)
        rows = server_rows(case, language, recheck)
        email = recipient_email(link)
        opted_out = has_opted_out(link, email)
        open_rows = [row for row in rows if row["status"] in ("open", "likely")]
        context = {
            "lang": language,
            "html_lang": bcp47(language),
            "languages": [
                (code, LANGUAGE_NAMES.get(code, code), bcp47(code)) for code in page_languages(case)
            ],
            "case": case,
            "agency": case.partner.localized(language)["agency"],
            "campaign_name": case.campaign.name,
            "rows": rows,
            "open_count": len(open_rows),
            "guides": guides_for(rows, language),
            "case_status_text": CASE_STATUS_TEXT.get(Case.Status(case.status), case.status),
            "next_text": next_text(case, language, opted_out=opted_out),
            "recheck": recheck,
            "recheck_day": (
                local_day(recheck.requested_at, language, case) if recheck.requested_at else ""
            ),
            "progress_text": progress_text(recheck),
            "can_recheck": case.status in RECHECK_STATUSES and not opted_out,
            "message": message,
            "not_mine_form": not_mine_form or NotMineForm(),
            "contact_form": contact_form or OtherContactForm(),
            "optout_form": optout_form or OptOutForm(),
            "confirmations": confirmations(case, language),
            "opted_out": opted_out,
            "optout_email": email,
            "page_url": request.path,
            "status_url": f"{request.path}status.json",
        }
        return render(request, "remediation/page.html", context, status=status)


def _back(request: HttpRequest, language: str, anchor: str) -> HttpResponse:
    return redirect(f"{request.path}?lang={language}#{anchor}", permanent=False)


# The recipient's forms: action -> (form, its name on the page, anchor to return to, service).
# Each service only records and queues for review; nothing the visitor types is probed.
FORM_ACTIONS: dict[str, tuple[Any, str, str, Any]] = {
    "not_mine": (
        NotMineForm,
        "not_mine_form",
        "correction",
        lambda case, link, data: campaign_services.case_correction(
            case=case, kind="not_mine", note=data["note"].strip()
        ),
    ),
    "other_contact": (
        OtherContactForm,
        "contact_form",
        "correction",
        lambda case, link, data: campaign_services.case_correction(
            case=case, kind="other_contact", email=data["email"], name=data["name"].strip()
        ),
    ),
    "optout": (
        OptOutForm,
        "optout_form",
        "optout",
        lambda case, link, data: campaign_services.case_opt_out(
            case=case, email=recipient_email(link), reason=data["reason"].strip()
        ),
    ),
}


def _limited(request: HttpRequest, language: str, seconds_left: int) -> HttpResponse:
    minutes = max(1, math.ceil(seconds_left / 60))
    with translation.override(language):
        context = {
            "lang": language,
            "html_lang": bcp47(language),
            "minutes": minutes,
            "back_url": f"{request.path}?lang={language}",
        }
        response = render(request, "remediation/limited.html", context, status=429)
    response["Retry-After"] = str(seconds_left)
    return response


# --- Views --------------------------------------------------------------------------------------
@public_page
@require_http_methods(["GET", "POST"])
def remediation_page(request: HttpRequest, token: str) -> HttpResponse:
    link = remediation_link_for_page(token)
    if link is None:
        return _invalid(request)
    case = link.case
    language = page_language(request, case)
    if request.method == "GET":
        return _page(request, link, language=language)
    action = request.POST.get("action", "")
    if action != "recheck" and action not in FORM_ACTIONS:
        return _page(request, link, language=language, status=400)
    wait = throttle.remediation_post_wait(request, link_key=link.token_hash)
    if wait:
        return _limited(request, language, wait)
    if action == "recheck":
        if case.status not in RECHECK_STATUSES or has_opted_out(link, recipient_email(link)):
            # The page offers no button then; nor does a crafted POST get a probe.
            return _page(request, link, language=language, status=400)
        try:
            # Only the case's own targets, read from the database: nothing posted is probed.
            campaign_services.case_request_recheck(case=case, actor_label="recipient")
        except campaign_services.RecheckRateLimited as limited:
            minutes = max(1, math.ceil(limited.seconds_left / 60))
            with translation.override(language):
                message = ngettext(
                    "You can ask for another check in %(minutes)s minute.",
                    "You can ask for another check in %(minutes)s minutes.",
                    minutes,
                ) % {"minutes": minutes}
            return _page(request, link, language=language, message=message, status=429)
        return _back(request, language, "check")
    form_class, form_name, anchor, act = FORM_ACTIONS[action]
    form = form_class(request.POST)
    with translation.override(language):  # Django's error texts in the page's language
        valid = form.is_valid()
    if not valid:
        return _page(request, link, language=language, status=400, **{form_name: form})
    act(case, link, form.cleaned_data)
    return _back(request, language, anchor)


@public_page
@require_http_methods(["GET", "POST"])
def remediation_invalid(request: HttpRequest) -> HttpResponse:
    return _invalid(request)


@public_page
@require_GET
def remediation_status(request: HttpRequest, token: str) -> HttpResponse:
    """The re-check's progress for the page's script; the same token check as the page."""
    link = remediation_link_for_page(token)
    if link is None:
        return JsonResponse({"error": "not found"}, status=404)
    case = link.case
    language = page_language(request, case)
    with translation.override(language):
        recheck = recheck_of(case)
        rows = server_rows(case, language, recheck)
        opted_out = has_opted_out(link, recipient_email(link))
        return JsonResponse(
            {
                "state": recheck.state,
                "progress": progress_text(recheck),
                "case_status": case.status,
                "case_status_text": str(
                    CASE_STATUS_TEXT.get(Case.Status(case.status), case.status)
                ),
                "next_text": next_text(case, language, opted_out=opted_out),
                "can_recheck": case.status in RECHECK_STATUSES and not opted_out,
                "findings": [
                    {
                        "target": row["row_id"],
                        "status": row["status"],
                        "status_text": row["status_text"],
                        "result": row["recheck"].get("status", ""),
                        "result_text": row["recheck"].get("text", ""),
                    }
                    for row in rows
                ],
            }
        )


def owner_page_preview(
    request: HttpRequest, link: RemediationLink, *, language: str, banner: str
) -> HttpResponse:
    """The page exactly as the owner sees it, for staff in the admin: same template, same
    context, from an unsaved link (no token is issued, read or used up), under `banner`."""
    response = _page(request, link, language=language)
    note = (
        '<div role="note" style="background:#1f3d6b;color:#fff;padding:.6em 1em;'
        f'font:600 15px/1.4 system-ui,sans-serif">{escape(banner)}</div>'
    )
    content = response.content.decode("utf-8")
    at = content.find(">", content.find("<body")) + 1
    response.content = (content[:at] + note + content[at:]).encode("utf-8")
    return response


def healthz(request: HttpRequest) -> JsonResponse:
    """For healthchecks: 200 when nothing is stuck, else 503, with the health report (numbers
    and times only). `?live` asks only whether this process reaches its database (the web
    container's own check: stuck letters are not a reason to restart the web server)."""
    from django.db import DatabaseError, connection

    from letters.health import health_report

    if "live" in request.GET:
        try:
            connection.ensure_connection()
        except DatabaseError:
            return JsonResponse({"database": "unreachable"}, status=503)
        return JsonResponse({"database": "ok"})
    report = health_report()
    return JsonResponse(report, status=503 if report["stuck"] else 200)
