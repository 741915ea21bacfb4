from __future__ import annotations

import json
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
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.clickjacking import xframe_options_sameorigin

from campaign import selectors
from campaign.admin import CaseAdmin
from campaign.admin_base import PartnerScopedAdmin
from campaign.models import Case
from letters import links, rendering, services
from letters.models import DeliveryEvent, Letter, LetterTemplate, RemediationLink

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
        if not obj.tone_report:
            return "—"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "", "<li>{}</li>", ((json.dumps(p, ensure_ascii=False),) for p in obj.tone_report)
            ),
        )

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
        self.message_user(
            request,
            f"Approved: {template.partner.country} {template.kind}/"
            f"{template.language} v{template.version}.",
        )
        return True

    def approve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        template = self._scoped_object(request, object_id)
        self._approve(request, template)
        return HttpResponseRedirect(
            reverse("admin:letters_lettertemplate_change", args=[template.pk])
        )

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
        error = next((e for e in map(rendering.sandbox_check, vars(source).values()) if e), None)
        if error:
            return HttpResponse(f"Template error: {error}", content_type="text/plain", status=400)
        rendered = preview_render(template, source)
        if fmt == "pdf":
            response = HttpResponse(rendering.letter_pdf(rendered), content_type="application/pdf")
            response["Content-Disposition"] = (
                f'inline; filename="preview-{template.language}-{template.kind}.pdf"'
            )
            return response
        if fmt == "text":
            return HttpResponse(rendered.text, content_type="text/plain; charset=utf-8")
        response = HttpResponse(rendered.html)
        response["Content-Security-Policy"] = PREVIEW_CSP
        return response


def preview_render(template: LetterTemplate, source: rendering.TemplateSource) -> Any:
    """On the partner's newest case, or a built-in sample when it has none; never a real link."""
    case = (
        Case.objects.filter(partner=template.partner)
        .select_related("partner", "server_owner", "campaign")
        .order_by("-opened_at", "-id")
        .first()
    )
    if case is not None:
        return rendering.render_case(
            case,
            kind=template.kind,
            language=template.language,
            source=source,
            remediation_url=links.PREVIEW_URL,
        )
    context = rendering.sample_context(
        template.partner,
        kind=template.kind,
        language=template.language,
        remediation_url=links.PREVIEW_URL,
    )
    return rendering.render_source(
        source, context=context, partner=template.partner, language=template.language
    )


class DeliveryEventInline(admin.TabularInline):
    model = DeliveryEvent
    extra = 0
    fields = ("occurred_at", "esp", "event_type", "bounce_kind", "recipient", "description")
    readonly_fields = fields
    can_delete = False
    ordering = ("occurred_at",)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.is_member(request.user)  # roles, not Django model permissions

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LetterAttentionFilter(admin.SimpleListFilter):
    title = _("needs attention")
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", _("Needs attention (unknown, stuck)"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(pk__in=services.letters_needing_attention().values("pk"))
        return queryset


@admin.register(Letter)
class LetterAdmin(PartnerScopedAdmin):
    partner_field = "case__partner"
    list_display = ("case", "kind", "language", "recipient_email", "status", "age", "sent_at")
    list_filter = (LetterAttentionFilter, "status", "kind", "language")
    list_select_related = ("case",)
    search_fields = ("case__reference", "recipient_email", "esp_message_id", "public_id")
    date_hierarchy = "created_at"
    readonly_fields = (
        "public_id",
        "status",
        "esp_message_id",
        "pdf",
        "pdf_sha256",
        "queued_at",
        "sent_at",
        "status_changed_at",
        "not_before",
        "dispatched_at",
        "claimed_by",
        "lease_until",
        "handed_at",
        "attempts",
        "error",
    )
    raw_id_fields = ("case", "template", "contact")
    inlines = (DeliveryEventInline,)
    actions = ("retry_failed", "mark_sent", "send_again", "requeue")

    @admin.display(description=_("In this status for"), ordering="status_changed_at")
    def age(self, obj: Letter) -> str:
        return timesince(obj.status_changed_at)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        attention = self.get_queryset(request).filter(
            pk__in=services.letters_needing_attention().values("pk")
        )
        count = attention.count()
        if count and request.method == "GET" and "attention" not in request.GET:
            oldest = attention.order_by("status_changed_at").first()
            messages.warning(
                request,
                format_html(
                    '{} <a href="?attention=yes">{}</a>',
                    ngettext(
                        "%(count)d letter needs attention (the oldest for %(age)s).",
                        "%(count)d letters need attention (the oldest for %(age)s).",
                        count,
                    )
                    % {"count": count, "age": timesince(oldest.status_changed_at)},
                    gettext("Show them"),
                ),
            )
        return super().changelist_view(request, extra_context)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A letter is a record of what was sent; it changes only through the letter services.
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return selectors.has_role(request.user, "caseworker")

    def _each(self, request: HttpRequest, queryset: QuerySet, act: Any) -> tuple[int, list[str]]:
        done, refused = 0, []
        for letter in queryset.select_related("case__partner"):
            if not selectors.has_role(request.user, "caseworker", letter.case.partner):
                refused.append(str(letter))
                continue
            try:
                done += 1 if act(letter) is not False else 0
            except services.LetterNotSettled as exc:
                refused.append(str(exc))
        if refused:
            self.message_user(
                request, gettext("Not changed: ") + " ".join(refused), messages.WARNING
            )
        return done, refused

    @admin.action(description=_("Retry failed letters (same recipient)"), permissions=["retry"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet) -> None:
        retried = 0
        for letter in queryset.select_related("case__partner"):
            if selectors.has_role(request.user, "caseworker", letter.case.partner):
                retried += services.letter_retry(letter=letter, actor=request.user)
        self.message_user(request, f"{retried} failed letter(s) queued again.")

    @admin.action(
        description=_("Mark sent (the ESP's log shows it went out)"), permissions=["retry"]
    )
    def mark_sent(self, request: HttpRequest, queryset: QuerySet) -> None:
        done, _refused = self._each(
            request,
            queryset,
            lambda letter: services.letter_settle_sent(letter=letter, actor=request.user),
        )
        self.message_user(request, gettext("%(count)d letter(s) marked sent.") % {"count": done})

    @admin.action(description=_("Send again (it did not go out)"), permissions=["retry"])
    def send_again(self, request: HttpRequest, queryset: QuerySet) -> None:
        done, _refused = self._each(
            request,
            queryset,
            lambda letter: services.letter_send_again(letter=letter, actor=request.user),
        )
        self.message_user(request, gettext("%(count)d letter(s) queued again.") % {"count": done})

    @admin.action(description=_("Re-queue stuck letters"), permissions=["retry"])
    def requeue(self, request: HttpRequest, queryset: QuerySet) -> None:
        done, _refused = self._each(
            request,
            queryset,
            lambda letter: services.letter_requeue(letter=letter, actor=request.user),
        )
        self.message_user(
            request,
            gettext(
                "%(count)d letter(s) back in the outbox; letters the ESP may have had are left."
            )
            % {"count": done},
        )


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(PartnerScopedAdmin):
    partner_field = "letter__case__partner"
    list_display = ("received_at", "esp", "event_type", "bounce_kind", "recipient", "letter")
    list_filter = ("esp", "event_type", "bounce_kind")
    list_select_related = ("letter__case",)
    search_fields = ("recipient", "event_id", "message_id")
    date_hierarchy = "received_at"
    readonly_fields = ("raw_pretty",)
    exclude = ("raw",)

    @admin.display(description="Raw event")
    def raw_pretty(self, obj: DeliveryEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.raw, indent=2, ensure_ascii=False))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(RemediationLink)
class RemediationLinkAdmin(PartnerScopedAdmin):
    partner_field = "case__partner"
    list_display = ("case", "letter", "created_at", "expires_at")
    list_select_related = ("case", "letter")
    search_fields = ("case__reference",)
    fields = ("case", "letter", "created_at", "expires_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # links are issued with letters; the token exists only in the letter


# --- Case admin: the letter actions and the case's letters, registered from here so that
# campaign/admin.py needs no import of letters (campaign must not import letters).
class LetterInline(admin.TabularInline):
    model = Letter
    extra = 0
    fields = ("kind", "language", "recipient_email", "status", "sent_at", "error")
    readonly_fields = fields
    can_delete = False
    show_change_link = True
    ordering = ("created_at",)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.is_member(request.user)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _queue_action(
    modeladmin: Any, request: HttpRequest, queryset: QuerySet, *, fresh: bool
) -> None:
    queued, refused = 0, []
    for case in queryset.select_related("partner", "server_owner"):
        if not selectors.has_role(request.user, "caseworker", case.partner):
            refused.append(f"{case.reference}: you are not a caseworker of {case.partner.country}.")
            continue
        try:
            services.letter_queue(
                case=case,
                actor=request.user,
                fresh=fresh,
                note="" if fresh else "Resent to the next contact by staff.",
            )
            queued += 1
        except services.LetterNotQueued as exc:
            refused.append(str(exc))
    if queued:
        modeladmin.message_user(request, f"{queued} letter(s) queued.")
    if refused:
        modeladmin.message_user(request, "Not queued: " + " ".join(refused), messages.WARNING)


@admin.action(description="Queue advisory letter", permissions=["change"])
def queue_advisory_letter(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    _queue_action(modeladmin, request, queryset, fresh=True)


@admin.action(description="Resend to the next contact", permissions=["change"])
def resend_to_next_contact(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    _queue_action(modeladmin, request, queryset, fresh=False)


CaseAdmin.actions = (*CaseAdmin.actions, queue_advisory_letter, resend_to_next_contact)
CaseAdmin.inlines = (*CaseAdmin.inlines, LetterInline)
