"""Admin for the records of what brought data in: target imports (with their rejected rows) and
attribution runs (with their errors per target). Both are read, never edited."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from campaign import selectors
from campaign.admin_base import LeadOnlyAdmin, PartnerScopedAdmin
from campaign.intake import admin_views as intake_views
from campaign.models import AttributionJob, ImportBatch, Membership


class ProblemsFilter(admin.SimpleListFilter):
    """Yes/no: did the job go wrong anywhere? A record has problems when its `count_field`
    counts some, or when the whole job failed (which may have counted none)."""

    count_field = ""
    failed_status = ""
    yes_label: Any = ""
    no_label: Any = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", self.yes_label), ("no", self.no_label)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        problems = Q(**{f"{self.count_field}__gt": 0}) | Q(status=self.failed_status)
        if self.value() == "yes":
            return queryset.filter(problems)
        if self.value() == "no":
            return queryset.exclude(problems)
        return queryset


def problems_filter(
    *,
    count_field: str,
    failed_status: str,
    title: str,
    parameter_name: str,
    yes_label: str,
    no_label: str,
) -> type[ProblemsFilter]:
    attributes = {
        "count_field": count_field,
        "failed_status": failed_status,
        "title": title,
        "parameter_name": parameter_name,
        "yes_label": yes_label,
        "no_label": no_label,
    }
    name = f"{parameter_name.title().replace('_', '')}ProblemsFilter"
    return type(name, (ProblemsFilter,), attributes)


HasRejectedRowsFilter = problems_filter(
    count_field="rows_rejected",
    failed_status=ImportBatch.Status.FAILED,
    title="rejected rows",
    parameter_name="rejected",
    yes_label="Some rows rejected",
    no_label="No rows rejected",
)
JobHasErrorsFilter = problems_filter(
    count_field="error_count",
    failed_status=AttributionJob.Status.FAILED,
    title="errors",
    parameter_name="errors",
    yes_label="With errors",
    no_label="Without errors",
)


@admin.register(ImportBatch)
class ImportBatchAdmin(LeadOnlyAdmin):
    list_display = (
        "file_name",
        "format",
        "status",
        "rows_kept",
        "rows_rejected",
        "first_problem",
        "campaign",
        "uploaded_by",
        "created_at",
        "finished_at",
    )
    list_select_related = ("campaign", "uploaded_by")

    @admin.display(description="First problem")
    def first_problem(self, obj: ImportBatch) -> str:
        if obj.status == ImportBatch.Status.FAILED and obj.failure:
            return f"File rejected: {obj.failure}"[:160]
        if obj.errors:
            first = obj.errors[0]
            more = f" (+{obj.rows_rejected - 1} more)" if obj.rows_rejected > 1 else ""
            return f"line {first.get('line') or '?'}: {first.get('reason', '')}{more}"[:160]
        return "—"

    list_filter = ("format", "status", HasRejectedRowsFilter)
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
            self.start_scan(request, batch.targets.all(), f"import {batch.file_name} (#{batch.pk})")


@admin.register(AttributionJob)
class AttributionJobAdmin(PartnerScopedAdmin):
    """A record of each "Run attribution": the user lands here after starting one."""

    partner_field = "started_by__memberships__partner"
    list_display = (
        "__str__",
        "status",
        "started_by",
        "created_at",
        "finished_at",
        "attributed",
        "error_count",
        "first_error",
    )
    list_filter = ("status", JobHasErrorsFilter)
    list_select_related = ("started_by",)
    date_hierarchy = "created_at"
    fields = (
        "status",
        "started_by",
        "created_at",
        "started_at",
        "finished_at",
        "targets_total",
        "summary",
        "error_table",
        "failure",
    )
    readonly_fields = fields
    change_form_template = "admin/campaign/attributionjob/change_form.html"

    def scope_queryset(self, request: HttpRequest, qs: QuerySet) -> QuerySet:
        return super().scope_queryset(request, qs).distinct()

    def has_module_permission(self, request: HttpRequest) -> bool:
        # Only those who can start one (caseworkers, the lead) need the list in their menu.
        return selectors.has_role(request.user, Membership.Role.CASEWORKER)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # started from Targets → "Run attribution"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a record of what ran

    @admin.display(description="Attributed")
    def attributed(self, obj: AttributionJob) -> str:
        if obj.status in (AttributionJob.Status.QUEUED, AttributionJob.Status.RUNNING):
            return "…"
        return f"{obj.counts.get('attributed', 0)} / {obj.targets_total}"

    @admin.display(description="First error")
    def first_error(self, obj: AttributionJob) -> str:
        if obj.failure:
            return obj.failure[:160]
        if obj.errors:
            first = obj.errors[0]
            return f"{first.get('target', '')}: {first.get('error', '')}"[:160]
        return "—"

    @admin.display(description="Result")
    def summary(self, obj: AttributionJob) -> str:
        if obj.status == AttributionJob.Status.QUEUED:
            return "Waiting for a worker."
        if obj.status == AttributionJob.Status.RUNNING:
            return "Running: this page reloads until it ends."
        c = obj.counts or {}
        return (
            f"{c.get('attributed', 0)} of {obj.targets_total} target(s) attributed; "
            f"{c.get('errors', 0)} error(s) ({c.get('rate_limited', 0)} rate-limited, "
            f"{c.get('timeouts', 0)} timed out); {c.get('cases', 0)} case(s) touched."
        )

    @admin.display(description="Errors per target")
    def error_table(self, obj: AttributionJob) -> str:
        if not obj.errors:
            return "No errors."
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td></tr>",
            ((e.get("target", ""), e.get("error", "")) for e in obj.errors),
        )
        return format_html(
            '<table class="job-errors"><thead><tr><th>Target</th><th>Error</th></tr></thead>'
            "<tbody>{}</tbody></table>",
            body,
        )
