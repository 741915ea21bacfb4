"""The recipient's remediation page, reached by the link in their letter: what we saw, how to fix
it for their software, "check again", corrections and opt-out. No login: the token is the key."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone, translation
from django.views.decorators.http import require_GET, require_http_methods

from campaign import services as campaign_services
from campaign.models import Case, CaseEvent, Contact, Partner, Suppression
from config.security import public_page
from letters import links
from letters.forms import NotMineForm, OptOutForm, OtherContactForm
from letters.models import RemediationLink
from letters.rendering import bcp47, local_date
from scanning.models import OPEN_VERDICTS, Finding, ScanRun, Verdict

TRANSCRIPT_EXCERPT_LINES = 40
# The probe redacts its own tokens; anything else shaped like one (32+ hex digits) goes too.
HEX_TOKEN = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{32,}(?![0-9A-Fa-f])")
LANGUAGE_NAMES = dict(settings.LANGUAGES)
NO_RECHECK_STATUSES = (Case.Status.FIXED, Case.Status.WITHDRAWN)


def _guides() -> Any:
    from letters import guides  # the fix guides and every text of this page

    return guides


def _fill(text: str, **values: object) -> str:
    """Only our own placeholders are replaced: a translator's stray brace never raises."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", str(value))
    return text


# --- Which link, which language ------------------------------------------------------------------
def _find_link(token: str) -> RemediationLink | None:
    link = links.remediation_link_find(token)
    if link is None:
        return None
    return RemediationLink.objects.select_related(
        "letter", "case__partner", "case__campaign", "case__server_owner"
    ).get(pk=link.pk)


def page_languages(case: Case) -> list[str]:
    """The partner's letter languages that have a guide, the case's own language first."""
    shipped = set(_guides().languages())
    codes = [case.language, *case.partner.letter_languages]
    return [code for i, code in enumerate(codes) if code in shipped and code not in codes[:i]]


def page_language(request: HttpRequest, case: Case) -> str:
    choices = page_languages(case)
    wanted = request.POST.get("lang") or request.GET.get("lang") or ""
    if wanted in choices:
        return wanted
    if choices:
        return choices[0]
    shipped = _guides().languages()  # a partner whose languages ship no guides (yet)
    return "en" if "en" in shipped or not shipped else shipped[0]


def _invalid(request: HttpRequest) -> HttpResponse:
    # One response for unknown, altered and expired tokens: nothing says whether a case exists.
    shipped = _guides().languages()
    language = translation.get_language_from_request(request, check_path=False)
    if language not in shipped:
        language = "en" if "en" in shipped or not shipped else shipped[0]
    strings = _guides().page_strings(language)
    lead = Partner.objects.filter(is_lead=True).first()
    contact = (lead.reply_to if lead else "") or settings.SCANNER_CONTACT_EMAIL
    agency = lead.agency if lead else ""
    context = {
        "s": strings,
        "lang": language,
        "html_lang": bcp47(language),
        "invalid_text": _fill(strings["invalid_text"], email=contact, agency=agency),
        "footer": _fill(strings["footer"], agency=agency, campaign="", reference=""),
        "contact_email": contact,
    }
    return render(request, "remediation/invalid.html", context, status=404)


# --- What the page shows ------------------------------------------------------------------------
def _verdict_word(verdict: str | None) -> str:
    if verdict is None:
        return "pending"
    if verdict == Verdict.CLOSED:
        return "closed"
    if verdict in OPEN_VERDICTS:
        return "open"
    return "inconclusive"


def evidence_excerpt(finding: Finding) -> list[str]:
    """The exchange as the owner would see it in their own logs: our commands and the server's
    replies, tokens redacted, our internal notes left out."""
    lines = []
    for line in finding.transcript or []:
        direction = line.get("direction") if isinstance(line, dict) else None
        if direction not in ("<", ">"):
            continue
        text = HEX_TOKEN.sub("[REDACTED]", str(line.get("text", "")))
        lines.append(f"{direction} {text}")
        if len(lines) >= TRANSCRIPT_EXCERPT_LINES:
            lines.append("…")
            break
    return lines


@dataclass
class Recheck:
    state: str = "none"  # none, queued, running, done
    run: ScanRun | None = None
    requested_at: Any = None
    results: dict[tuple[int, str], Finding] = field(default_factory=dict)


def recheck_of(case: Case) -> Recheck:
    event = campaign_services.case_last_recheck(case)
    if event is None:
        return Recheck()
    run = ScanRun.objects.filter(pk=(event.data or {}).get("scan_run")).first()
    if run is None:
        return Recheck()
    state = {ScanRun.Status.PENDING: "queued", ScanRun.Status.RUNNING: "running"}.get(
        ScanRun.Status(run.status), "done"
    )
    results: dict[tuple[int, str], Finding] = {}
    for finding in Finding.objects.filter(scan_run=run).order_by("probed_at", "id"):
        # The newest per service (greylist retries); one port may speak several protocols.
        results[(finding.target_id, finding.protocol)] = finding
    return Recheck(state=state, run=run, requested_at=event.at, results=results)


def _rows(case: Case, language: str, strings: dict[str, str], recheck: Recheck) -> list[dict]:
    guides = _guides()
    rows = []
    findings = list(case.findings.select_related("target").order_by("probed_at", "id"))
    latest: dict[tuple[int, str], Finding] = {}
    evidence: dict[tuple[int, str], Finding] = {}
    for finding in findings:
        latest[(finding.target_id, finding.protocol)] = finding
        if finding.is_open:
            evidence[(finding.target_id, finding.protocol)] = finding
    per_target = Counter(target_id for target_id, _ in latest)
    for key, finding in sorted(
        latest.items(), key=lambda item: (item[1].target.ip, item[1].target.port, item[0][1])
    ):
        target_id, protocol = key
        row_id = str(target_id) if per_target[target_id] == 1 else f"{target_id}-{protocol}"
        shown = evidence.get(key, finding)
        try:
            kind = guides.kind_for_protocol(shown.protocol)
        except ValueError:  # "unknown": a finding always names what it spoke; be safe anyway
            kind = "smtp_relay"
        result = recheck.results.get(key)
        # A re-check that could not decide leaves the last known state standing.
        current = None
        if result is not None and _verdict_word(result.verdict) in ("closed", "open"):
            current = result if result.probed_at >= finding.probed_at else None
        status = _verdict_word((current or finding).verdict)
        software = " ".join(p for p in (shown.software_family, shown.software_version) if p)
        rows.append(
            {
                "target_id": target_id,
                "row_id": row_id,
                "address": shown.target.ip,
                "port": shown.target.port,
                "kind": kind,
                "kind_text": strings.get(f"kind_{kind}", kind),
                "meaning": strings.get(f"meaning_{kind}", ""),
                "seen": local_date(timezone.localdate(shown.probed_at), language),
                "status": status,
                "status_text": strings[f"result_{status}"],
                "software": software,
                "software_text": _fill(strings["software_detected"], software=software)
                if software
                else strings["software_unknown"],
                "evidence": evidence_excerpt(shown),
                "family": shown.software_family,
                "recheck": _recheck_row(recheck, key, strings),
            }
        )
    return rows


def _recheck_row(recheck: Recheck, key: tuple[int, str], strings: dict[str, str]) -> dict[str, str]:
    if recheck.state == "none":
        return {}
    result = recheck.results.get(key)
    word = _verdict_word(result.verdict) if result is not None else "pending"
    if word == "pending" and recheck.state == "done":
        word = "inconclusive"  # refused or lost: we cannot say it is fixed
    return {"status": word, "text": strings[f"result_{word}"]}


def _guides_for(rows: list[dict], language: str, strings: dict[str, str]) -> list[dict]:
    guides = _guides()
    seen: set[tuple[str, str]] = set()
    shown = []
    for row in rows:
        key = (row["kind"], row["family"].lower())
        if key in seen:
            continue
        seen.add(key)
        guide = guides.guide_for(row["kind"], row["family"], language)
        steps = [
            {
                "heading": step.heading or strings.get(f"step_{step.key}", ""),
                "text": step.text,
                "snippet": step.snippet,
                "file": step.file,
            }
            for step in guide.steps
        ]
        shown.append({"guide": guide, "steps": steps})
    return shown


def _progress_text(recheck: Recheck, strings: dict[str, str]) -> str:
    return {"queued": strings["check_queued"], "running": strings["check_running"]}.get(
        recheck.state, ""
    )


def _next_text(case: Case, strings: dict[str, str]) -> str:
    return strings["next_fixed"] if case.status == Case.Status.FIXED else strings["next_open"]


def _recipient_email(link: RemediationLink) -> str:
    if link.letter is not None and link.letter.recipient_email:
        return link.letter.recipient_email
    contact = (
        link.case.server_owner.contacts.exclude(kind=Contact.Kind.PARTNER)
        .order_by("position")
        .first()
    )
    return contact.email if contact else ""


def _opted_out(link: RemediationLink, email: str) -> bool:
    now = timezone.now()  # an expired opt-out no longer stops letters: the form is offered again
    suppressions = Suppression.objects.filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now), reason=Suppression.Reason.OPT_OUT
    )
    if email:
        return suppressions.filter(email__iexact=email).exists()
    return suppressions.filter(server_owner=link.case.server_owner).exists()


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
    strings = _guides().page_strings(language)
    recheck = recheck_of(case)
    rows = _rows(case, language, strings, recheck)
    email = _recipient_email(link)
    corrected = CaseEvent.objects.filter(
        case=case, kind=CaseEvent.Kind.CORRECTION, actor_label="recipient"
    ).exists()
    context = {
        "s": strings,
        "lang": language,
        "html_lang": bcp47(language),
        "languages": [
            (code, LANGUAGE_NAMES.get(code, code), bcp47(code)) for code in page_languages(case)
        ],
        "footer": _fill(
            strings["footer"],
            agency=case.partner.agency,
            campaign=case.campaign.name,
            reference=case.reference,
        ),
        "case": case,
        "intro": _fill(
            strings["intro"],
            agency=case.partner.agency,
            campaign=case.campaign.name,
            reference=case.reference,
        ),
        "rows": rows,
        "guides": _guides_for(rows, language, strings),
        "case_status_text": strings.get(f"status_{case.status}", case.status),
        "next_text": _next_text(case, strings),
        "recheck": recheck,
        "progress_text": _progress_text(recheck, strings),
        "can_recheck": case.status not in NO_RECHECK_STATUSES,
        "message": message,
        "not_mine_form": not_mine_form or NotMineForm(strings=strings),
        "contact_form": contact_form or OtherContactForm(strings=strings),
        "optout_form": optout_form or OptOutForm(strings=strings),
        "corrected": corrected,
        "opted_out": _opted_out(link, email),
        "page_url": request.path,
        "status_url": f"{request.path}status.json",
    }
    with translation.override(language):  # Django's own texts (form errors) in the same language
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
            case=case, kind="other_contact", email=data["email"]
        ),
    ),
    "optout": (
        OptOutForm,
        "optout_form",
        "optout",
        lambda case, link, data: campaign_services.case_opt_out(
            case=case, email=_recipient_email(link), reason=data["reason"].strip()
        ),
    ),
}


# --- Views --------------------------------------------------------------------------------------
@public_page
@require_http_methods(["GET", "POST"])
def remediation_page(request: HttpRequest, token: str) -> HttpResponse:
    link = _find_link(token)
    if link is None:
        return _invalid(request)
    case = link.case
    language = page_language(request, case)
    if request.method == "GET":
        return _page(request, link, language=language)
    strings = _guides().page_strings(language)
    action = request.POST.get("action", "")
    if action == "recheck":
        if case.status in NO_RECHECK_STATUSES:  # the page offers no button; nor does a crafted POST
            return _page(request, link, language=language, status=400)
        try:
            # Only the case's own targets, read from the database: nothing posted is probed.
            campaign_services.case_request_recheck(case=case, actor_label="recipient")
        except campaign_services.RecheckRateLimited as limited:
            minutes = max(1, math.ceil(limited.seconds_left / 60))
            message = _fill(strings["check_rate_limited"], minutes=minutes)
            return _page(request, link, language=language, message=message, status=429)
        return _back(request, language, "check")
    if action in FORM_ACTIONS:
        form_class, form_name, anchor, act = FORM_ACTIONS[action]
        form = form_class(request.POST, strings=strings)
        with translation.override(language):  # Django's error texts in the page's language
            valid = form.is_valid()
        if not valid:
            return _page(request, link, language=language, status=400, **{form_name: form})
        act(case, link, form.cleaned_data)
        return _back(request, language, anchor)
    return _page(request, link, language=language, status=400)


@public_page
@require_http_methods(["GET", "POST"])
def remediation_invalid(request: HttpRequest) -> HttpResponse:
    return _invalid(request)


@public_page
@require_GET
def remediation_status(request: HttpRequest, token: str) -> HttpResponse:
    """The re-check's progress for the page's script; the same token check as the page."""
    link = _find_link(token)
    if link is None:
        return JsonResponse({"error": "not found"}, status=404)
    case = link.case
    language = page_language(request, case)
    strings = _guides().page_strings(language)
    recheck = recheck_of(case)
    rows = _rows(case, language, strings, recheck)
    return JsonResponse(
        {
            "state": recheck.state,
            "progress": _progress_text(recheck, strings),
            "case_status": case.status,
            "case_status_text": strings.get(f"status_{case.status}", case.status),
            "next_text": _next_text(case, strings),
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
