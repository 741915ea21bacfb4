"""Letters, their delivery events and remediation links in the admin. The templates' pages are in
letters/admin_templates.py and the case workbench in letters/admin_case.py; importing them here
registers them."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
)
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.timesince import timesince
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from campaign import selectors
from campaign.admin_base import BehindTheCaseMixin, PartnerScopedAdmin, log_service_action

# Importing these registers the template pages and the case page (the workbench, in place of
# campaign's).
from letters import (
    admin_templates,  # noqa: F401
    services,
)
from letters.admin_case import LetterPdfMixin
from letters.models import DeliveryEvent, Letter, RemediationLink


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

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Needs attention (unknown, stuck)"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(pk__in=services.letters_needing_attention().values("pk"))
        return queryset


@admin.register(Letter)
class LetterAdmin(LetterPdfMixin, PartnerScopedAdmin):
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
        "pdf_link",
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
    exclude = ("pdf",)
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
                    % {
                        "count": count,
                        "age": timesince(oldest.status_changed_at) if oldest else "",
                    },
                    gettext("Show them"),
                ),
            )
        return super().changelist_view(request, extra_context)

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<path:object_id>/pdf/",
                self.admin_site.admin_view(self.pdf_view),
                name="letters_letter_pdf",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="PDF as sent")
    def pdf_link(self, obj: Letter) -> str:
        if not obj.pdf:
            return "— (kept once the letter is sent)"
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">Open the PDF</a>',
            reverse("admin:letters_letter_pdf", args=[obj.pk]),
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A letter is a record of what was sent; it changes only through the letter services.
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # letters are queued from their case, which picks contact and template

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
                if services.letter_retry(letter=letter, actor=request.user):
                    retried += 1
                    log_service_action(request, letter, "Queued again after failing.")
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
class DeliveryEventAdmin(BehindTheCaseMixin, PartnerScopedAdmin):
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
class RemediationLinkAdmin(BehindTheCaseMixin, PartnerScopedAdmin):
    partner_field = "case__partner"
    list_display = ("case", "letter", "created_at", "expires_at")
    list_select_related = ("case", "letter")
    search_fields = ("case__reference",)
    fields = ("case", "letter", "created_at", "expires_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # links are issued with letters; the token exists only in the letter
