"""The case page as a workbench: contacts, deadlines, findings, letters and the actions on them.

It lives in letters because it shows letters and queues them (campaign must not import letters):
the campaign app's CaseAdmin is extended here and registered in its place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.views.decorators.clickjacking import xframe_options_sameorigin

from campaign import selectors, workflow
from campaign.admin_base import log_service_action
from campaign.admin_case_display import LANGUAGE_NAMES, NEXT_ACTIONS, status_badge
from campaign.admin_cases import CaseAdmin
from campaign.models import Case, Suppression
from letters import links, printing, rendering, services
from letters.models import Letter, LetterKind, RemediationLink
from scanning.models import Verdict

# Staff-written HTML in a preview: no scripts, no remote loads, nothing but our styles and images.
PREVIEW_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"

# What `next_action_at` means in each status: the campaign's schedule acts on it then.
DEADLINES = {
    Case.Status.NEW: "attribution should be done",
    Case.Status.NEEDS_REVIEW: "review due",
    Case.Status.READY: "the letter should go out",
    Case.Status.NOTIFIED: "a reminder goes out if the server is still open",
    Case.Status.REMINDED: "escalation to the partner if still open",
    Case.Status.ESCALATED: "closed as unresponsive if still open",
}


PREVIEW_LABELS: dict[str, Any] = {
    LetterKind.INITIAL: _lazy("Preview the letter"),
    LetterKind.REMINDER: _lazy("Preview the reminder"),
    LetterKind.FIXED: _lazy("Preview the thank-you letter"),
}


# Verdict codes in event notes ("192.0.2.10:25/smtp confirmed-open"), longest first so that
# likely-open-weak is not read as likely-open.
VERDICT_WORDS = sorted(
    ((str(code), str(label).lower()) for code, label in Verdict.choices),
    key=lambda pair: -len(pair[0]),
)


def readable_note(note: str) -> str:
    for code, label in VERDICT_WORDS:
        note = re.sub(rf"(?<![\w-]){re.escape(code)}(?![\w-])", label, note)
    return note


def next_letter_kind(case: Case) -> str:
    if case.status in (Case.Status.NOTIFIED, Case.Status.REMINDED, Case.Status.ESCALATED):
        return LetterKind.REMINDER
    if case.status == Case.Status.FIXED:
        return LetterKind.FIXED
    return LetterKind.INITIAL


@dataclass
class Action:
    label: str
    name: str = ""  # an admin action posted to the case list, else a link
    url: str = ""
    refusal: str = ""
    primary: bool = False
    new_tab: bool = False


def _case_url(case: Case, suffix: str) -> str:
    return reverse(f"admin:campaign_case_{suffix}", args=[case.pk])


FINDINGS_SHOWN = 50


def workbench(request: HttpRequest, case: Case) -> dict[str, Any]:
    """Everything the case page shows above its form, read in a handful of queries."""
    owner = case.server_owner
    may_act = selectors.has_role(request.user, "caseworker", case.partner)
    letters = list(
        Letter.objects.filter(case=case).select_related("template").order_by("created_at", "id")
    )
    suppressed = {
        e.lower()
        for e in Suppression.objects.active()
        .affecting(case.partner_id)
        .values_list("email", flat=True)
        if e
    }
    next_contact = services.letter_next_contact(case)
    written: dict[str, list[Letter]] = {}
    for letter in letters:
        written.setdefault(letter.recipient_email.lower(), []).append(letter)
    contacts = []
    for contact in owner.contacts.order_by("position"):
        state = ""
        if contact.bounced_at:
            state = "bounced"
        elif contact.email.lower() in suppressed:
            state = "suppressed"
        elif next_contact is not None and contact.pk == next_contact.pk:
            state = "next"
        contacts.append(
            {
                "contact": contact,
                "state": state,
                "letters": written.get(contact.email.lower(), []),
            }
        )
    # A case may hold ten thousand findings: the latest recorded ones, without their
    # transcripts, and a link to the whole list. Newest id first is read backwards from the
    # case's own (case, finding) index, fifty rows; by probing time PostgreSQL may walk the
    # dates of every finding in the table looking for this case's (seconds at a million).
    findings = list(
        case.findings.select_related("target")
        .defer("transcript", "details", "reasons")
        .order_by("-id")[:FINDINGS_SHOWN]
    )
    findings_total = len(findings)
    if findings_total == FINDINGS_SHOWN:
        findings_total = case.findings.count()
    events = list(case.events.select_related("actor").order_by("at", "id"))
    status_labels: dict[str, str] = {str(k): str(v) for k, v in Case.Status.choices}
    timeline = [
        {
            "event": e,
            "change": (
                f"{status_labels.get(e.from_status, e.from_status)} → "
                f"{status_labels.get(e.to_status, e.to_status)}"
                if e.from_status and e.to_status and e.from_status != e.to_status
                else ""
            ),
            "who": e.actor_label or (e.actor.get_username() if e.actor else "system"),
            "note": readable_note(e.note),
        }
        for e in events
    ]
    kind = next_letter_kind(case)
    actions: list[Action] = []
    # Only what fits the case's status is offered; a fitting action that something else blocks
    # (no approved template, no contact left) shows disabled with the reason.
    if may_act:
        if case.status == Case.Status.READY:
            refusal = services.letter_queue_refusal(case, fresh=True) or ""
            actions.append(Action(_("Queue letter…"), "queue_advisory_letter", refusal=refusal))
            actions[-1].primary = True
        elif workflow.can_transition(case.status, Case.Status.READY):
            actions.append(Action(_("Mark ready"), "mark_ready"))
            actions[-1].primary = case.status in (Case.Status.NEW, Case.Status.NEEDS_REVIEW)
        if any(letter.kind == LetterKind.INITIAL for letter in letters):
            resend = services.letter_queue_refusal(case, fresh=False) or ""
            actions.append(Action(_("Resend to the next contact…"), "resend_to_next_contact"))
            actions[-1].refusal = resend
    previews = reverse("admin:campaign_case_letter_preview", args=[case.pk, kind, "html"])
    actions += [
        Action(PREVIEW_LABELS[kind], url=previews, new_tab=True),
        Action(_("PDF"), url=previews.replace("/html/", "/pdf/"), new_tab=True),
        Action(
            _("View the owner's page"),
            url=reverse("admin:campaign_case_owner_page", args=[case.pk]),
            new_tab=True,
        ),
    ]
    deadline = None
    due, scheduled = case.next_action_at, True
    if due is None:
        due, scheduled = _campaign_deadline(case, letters), False
    if due is not None:
        deadline = {
            "at": due,
            # The schedule's own plan ("reminder on 28 Dec if still open") when it has one.
            "what": case.next_action_label
            if scheduled and case.next_action
            else DEADLINES.get(Case.Status(case.status), "next step"),
            "overdue": due < timezone.now(),
            "scheduled": scheduled,
        }
    return {
        "case": case,
        "badge": status_badge(case),
        "language_name": LANGUAGE_NAMES.get(case.language, case.language),
        "next_step": NEXT_STEP.get(case.status, ""),
        "deadline": deadline,
        "contacts": contacts,
        "findings": findings,
        "findings_total": findings_total,
        "findings_url": reverse("admin:scanning_finding_changelist")
        + f"?cases__id__exact={case.pk}",
        "letters": letters,
        "timeline": timeline,
        "actions": actions,
        "may_act": may_act,
        "changelist_url": reverse("admin:campaign_case_changelist"),
    }


def _campaign_deadline(case: Case, letters: list[Letter]) -> Any:
    """With no deadline set on the case: when the campaign's schedule says the next step is
    due, counted from the first letter sent (reminder after N days, the final deadline after M)."""
    sent = [
        letter.sent_at for letter in letters if letter.kind == LetterKind.INITIAL and letter.sent_at
    ]
    if not sent:
        return None
    days = {
        Case.Status.NOTIFIED: case.campaign.reminder_after_days,
        Case.Status.REMINDED: case.campaign.final_deadline_days,
        Case.Status.ESCALATED: case.campaign.final_deadline_days,
    }.get(Case.Status(case.status))
    return min(sent) + timedelta(days=days) if days is not None else None


NEXT_STEP = {str(k): v for k, v in NEXT_ACTIONS.items()}


def _queue_rows(request: HttpRequest, cases: list[Case], *, fresh: bool) -> list[dict[str, Any]]:
    rows = []
    for case in cases:
        contact = services.letter_next_contact(case)
        template = rendering.approved_template(
            case.partner, kind=LetterKind.INITIAL, language=case.language
        )
        if not selectors.has_role(request.user, "caseworker", case.partner):
            refusal = f"you are not a caseworker of {case.partner.country_name}"
        else:
            refusal = services.letter_queue_refusal(case, fresh=fresh) or ""
        rows.append(
            {
                "case": case,
                "contact": contact,
                "template": template,
                "language_name": LANGUAGE_NAMES.get(case.language, case.language),
                "refusal": refusal,
                "preview_html": reverse(
                    "admin:campaign_case_letter_preview",
                    args=[case.pk, LetterKind.INITIAL, "html"],
                ),
                "preview_pdf": reverse(
                    "admin:campaign_case_letter_preview", args=[case.pk, LetterKind.INITIAL, "pdf"]
                ),
            }
        )
    return rows


def _confirm_or_queue(
    modeladmin: CaseWorkbenchAdmin, request: HttpRequest, queryset: Any, *, fresh: bool, name: str
) -> HttpResponseBase | None:
    """Like Django's delete confirmation: a page that lists each letter first; only its
    "Yes" (post=yes) queues anything."""
    cases = list(queryset.select_related("partner", "server_owner").order_by("reference"))
    if request.POST.get("post") == "yes":
        _queue(modeladmin, request, cases, fresh=fresh)
        return None
    rows = _queue_rows(request, cases, fresh=fresh)
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Queue advisory letters?") if fresh else _("Resend to the next contact?"),
        "opts": modeladmin.model._meta,
        "rows": rows,
        "queueable": sum(1 for r in rows if not r["refusal"]),
        "action_name": name,
        "fresh": fresh,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "from_case": request.POST.get("_case", ""),
        "back_url": (
            reverse("admin:campaign_case_change", args=[request.POST["_case"]])
            if request.POST.get("_case", "").isdigit()
            else reverse("admin:campaign_case_changelist")
        ),
    }
    return TemplateResponse(request, "admin/campaign/case/queue_confirmation.html", context)


def _queue(modeladmin: Any, request: HttpRequest, cases: list[Case], *, fresh: bool) -> None:
    queued, refused = 0, []
    for case in cases:
        if not selectors.has_role(request.user, "caseworker", case.partner):
            refused.append(f"{case.reference}: you are not a caseworker of {case.partner.country}.")
            continue
        try:
            letter = services.letter_queue(
                case=case,
                actor=request.user,
                fresh=fresh,
                note="" if fresh else "Resent to the next contact by staff.",
            )
        except services.LetterNotQueued as exc:
            refused.append(str(exc))
            continue
        queued += 1
        log_service_action(
            request,
            case,
            f"Queued the {letter.get_kind_display().lower()} letter to {letter.recipient_email}.",
        )
    if queued:
        modeladmin.message_user(request, f"{queued} letter(s) queued.")
    if refused:
        modeladmin.message_user(request, "Not queued: " + " ".join(refused), messages.WARNING)


@admin.action(description="Queue advisory letter…", permissions=["change"])
def queue_advisory_letter(modeladmin: Any, request: HttpRequest, queryset: Any) -> Any:
    return _confirm_or_queue(
        modeladmin, request, queryset, fresh=True, name="queue_advisory_letter"
    )


@admin.action(description="Resend to the next contact…", permissions=["change"])
def resend_to_next_contact(modeladmin: Any, request: HttpRequest, queryset: Any) -> Any:
    return _confirm_or_queue(
        modeladmin, request, queryset, fresh=False, name="resend_to_next_contact"
    )


class CaseWorkbenchAdmin(CaseAdmin):
    change_form_template = "admin/campaign/case/change_form.html"
    inlines = ()  # type: ignore[assignment]  # the timeline and the letters are panels of the workbench
    fields = (  # type: ignore[assignment]  # the findings and next step are workbench panels
        "reference",
        "campaign",
        "server_owner",
        "partner",
        "language",
        "status",
        "review_reason",
        "next_action_at",
        "opened_at",
        "status_changed_at",
    )
    actions = (*CaseAdmin.actions, queue_advisory_letter, resend_to_next_contact)  # type: ignore[assignment]

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/letter/<str:kind>/<str:fmt>/",
                view(self.letter_preview_view),
                name="campaign_case_letter_preview",
            ),
            path(
                "<path:object_id>/owner-page/",
                view(self.owner_page_view),
                name="campaign_case_owner_page",
            ),
            *super().get_urls(),
        ]

    def _scoped_case(self, request: HttpRequest, object_id: str) -> Case:
        case = self.get_object(request, object_id)  # through the scoped queryset
        if case is None or not self.has_view_permission(request, case):
            raise Http404("No such case.")
        return case

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra = {**(extra_context or {}), "show_save_and_add_another": False}
        case = self.get_object(request, object_id)
        if case is not None and self.has_view_permission(request, case):
            extra["workbench"] = workbench(request, case)
        return super().change_view(request, object_id, form_url, extra)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {**(extra_context or {}), "show_save_and_add_another": False}
        return super().add_view(request, form_url, extra)

    def response_action(
        self, request: HttpRequest, queryset: Any, *args: Any, **kwargs: Any
    ) -> Any:
        # Buttons on the case page post to the case list's actions; bring the user back.
        response = super().response_action(request, queryset, *args, **kwargs)
        back = request.POST.get("_case", "")
        if isinstance(response, HttpResponseRedirect) and back.isdigit():
            return HttpResponseRedirect(reverse("admin:campaign_case_change", args=[back]))
        return response

    @xframe_options_sameorigin
    def letter_preview_view(
        self, request: HttpRequest, object_id: str, kind: str, fmt: str
    ) -> HttpResponse:
        """The letter this case would get now, from the approved template; the link is a
        placeholder, so nothing here can reach the owner's page."""
        case = self._scoped_case(request, object_id)
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        if kind not in LetterKind.values or fmt not in ("html", "text", "pdf"):
            raise Http404("Preview an initial, reminder or fixed letter as html, text or pdf.")
        template = rendering.approved_template(case.partner, kind=kind, language=case.language)
        if template is None:
            return HttpResponse(
                f"No approved {kind} template in “{case.language}” for "
                f"{case.partner.country_name}: approve one under Letter templates first.",
                content_type="text/plain; charset=utf-8",
                status=409,
            )
        rendered = rendering.render_case(
            case,
            kind=kind,
            source=rendering.TemplateSource.of(template),
            remediation_url=links.PREVIEW_URL,
        )
        if fmt == "pdf":
            response = HttpResponse(printing.letter_pdf(rendered), content_type="application/pdf")
            response["Content-Disposition"] = f'inline; filename="{case.reference}-{kind}.pdf"'
        elif fmt == "text":
            response = HttpResponse(rendered.text, content_type="text/plain; charset=utf-8")
        else:
            response = HttpResponse(rendered.html)
            response["Content-Security-Policy"] = PREVIEW_CSP
        response["Cache-Control"] = "no-store"
        return response

    def owner_page_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The owner's page as the owner sees it, for staff: rendered from the case, with no
        token issued or read, so nothing here can leak or use up the owner's link."""
        from letters import views as remediation_views

        case = self._scoped_case(request, object_id)
        last = Letter.objects.filter(case=case).order_by("-created_at", "-id").first()
        link = RemediationLink(
            case=case, letter=last, token_hash="", expires_at=links.link_expiry(case)
        )
        language = remediation_views.page_language(request, case)
        banner = _(
            "Staff preview of the owner's page (case %(reference)s). "
            "Buttons and forms do nothing here."
        ) % {"reference": case.reference}
        response = remediation_views.owner_page_preview(
            request, link, language=language, banner=banner
        )
        response["Cache-Control"] = "no-store"
        # The public page's policy, minus its script (it would poll the owner's status URL).
        response["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self' 'unsafe-inline'; script-src 'none'; "
            "img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
        )
        return response


class LetterPdfMixin:
    """Sent letters' PDFs, served only to staff of the letter's partner, never as public media."""

    def pdf_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        letter = self.get_object(request, object_id)  # type: ignore[attr-defined]
        if letter is None or not self.has_view_permission(request, letter):  # type: ignore[attr-defined]
            raise Http404("No such letter.")  # as for an id that does not exist
        if not letter.pdf:
            raise Http404("This letter has no stored PDF (it was not sent).")
        try:
            handle = letter.pdf.open("rb")
        except FileNotFoundError:
            raise Http404("The stored PDF is missing.") from None
        response = FileResponse(
            handle,
            content_type="application/pdf",
            as_attachment=False,
            filename=f"{letter.case.reference}-{letter.kind}-{letter.pk}.pdf",
        )
        response["Cache-Control"] = "private, no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response


def pdf_url(letter: Letter) -> str:
    return reverse("admin:letters_letter_pdf", args=[letter.pk])


# Replace the campaign app's registration with the workbench.
if admin.site.is_registered(Case):
    admin.site.unregister(Case)
admin.site.register(Case, CaseWorkbenchAdmin)
