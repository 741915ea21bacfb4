from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from campaign.admin_base import PartnerScopedAdmin
from letters.models import DeliveryEvent, Letter, LetterTemplate


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
    readonly_fields = (
        "version",
        "status",
        "approved_by",
        "approved_at",
        "created_by",
        "created_at",
        "tone_report",
        "source_path",
    )
    autocomplete_fields = ("partner",)


class DeliveryEventInline(admin.TabularInline):
    model = DeliveryEvent
    extra = 0
    fields = ("occurred_at", "esp", "event_type", "bounce_kind", "recipient", "description")
    readonly_fields = fields
    can_delete = False
    ordering = ("occurred_at",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Letter)
class LetterAdmin(PartnerScopedAdmin):
    partner_field = "case__partner"
    list_display = ("case", "kind", "language", "recipient_email", "status", "sent_at")
    list_filter = ("status", "kind", "language")
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
        "error",
    )
    raw_id_fields = ("case", "template", "contact")
    inlines = (DeliveryEventInline,)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A letter is a record of what was sent; it changes only through the letter services.
        return False


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
