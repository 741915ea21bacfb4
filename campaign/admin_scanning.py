"""Admin for scanning's models. It lives here because scoping a finding to a partner goes through
its target's owner, which scanning does not know about (campaign may import scanning, not back)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from campaign import selectors
from campaign.admin_base import LeadOnlyAdmin, PartnerScopedAdmin, log_service_action
from campaign.admin_scale import AddressSearchMixin, recent_filter, values_filter
from scanning.models import CanaryHit, Exclusion, Finding, ScanBatch, ScanRun, Target
from scanning.services import scan_run_requeue_stale, scan_runs_needing_attention

DIRECTION_LABELS = {">": "scanner", "<": "server", "!": "note"}


def transcript_dialogue(lines: list[dict[str, Any]]) -> str:
    """A finding's transcript as a dialogue: who said what, when."""
    if not lines:
        return "—"
    rows = format_html_join(
        "",
        '<tr class="transcript-{}"><td style="text-align:right;color:#666">{} ms</td>'
        '<td><strong>{}</strong></td><td><code style="white-space:pre-wrap">{}</code></td></tr>',
        (
            (
                DIRECTION_LABELS.get(line.get("direction", "!"), "note"),
                line.get("t_ms", 0),
                DIRECTION_LABELS.get(line.get("direction", "!"), "note"),
                line.get("text", ""),
            )
            for line in lines
        ),
    )
    return format_html('<table class="transcript">{}</table>', rows)


class FindingInline(admin.TabularInline):
    model = Finding
    extra = 0
    fields = ("probed_at", "protocol", "verdict", "final", "evidence_level", "software_family")
    readonly_fields = fields
    can_delete = False
    show_change_link = True
    ordering = ("-probed_at",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Target)
class TargetAdmin(AddressSearchMixin, PartnerScopedAdmin):
    partner_field = "attribution__server_owner__partner"
    list_display = ("__str__", "protocol", "hostname", "geo_country", "asn", "last_seen")
    list_filter = (
        "protocol",
        values_filter(Target, "geo_country", _("server country")),
        recent_filter("last_seen", _("last seen")),
    )
    search_fields = ("ip", "hostname")
    text_search = (("hostname", lambda term: "." in term),)
    # Only columns with an index sort a million rows by LIMIT, not by reading them all.
    sortable_by = ("__str__", "last_seen", "asn", "protocol")
    readonly_fields = ("created_at", "sources", "source_data")
    # Facts from scans and imports. Were the address editable, a re-check would probe wherever
    # a caseworker pointed it.
    lead_only_fields = (
        "ip",
        "port",
        "protocol",
        "hostname",
        "asn",
        "geo_country",
        "first_seen",
        "last_seen",
    )
    inlines = (FindingInline,)
    actions = ("run_attribution", "scan_targets")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Targets come from imports and scans, the lead's. A partner's add form would also
        # answer "already exists" for another partner's target, confirming it is on record.
        return selectors.sees_all_partners(request.user) and super().has_add_permission(request)

    @admin.action(description="Scan selected targets", permissions=["scan"])
    def scan_targets(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.start_scan(request, queryset, f"targets selected by {request.user}")

    @admin.action(description="Run attribution", permissions=["change"])
    def run_attribution(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        from campaign.attribution.services import attribution_job_start

        ids = list(queryset.values_list("id", flat=True))
        job = attribution_job_start(target_ids=ids, actor=request.user)
        log_service_action(request, job, f"Started attribution of {len(ids)} target(s).")
        self.message_user(request, f"Attribution queued for {len(ids)} target(s).")
        # The user lands on the job's record: counts and errors per target as the worker ends.
        return redirect(reverse("admin:campaign_attributionjob_change", args=[job.pk]))


@admin.register(Finding)
class FindingAdmin(AddressSearchMixin, PartnerScopedAdmin):
    partner_field = "target__attribution__server_owner__partner"
    list_display = (
        "target",
        "protocol",
        "verdict",
        "final",
        "evidence_level",
        "software_family",
        "probed_at",
    )
    list_filter = (
        "verdict",
        "final",  # provisional: waiting for our canary's word, or its deadline
        "evidence_level",
        "protocol",
        values_filter(Finding, "software_family", _("software")),
        "transport_status",
        recent_filter("probed_at", _("probed")),
    )
    list_select_related = ("target",)
    search_fields = ("target__ip", "token", "reverse_dns")
    address_field = "target__ip"
    asn_field = "target__asn"
    text_search = (("token", lambda term: len(term) >= 16),)
    sortable_by = ("target", "verdict", "software_family", "probed_at")

    def lookup_allowed(self, lookup: str, value: str, request: Any = None) -> bool:
        # The case page links to "every finding of this case".
        return lookup == "cases__id__exact" or super().lookup_allowed(lookup, value, request)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The list shows none of the transcript or details (kilobytes a row).
        qs = super().get_queryset(request)
        url_name = request.resolver_match.url_name if request.resolver_match else None
        if url_name and url_name.endswith("changelist"):
            return qs.defer("transcript", "details", "reasons")
        return qs

    raw_id_fields = ("target", "scan_run")
    readonly_fields = ("dialogue", "details_pretty", "reasons")
    exclude = ("transcript", "details")

    @admin.display(description="Transcript")
    def dialogue(self, obj: Finding) -> str:
        return transcript_dialogue(obj.transcript)

    @admin.display(description="Details")
    def details_pretty(self, obj: Finding) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.details, indent=2, ensure_ascii=False))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # evidence is never edited

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class ScanRunAttentionFilter(admin.SimpleListFilter):
    title = _("needs attention")
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Stale batches (worker lost)"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(pk__in=scan_runs_needing_attention().values("pk"))
        return queryset


@admin.register(ScanRun)
class ScanRunAdmin(LeadOnlyAdmin):
    # A run of a million targets has 20,000 batches: the page counts them by status and lists
    # only the ones that went wrong (the latest BATCHES_SHOWN), never every batch.
    BATCHES_SHOWN = 20
    list_display = (
        "__str__",
        "status",
        "requested_by",
        "progress",
        "verdict_summary",
        "refused_count",
        "created_at",
        "age",
        "finished_at",
    )
    list_filter = (ScanRunAttentionFilter, "status")
    list_select_related = ("requested_by",)
    actions = ("requeue_stale_batches",)
    search_fields = ("label",)
    date_hierarchy = "created_at"
    readonly_fields = (
        "status",
        "requested_by",
        "progress",
        "batch_summary",
        "verdict_summary",
        "targets_total",
        "targets_done",
        "refusal_table",
        "created_at",
        "started_at",
        "finished_at",
        "note",
    )
    exclude = ("targets", "verdict_counts", "refusals")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A run that has ended is a record; only a pending or running one can still be relabelled.
        if obj is not None and obj.status not in (ScanRun.Status.PENDING, ScanRun.Status.RUNNING):
            return False
        return super().has_change_permission(request, obj)

    @admin.display(description=_("Batches"))
    def batch_summary(self, obj: ScanRun) -> str:
        counts = dict(
            obj.batches.order_by()
            .values_list("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        if not counts:
            return "—"
        labels = dict(ScanBatch.Status.choices)
        summary = ", ".join(
            f"{labels.get(status, status)}: {counts[status]}"
            for status in ScanBatch.Status.values
            if status in counts
        )
        broken = (
            obj.batches.filter(status__in=(ScanBatch.Status.FAILED, ScanBatch.Status.VOID))
            .order_by("-id")
            .values_list("id", "status", "claims", "error")[: self.BATCHES_SHOWN]
        )
        rows = format_html_join(
            "",
            "<tr><td>#{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (pk, labels.get(status, status), claims, error)
                for pk, status, claims, error in broken
            ),
        )
        if not broken:
            return summary
        return format_html(
            "<p>{}</p><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            summary,
            _("Batch"),
            _("Status"),
            _("Claims"),
            _("Error"),
            rows,
        )

    @admin.display(description="Refused")
    def refused_count(self, obj: ScanRun) -> int:
        return int((obj.verdict_counts or {}).get("refused", 0))

    @admin.display(description="Refused targets (never probed)")
    def refusal_table(self, obj: ScanRun) -> str:
        if not obj.refusals:
            refused = self.refused_count(obj)
            return f"{refused} target(s) refused." if refused else "None."
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td></tr>",
            ((r.get("target", ""), r.get("reason", "")) for r in obj.refusals),
        )
        return format_html(
            '<table class="scan-refusals"><thead><tr><th>Target</th><th>Why it was not probed'
            "</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )

    @admin.display(description="Progress")
    def progress(self, obj: ScanRun) -> str:
        return format_html(
            '<progress max="100" value="{}"></progress> {} / {}',
            obj.progress_percent,
            obj.targets_done,
            obj.targets_total,
        )

    @admin.display(description="Verdicts")
    def verdict_summary(self, obj: ScanRun) -> str:
        counts = obj.verdict_counts or {}
        return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "—"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(finding_count=Count("findings"))

    @admin.display(description=_("Running for"))
    def age(self, obj: ScanRun) -> str:
        if obj.finished_at or not obj.started_at:
            return "—"
        return timesince(obj.started_at)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        count = scan_runs_needing_attention().count()
        if count and request.method == "GET" and "attention" not in request.GET:
            messages.warning(
                request,
                format_html(
                    '{} <a href="?attention=yes">{}</a>',
                    ngettext(
                        "%(count)d scan run has stale batches.",
                        "%(count)d scan runs have stale batches.",
                        count,
                    )
                    % {"count": count},
                    gettext("Show them"),
                ),
            )
        return super().changelist_view(request, extra_context)

    @admin.action(description=_("Re-queue stale batches"))
    def requeue_stale_batches(self, request: HttpRequest, queryset: QuerySet) -> None:
        runs = list(queryset)
        count = sum(scan_run_requeue_stale(run=run) for run in runs)
        log_service_action(request, runs, "Re-queued stale batches.")
        self.message_user(
            request, gettext("%(count)d batch(es) handed to workers again.") % {"count": count}
        )


@admin.register(Exclusion)
class ExclusionAdmin(LeadOnlyAdmin):
    list_display = (
        "network",
        "status",
        "requester_email",
        "created_at",
        "decided_at",
        "expires_at",
    )
    list_filter = ("status",)
    search_fields = ("network", "requester_email", "reason")
    date_hierarchy = "created_at"
    readonly_fields = ("decided_by", "decided_at", "created_at")
    actions = ("approve", "reject")

    @admin.action(description="Approve: stop scanning these networks", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        log_service_action(request, queryset, "Approved: no more scans of this network.")
        n = queryset.update(
            status=Exclusion.Status.APPROVED, decided_by=request.user, decided_at=timezone.now()
        )
        self.message_user(request, f"{n} exclusion(s) approved.")

    @admin.action(description="Reject the request", permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet) -> None:
        log_service_action(request, queryset, "Rejected the exclusion request.")
        n = queryset.update(
            status=Exclusion.Status.REJECTED, decided_by=request.user, decided_at=timezone.now()
        )
        self.message_user(request, f"{n} exclusion request(s) rejected.")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.sees_all_partners(request.user) and super().has_change_permission(
            request, obj
        )


@admin.register(CanaryHit)
class CanaryHitAdmin(LeadOnlyAdmin):
    list_display = ("at", "kind", "token", "peer_ip", "detail")
    list_filter = ("kind",)
    search_fields = ("token", "peer_ip")
    date_hierarchy = "at"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
