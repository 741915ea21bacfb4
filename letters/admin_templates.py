"""The letter templates in the admin: drafts, the tone report in sentences, blank fields, a diff
against the approved version, previews in a sandboxed frame, and four-eyes approval."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.views.decorators.clickjacking import xframe_options_sameorigin

from campaign.admin_base import PartnerScopedAdmin, log_service_action
from letters import links, printing, rendering, sandbox, services
from letters.models import LetterTemplate
from letters.render_budget import RenderBudgetExceeded

# Staff-written HTML in a preview: no scripts, no remote loads, nothing but our styles and images.
PREVIEW_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


@admin.register(LetterTemplate)
class LetterTemplateAdmin(PartnerScopedAdmin):
    list_display = (
        "partner",
        "kind",
        "language",
        "version",
        "status",
        "approved_by",
        "approved_at",
    )
    list_filter = ("status", "kind", "language", "partner")
    list_select_related = ("partner", "approved_by")
    search_fields = ("subject", "partner__country")
    fields = (
        "partner",
        "kind",
        "language",
        "subject",
        "body_html",
        "body_text",
        "version",
        "status",
        "tone_problems",
        "blank_field_report",
        "approved_by",
        "approved_at",
        "created_by",
        "created_at",
        "source_path",
    )
    readonly_fields = (
        "version",
        "status",
        "approved_by",
        "approved_at",
        "created_by",
        "created_at",
        "tone_problems",
        "blank_field_report",
        "source_path",
    )
    autocomplete_fields = ("partner",)
    actions = ("approve_templates",)
    change_form_template = "admin/letters/lettertemplate/change_form.html"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None:  # a version belongs to its slot; a new slot is a new template
            return (*self.readonly_fields, "partner", "kind", "language")
        return self.readonly_fields

    @admin.display(description="Tone check")
    def tone_problems(self, obj: LetterTemplate) -> str:
        return tone_report_html(obj.tone_report)

    @admin.display(description="Fields that would print nothing")
    def blank_field_report(self, obj: LetterTemplate) -> str:
        problems = template_blank_fields(obj)
        if not problems:
            return "None: every field the template prints has a value."
        return format_html(
            '<ul class="template-flags">{}</ul>',
            format_html_join("", "<li>{}</li>", ((p,) for p in problems)),
        )

    def response_add(self, request: HttpRequest, obj: LetterTemplate, *args: Any) -> Any:
        return self._to_saved_version(request, obj) or super().response_add(request, obj, *args)

    def response_change(self, request: HttpRequest, obj: LetterTemplate) -> Any:
        return self._to_saved_version(request, obj) or super().response_change(request, obj)

    def _to_saved_version(self, request: HttpRequest, obj: LetterTemplate) -> Any:
        # Every save makes a new version: "Save and continue editing" opens that one.
        if "_continue" in request.POST:
            return HttpResponseRedirect(
                reverse("admin:letters_lettertemplate_change", args=[obj.pk])
            )
        return None

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        original = context.get("original")
        if original is not None and original.pk:
            context["approval_refusal"] = services.template_approval_refusal(original, request.user)
        return super().render_change_form(request, context, *args, **kwargs)

    def save_model(
        self, request: HttpRequest, obj: LetterTemplate, form: Any, change: bool
    ) -> None:
        # Never edit a version in place: every save is a new draft (approved ones stay as sent).
        if change and not form.has_changed():
            return
        new = services.template_new_version(
            partner=obj.partner,
            kind=obj.kind,
            language=obj.language,
            subject=obj.subject,
            body_html=obj.body_html,
            body_text=obj.body_text,
            actor=request.user,
        )
        obj.pk, obj.version, obj.status = new.pk, new.version, new.status
        obj.tone_report = new.tone_report
        messages.info(request, f"Saved as a new draft, version {new.version}.")
        if new.tone_report:
            messages.warning(
                request, f"The tone check found {len(new.tone_report)} problem(s) in this draft."
            )

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/approve/",
                view(self.approve_view),
                name="letters_lettertemplate_approve",
            ),
            path(
                "<path:object_id>/preview/<str:fmt>/",
                view(self.preview_view),
                name="letters_lettertemplate_preview",
            ),
            *super().get_urls(),
        ]

    def _scoped_object(self, request: HttpRequest, object_id: str) -> LetterTemplate:
        obj = self.get_object(request, object_id)  # through the scoped queryset
        if obj is None or not self.has_view_permission(request, obj):
            raise Http404("No such template.")
        return obj

    def _approve(self, request: HttpRequest, template: LetterTemplate) -> bool:
        try:
            services.template_approve(template=template, actor=request.user)
        except services.ApprovalRefused as exc:
            self.message_user(request, f"{template}: {exc}", messages.ERROR)
            return False
        log_service_action(request, template, f"Approved version {template.version}.")
        self.message_user(
            request,
            f"Approved: {template.partner.country} {template.kind}/"
            f"{template.language} v{template.version}.",
        )
        return True

    def approve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: what approving this version changes (a diff against the approved one), the
        tone check and the flags; POST: approve it."""
        template = self._scoped_object(request, object_id)
        if request.method == "POST":
            self._approve(request, template)
            return HttpResponseRedirect(
                reverse("admin:letters_lettertemplate_change", args=[template.pk])
            )
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET", "POST"])
        current = (
            LetterTemplate.objects.filter(
                partner=template.partner,
                kind=template.kind,
                language=template.language,
                status=LetterTemplate.Status.APPROVED,
            )
            .exclude(pk=template.pk)
            .first()
        )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Approve {template.partner.country} {template.kind}/{template.language} "
            f"version {template.version}?",
            "opts": self.model._meta,
            "original": template,
            "current": current,
            "diffs": template_diffs(current, template),
            "tone_html": tone_report_html(template.tone_report),
            "blank_fields": template_blank_fields(template),
            "refusal": services.template_approval_refusal(template, request.user),
        }
        return TemplateResponse(request, "admin/letters/lettertemplate/approve.html", context)

    @admin.action(description="Approve selected versions")
    def approve_templates(self, request: HttpRequest, queryset: QuerySet) -> None:
        for template in queryset.select_related("partner"):
            self._approve(request, template)

    @xframe_options_sameorigin
    def preview_view(self, request: HttpRequest, object_id: str, fmt: str) -> HttpResponse:
        template = self._scoped_object(request, object_id)
        if fmt not in ("html", "pdf", "text"):
            raise Http404("Preview as html, text or pdf.")
        source = rendering.TemplateSource.of(template)
        if request.method == "POST":  # unsaved edits from the change form
            if not self.has_change_permission(request, template):
                raise PermissionDenied
            source = rendering.TemplateSource(
                request.POST.get("subject", source.subject),
                request.POST.get("body_html", source.body_html),
                request.POST.get("body_text", source.body_text),
            )
        error = next((e for e in map(sandbox.sandbox_check, vars(source).values()) if e), None)
        if error:
            return HttpResponse(f"Template error: {error}", content_type="text/plain", status=400)
        try:
            rendered = preview_render(template, source)
        except RenderBudgetExceeded as exc:  # a runaway draft: say so instead of burning a CPU
            return HttpResponse(
                gettext("Template error: %(error)s") % {"error": exc},
                content_type="text/plain; charset=utf-8",
                status=400,
            )
        if fmt == "pdf":
            response = HttpResponse(printing.letter_pdf(rendered), content_type="application/pdf")
            response["Content-Disposition"] = (
                f'inline; filename="preview-{template.language}-{template.kind}.pdf"'
            )
            return response
        if fmt == "text":
            return HttpResponse(rendered.text, content_type="text/plain; charset=utf-8")
        response = HttpResponse(rendered.html)
        response["Content-Security-Policy"] = PREVIEW_CSP
        return response


FIELD_LABELS = {"subject": "subject", "body_html": "HTML body", "body_text": "text body"}


def tone_sentences(report: list[dict[str, Any]]) -> list[str]:
    """The tone check's findings as sentences with the line and the phrase."""
    sentences = []
    for problem in report:
        where = FIELD_LABELS.get(problem.get("field", ""), "template")
        line = problem.get("line")
        at = f"Line {line} of the {where}" if line else f"The {where}"
        phrase = problem.get("phrase") or problem.get("problem", "")
        reason = problem.get("reason", "")
        sentences.append(
            f"{at}: “{phrase}” reads as accusatory ({reason}). Rephrase it as advice."
            if reason
            else f"{at}: {phrase}"
        )
    return sentences


def tone_report_html(report: list[dict[str, Any]]) -> str:
    if not report:
        return "No problems: the wording is advisory."
    return format_html(
        '<ul class="tone-report">{}</ul>',
        format_html_join("", "<li>{}</li>", ((s,) for s in tone_sentences(report))),
    )


def template_blank_fields(template: LetterTemplate) -> list[str]:
    context = rendering.sample_context(
        template.partner,
        kind=template.kind,
        language=template.language,
        remediation_url=links.PREVIEW_URL,
    )
    found: list[str] = []
    for source in (template.subject, template.body_html, template.body_text):
        for problem in sandbox.blank_fields(source or "", context):
            if problem not in found:
                found.append(problem)
    return found


def template_diffs(
    current: LetterTemplate | None, template: LetterTemplate
) -> list[dict[str, Any]]:
    """Side by side, per part: the approved version's text against this version's."""
    import difflib

    diffs = []
    for field, label in FIELD_LABELS.items():
        old = getattr(current, field, "") if current is not None else ""
        new = getattr(template, field)
        if old == new:
            diffs.append({"label": label, "unchanged": True, "table": ""})
            continue
        table = difflib.HtmlDiff(tabsize=2, wrapcolumn=70).make_table(
            old.splitlines(),
            new.splitlines(),
            f"approved v{current.version}" if current is not None else "(nothing approved)",
            f"this version (v{template.version})",
            context=current is not None,
            numlines=2,
        )
        diffs.append({"label": label, "unchanged": False, "table": mark_safe(table)})  # noqa: S308
    return diffs


def preview_render(template: LetterTemplate, source: rendering.TemplateSource) -> Any:
    """On a sample case with every field filled (a real case may lack, say, an earlier letter
    for a reminder to mention); the partner's own names and dates; never a real link."""
    context = rendering.sample_context(
        template.partner,
        kind=template.kind,
        language=template.language,
        remediation_url=links.PREVIEW_URL,
    )
    return rendering.render_source(
        source, context=context, partner=template.partner, language=template.language
    )
