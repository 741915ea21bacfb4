from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from campaign import selectors, services
from campaign.admin_base import LeadOnlyAdmin, PartnerScopedAdmin, SharedReadOnlyAdmin
from campaign.intake import admin_views as intake_views
from campaign.models import (
    Attribution,
    Campaign,
    Case,
    CaseEvent,
    CaseSequence,
    Contact,
    ImportBatch,
    Membership,
    Partner,
    ServerOwner,
    Suppression,
)


@admin.register(Partner)
class PartnerAdmin(PartnerScopedAdmin):
    partner_field = "id"
    list_display = ("country", "country_name", "agency", "language_list", "is_lead")
    list_filter = ("is_lead",)
    search_fields = ("country", "country_name", "agency")
    ordering = ("country",)

    @admin.display(description="Languages")
    def language_list(self, obj: Partner) -> str:
        return ", ".join(obj.languages)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Partners are managed by the lead agency; a partner reads its own record.
        return selectors.sees_all_partners(request.user) and super().has_change_permission(
            request, obj
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return selectors.sees_all_partners(request.user) and super().has_add_permission(request)


@admin.register(Membership)
class MembershipAdmin(PartnerScopedAdmin):
    list_display = ("user", "partner", "role")
    list_filter = ("role", "partner")
    search_fields = ("user__username", "user__email", "partner__country")
    list_select_related = ("user", "partner")
    autocomplete_fields = ("partner",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.sees_all_partners(request.user) and super().has_change_permission(
            request, obj
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return selectors.sees_all_partners(request.user) and super().has_add_permission(request)


@admin.register(Campaign)
class CampaignAdmin(SharedReadOnlyAdmin):
    list_display = (
        "name",
        "slug",
        "starts_on",
        "ends_on",
        "is_active",
        "is_paused",
        "case_count",
    )
    list_filter = ("is_active", "is_paused")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("scan_runs",)
    actions = ("scan_campaign_targets", "end_campaigns")
    # Changing these plans every open case of the campaign again.
    SCHEDULE_FIELDS = (
        "reprobe_after_days",
        "reminder_after_days",
        "final_deadline_days",
        "unresponsive_after_days",
        "ends_on",
        "is_active",
    )

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and any(f in form.changed_data for f in self.SCHEDULE_FIELDS):
            from campaign.tasks import reschedule_campaign_task

            reschedule_campaign_task.delay_on_commit(obj.pk)
            self.message_user(request, "The open cases of this campaign are planned again.")

    @admin.action(
        description="End now: close every case still open with a final status",
        permissions=["change"],
    )
    def end_campaigns(self, request: HttpRequest, queryset: QuerySet) -> None:
        for campaign in queryset:
            count = services.campaign_end(campaign=campaign, actor=request.user)
            self.message_user(
                request,
                f"“{campaign.name}” ended: the schedule closes its {count} open case(s) "
                "on its next sweep.",
            )

    @admin.action(description="Scan every target of the campaign", permissions=["scan"])
    def scan_campaign_targets(self, request: HttpRequest, queryset: QuerySet) -> None:
        from scanning.models import Target

        for campaign in queryset:
            ids = list(
                Target.objects.filter(
                    Q(findings__cases__campaign=campaign) | Q(import_batches__campaign=campaign)
                )
                .distinct()
                .values_list("id", flat=True)
            )
            campaign.scan_runs.add(self.start_scan(request, ids, f"campaign {campaign.slug}"))

    @admin.display(description="Cases")
    def case_count(self, obj: Campaign) -> int:
        return obj.cases.count()


class ContactInline(admin.TabularInline):
    model = Contact
    extra = 0
    fields = ("position", "kind", "email", "source", "bounced_at")
    ordering = ("position",)


class AttributionInline(admin.TabularInline):
    model = Attribution
    extra = 0
    fields = (
        "target",
        "reverse_dns",
        "network_cidr",
        "network_name",
        "registrant_country",
        "abuse_email",
    )
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CaseInline(admin.TabularInline):
    model = Case
    extra = 0
    fields = ("reference", "campaign", "status", "language", "opened_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ServerOwner)
class ServerOwnerAdmin(PartnerScopedAdmin):
    list_display = (
        "name",
        "country",
        "partner",
        "primary_contact",
        "preferred_language",
        "updated_at",
    )
    list_filter = ("partner", "country")
    search_fields = ("name", "rdap_handle", "contacts__email")
    ordering = ("name",)
    list_select_related = ("partner",)
    inlines = (ContactInline, AttributionInline, CaseInline)
    readonly_fields = ("created_at", "updated_at")
    actions = ("merge_owners",)

    @admin.action(description="Merge selected owners into the oldest", permissions=["change"])
    def merge_owners(self, request: HttpRequest, queryset: QuerySet) -> None:
        from campaign.attribution.services import owner_merge

        owners = list(queryset.order_by("id"))
        if len(owners) < 2:
            self.message_user(request, "Select at least two owners to merge.", messages.WARNING)
            return
        report = owner_merge(into=owners[0], others=owners[1:], actor=request.user)
        if report.merged:
            merged = ", ".join(report.merged)
            self.message_user(request, f"Merged into “{owners[0].name}”: {merged}.")
        if report.refused:
            refused = "; ".join(report.refused)
            self.message_user(request, f"Not merged: {refused}.", messages.WARNING)

    # Fields attribution also writes: a hand edit is kept as a correction, so it wins over
    # automatic data and survives re-attribution (attribution applies corrections last).
    CORRECTABLE = ("name", "country", "preferred_language")

    def save_model(self, request: HttpRequest, obj: ServerOwner, form: Any, change: bool) -> None:
        edited = {f: getattr(obj, f) for f in self.CORRECTABLE if f in form.changed_data}
        if change and edited:
            obj.corrections = {**(obj.corrections or {}), **edited}
        super().save_model(request, obj, form, change)

    @admin.display(description="First contact")
    def primary_contact(self, obj: ServerOwner) -> str:
        contacts = sorted(obj.contacts.all(), key=lambda c: c.position)  # prefetched
        return contacts[0].email if contacts else "—"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("contacts")


@admin.register(Contact)
class ContactAdmin(PartnerScopedAdmin):
    partner_field = "server_owner__partner"
    list_display = ("email", "kind", "server_owner", "position", "source", "bounced_at")
    list_filter = ("kind", "source")
    search_fields = ("email", "server_owner__name")
    list_select_related = ("server_owner",)
    autocomplete_fields = ("server_owner",)


@admin.register(Attribution)
class AttributionAdmin(PartnerScopedAdmin):
    partner_field = "server_owner__partner"
    list_display = (
        "target",
        "server_owner",
        "reverse_dns",
        "network_cidr",
        "registrant_country",
        "abuse_email",
        "attributed_at",
    )
    list_filter = ("registrant_country",)
    search_fields = ("target__ip", "reverse_dns", "network_name", "abuse_email")
    list_select_related = ("target", "server_owner")
    autocomplete_fields = ("server_owner",)
    raw_id_fields = ("target",)


class CaseEventInline(admin.TabularInline):
    model = CaseEvent
    extra = 0
    fields = ("at", "kind", "from_status", "to_status", "actor_label", "note")
    readonly_fields = fields
    can_delete = False
    ordering = ("at", "id")
    verbose_name_plural = "Timeline"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.is_member(request.user)  # roles, not Django model permissions

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _transition_action(to_status: str, description: str) -> Any:
    @admin.action(description=description, permissions=["change"])
    def action(modeladmin: CaseAdmin, request: HttpRequest, queryset: QuerySet) -> None:
        moved, refused = 0, []
        for case in queryset:
            try:
                services.case_transition(case=case, to_status=to_status, actor=request.user)
                moved += 1
            except services.IllegalTransition:
                refused.append(f"{case.reference} ({case.get_status_display()})")
        if moved:
            modeladmin.message_user(request, f"{moved} case(s) moved to “{to_status}”.")
        if refused:
            modeladmin.message_user(
                request, f"Not allowed from their status: {', '.join(refused)}.", messages.WARNING
            )

    action.__name__ = f"mark_{to_status}"
    return action


@admin.register(Case)
class CaseAdmin(PartnerScopedAdmin):
    list_display = (
        "reference",
        "server_owner",
        "partner",
        "status",
        "language",
        "finding_count",
        "next_step",
        "opened_at",
    )
    list_filter = ("status", "attention", "partner", "campaign", "language")
    list_select_related = ("server_owner", "partner", "campaign")
    search_fields = ("reference", "server_owner__name", "server_owner__contacts__email")
    date_hierarchy = "opened_at"
    autocomplete_fields = ("server_owner",)
    readonly_fields = (
        "reference",
        "status",
        "review_reason",
        "attention",
        "attention_note",
        "status_changed_at",
        "opened_at",
        "findings_table",
        "next_step",
        "remediation_token_hash",
    )
    fields = (
        "reference",
        "campaign",
        "server_owner",
        "partner",
        "language",
        "status",
        "review_reason",
        "attention",
        "attention_note",
        "next_step",
        "findings_table",
        "opened_at",
        "status_changed_at",
    )
    inlines = (CaseEventInline,)
    actions = (
        _transition_action(Case.Status.READY, "Mark ready for a letter"),
        _transition_action(Case.Status.NEEDS_REVIEW, "Send to review"),
        _transition_action(Case.Status.ESCALATED, "Escalate to the partner"),
        _transition_action(Case.Status.WITHDRAWN, "Withdraw (not the owner's / misattributed)"),
    )

    @admin.display(description="Findings")
    def finding_count(self, obj: Case) -> int:
        return len(obj.findings.all())  # prefetched

    @admin.display(description="Findings")
    def findings_table(self, obj: Case) -> str:
        rows = obj.findings.select_related("target").order_by("-probed_at")
        if not rows:
            return "—"
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f.target,
                    f.verdict,
                    f.evidence_level,
                    f.software_family or "?",
                    f.probed_at.strftime("%Y-%m-%d %H:%M"),
                )
                for f in rows
            ),
        )
        return format_html(
            "<table><thead><tr><th>Target</th><th>Verdict</th><th>Evidence</th><th>Software</th>"
            "<th>Probed</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )

    @admin.display(description="Next action", ordering="next_action_at")
    def next_step(self, obj: Case) -> str:
        # The schedule's own plan ("reminder on 28 Dec if still open"), not a promise by status.
        paused = obj.campaign.is_paused or obj.partner.automation_paused
        return obj.next_action_label + (" (paused)" if paused and obj.next_action else "")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Ownership and routing of an existing case change through services, not by editing.
        if obj is not None:
            return (*self.readonly_fields, "campaign", "server_owner", "partner")
        return self.readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("findings")

    change_list_template = "admin/campaign/case/change_list.html"

    def get_urls(self) -> list[Any]:
        from django.urls import path

        export = self.admin_site.admin_view(self.export_view)
        queue = self.admin_site.admin_view(self.work_queue_view)
        return [
            path("export/", export, name="campaign_case_export"),
            path("work-queue/", queue, name="campaign_case_work_queue"),
            *super().get_urls(),
        ]

    def work_queue_view(self, request: HttpRequest) -> Any:
        from campaign.admin_workqueue import work_queue_view

        return work_queue_view(self, request)

    def export_view(self, request: HttpRequest) -> Any:
        """The case list as the user sees it (scope and filters), as CSV, JSON or XLSX."""
        import io

        from django.http import FileResponse, HttpResponseBadRequest, StreamingHttpResponse

        from campaign import exports

        if not self.has_view_permission(request):
            raise PermissionDenied
        fmt = request.GET.get("format", "csv")
        if fmt not in ("csv", "json", "xlsx"):
            return HttpResponseBadRequest("format must be csv, json or xlsx")
        params = request.GET.copy()
        params.pop("format", None)
        request.GET = params  # the changelist reads its filters from here
        rows = exports.case_rows(self.get_changelist_instance(request).get_queryset(request))
        if fmt == "xlsx":
            buffer = io.BytesIO()
            exports.write_xlsx(rows, buffer)
            buffer.seek(0)
            return FileResponse(buffer, as_attachment=True, filename="cases.xlsx")
        lines = exports.csv_lines(rows) if fmt == "csv" else exports.json_lines(rows)
        content_type = "text/csv" if fmt == "csv" else "application/json"
        response = StreamingHttpResponse(lines, content_type=f"{content_type}; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="cases.{fmt}"'
        return response

    def save_model(self, request: HttpRequest, obj: Case, form: Any, change: bool) -> None:
        if not change:
            obj.reference = services.next_case_reference(obj.opened_at.year)
        super().save_model(request, obj, form, change)
        if not change:
            services.case_record_event(
                case=obj,
                kind=CaseEvent.Kind.OPENED,
                actor=request.user,
                note="Opened by hand in the admin.",
            )


@admin.register(CaseEvent)
class CaseEventAdmin(PartnerScopedAdmin):
    partner_field = "case__partner"
    list_display = ("at", "case", "kind", "from_status", "to_status", "actor_label", "note")
    list_filter = ("kind",)
    search_fields = ("case__reference", "note")
    list_select_related = ("case",)
    date_hierarchy = "at"

    # Append-only: the audit trail is read, never edited.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Suppression)
class SuppressionAdmin(PartnerScopedAdmin):
    list_display = ("email", "server_owner", "partner", "reason", "expires_at", "created_at")
    list_filter = ("reason", "partner")
    search_fields = ("email", "server_owner__name", "note")
    list_select_related = ("partner", "server_owner")
    autocomplete_fields = ("server_owner", "partner")
    date_hierarchy = "created_at"

    def save_model(self, request: HttpRequest, obj: Suppression, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(ImportBatch)
class ImportBatchAdmin(LeadOnlyAdmin):
    list_display = (
        "file_name",
        "format",
        "status",
        "rows_kept",
        "rows_rejected",
        "campaign",
        "created_at",
    )
    list_filter = ("format", "status")
    search_fields = ("file_name",)
    date_hierarchy = "created_at"
    # A batch is a record of what a file did: nothing on it is edited; new ones come from the
    # "Import targets" page (the add page redirects there).
    readonly_fields = (
        "file_name",
        "format",
        "status",
        "campaign",
        "uploaded_by",
        "rows_total",
        "rows_kept",
        "rows_rejected",
        "rejected_rows",
        "failure",
        "created_at",
        "finished_at",
    )
    exclude = ("targets", "errors")
    change_list_template = "admin/campaign/importbatch/change_list.html"

    def get_urls(self) -> list[Any]:
        from django.urls import path

        view = self.admin_site.admin_view(self.import_view)
        return [path("import/", view, name="campaign_importbatch_import"), *super().get_urls()]

    def import_view(self, request: HttpRequest) -> Any:
        return intake_views.import_view(self, request)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        from django.shortcuts import redirect

        return redirect("admin:campaign_importbatch_import")

    @admin.display(description="Rejected rows")
    def rejected_rows(self, obj: ImportBatch) -> str:
        return intake_views.error_table(obj)

    actions = ("scan_batch_targets",)

    @admin.action(description="Scan the targets of these imports", permissions=["scan"])
    def scan_batch_targets(self, request: HttpRequest, queryset: QuerySet) -> None:
        for batch in queryset:
            ids = list(batch.targets.values_list("id", flat=True))
            self.start_scan(request, ids, f"import {batch.file_name} (#{batch.pk})")


@admin.register(CaseSequence)
class CaseSequenceAdmin(LeadOnlyAdmin):
    list_display = ("year", "last")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


# Scanning's models are scoped through their owner, which only campaign knows; accounts and
# schedules are the lead's. Registering them here keeps admin scoping in one app.
from campaign import admin_scanning, admin_system  # noqa: E402,F401
