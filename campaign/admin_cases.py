"""Admin for the cases: the case list (filters from small tables, search by reference, owner,
e-mail, address, network or AS), the case page's findings summary, transitions, the export and
the audit trail of case events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest, QueryDict
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from campaign import selectors, services
from campaign.admin_base import BehindTheCaseMixin, PartnerScopedAdmin, log_service_action
from campaign.admin_case_display import LANGUAGE_NAMES, CaseForm, status_badge
from campaign.admin_owners import contact_email_q, owner_name_q
from campaign.admin_partners import PartnerFilter, campaign_choices, language_choices
from campaign.admin_scale import (
    SHOWN_ROWS,
    SubqueryCount,
    choices_filter,
    looks_like_email,
    network_q,
    parse_address_term,
    recent_filter,
)
from campaign.models import Case, CaseEvent

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class CaseListAnnotations(TypedDict):
    finding_total: int  # counted for the shown rows only (get_queryset)


def case_address_q(term: str) -> Q | None:
    """Cases with a finding on this address, in this network or AS: EXISTS over the case's
    findings (an index lookup per address), never a join that needs DISTINCT."""
    parsed = parse_address_term(term)
    if parsed is None:
        return None
    kind, value = parsed
    if kind == "ip":
        where = Q(finding__target__ip=value)
    elif kind == "cidr":
        where = network_q("finding__target__ip", value)
    else:
        where = Q(finding__target__asn=value)
    links = Case.findings.through.objects.filter(where, case_id=OuterRef("pk"))
    return Q(Exists(links))


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
                log_service_action(
                    request, case, f"{description} (now {case.get_status_display()})."
                )
            except services.IllegalTransition:
                refused.append(f"{case.reference} ({case.get_status_display()})")
        if moved:
            label = Case.Status(to_status).label
            modeladmin.message_user(request, f"{moved} case(s) moved to “{label}”.")
        if refused:
            modeladmin.message_user(
                request, f"Not allowed from their status: {', '.join(refused)}.", messages.WARNING
            )

    action.__name__ = f"mark_{to_status}"
    return action


class TriageFilter(admin.SimpleListFilter):
    """Owners the lead agency triages (country unknown or without a partner): the dashboard
    links here."""

    title = "lead agency triage"
    parameter_name = "triage"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "In triage")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(
                status=Case.Status.NEEDS_REVIEW, review_reason__icontains="triage"
            )
        return queryset


@admin.register(Case)
class CaseAdmin(PartnerScopedAdmin):
    form = CaseForm
    list_display = (
        "reference_cell",
        "owner_name",
        "partner_code",
        "status_badge",
        "finding_count",
        "next_step",
        "opened_on",
    )
    list_display_links = ("reference_cell",)
    # Columns an index sorts (with the id for ties); the partner is a filter, not a sort.
    sortable_by = ("reference_cell", "owner_name", "status_badge", "next_step", "opened_on")
    # Filter choices from small tables and settings, and recent windows instead of a date
    # hierarchy: nothing here reads every case to draw the sidebar.
    list_filter = (
        "status",
        "attention",
        TriageFilter,
        PartnerFilter,
        choices_filter("campaign__id__exact", _("campaign"), campaign_choices),
        choices_filter("language__exact", _("language"), language_choices),
        recent_filter("opened_at", _("opened")),
    )
    list_select_related = ("server_owner", "partner", "campaign")
    search_fields = ("reference", "server_owner__name", "server_owner__contacts__email")
    search_help_text = "Reference, owner, contact e-mail, IP address, network (CIDR) or AS number."

    @admin.display(description="Reference", ordering="reference")
    def reference_cell(self, obj: Case) -> str:
        return format_html('<span class="case-ref">{}</span>', obj.reference)

    @admin.display(description="Server owner", ordering="server_owner__name")
    def owner_name(self, obj: Case) -> str:
        # A plain cell wraps (a foreign key's is kept on one line), within a narrow box.
        return format_html('<span class="owner">{}</span>', obj.server_owner.name)

    @admin.display(description="Partner", ordering="partner__country")
    def partner_code(self, obj: Case) -> str:
        # Country code and letter language in one narrow cell: the list fits a laptop.
        return format_html(
            '<span class="nowrap"><abbr title="{}">{}</abbr> · <abbr title="{}">{}</abbr></span>',
            obj.partner.country_name,
            obj.partner.country,
            LANGUAGE_NAMES.get(obj.language, obj.language),
            obj.language,
        )

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Case) -> str:
        return status_badge(obj)

    @admin.display(description="Opened", ordering="opened_at")
    def opened_on(self, obj: Case) -> str:
        # ISO: unambiguous for staff of 26 countries (12/07 is July to most of them).
        return timezone.localtime(obj.opened_at).strftime("%Y-%m-%d")

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
    def finding_count(self, obj: WithAnnotations[Case, CaseListAnnotations]) -> int:
        return obj.finding_total

    @admin.display(description="Findings")
    def findings_table(self, obj: Case) -> str:
        # A case may hold ten thousand findings: the latest few, counts by verdict, and a link
        # to the whole list. Transcripts are not loaded here.
        findings = obj.findings.all()
        counts = dict(
            findings.order_by()
            .values_list("verdict")
            .annotate(n=Count("id"))
            .values_list("verdict", "n")
        )
        total = sum(counts.values())
        if not total:
            return "—"
        rows = (
            findings.select_related("target")
            .only(
                "verdict",
                "evidence_level",
                "software_family",
                "probed_at",
                "target__ip",
                "target__port",
                "target__protocol",
            )
            .order_by("-id")[:SHOWN_ROWS]  # the latest recorded: see letters' case workbench
        )
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
        summary = ", ".join(f"{verdict}: {n}" for verdict, n in sorted(counts.items()))
        link = reverse("admin:scanning_finding_changelist") + f"?cases__id__exact={obj.pk}"
        return format_html(
            "<p>{}</p>"
            "<table><thead><tr><th>Target</th><th>Verdict</th><th>Evidence</th><th>Software</th>"
            '<th>Probed</th></tr></thead><tbody>{}</tbody></table><p><a href="{}">{}</a></p>',
            summary,
            body,
            link,
            _("All %(count)s findings of this case") % {"count": total},
        )

    @admin.display(description="Next action", ordering="next_action_at")
    def next_step(self, obj: Case) -> str:
        # The schedule's own plan ("reminder on 28 Dec if still open"), not a promise by status.
        paused = obj.campaign.is_paused or obj.partner.automation_paused
        full = obj.next_action_label + (" (paused)" if paused and obj.next_action else "")
        # The list shows the first step only (it must fit a laptop); the case page has it all.
        short = full.split(";", 1)[0] + (" (paused)" if paused and ";" in full else "")
        return format_html('<span title="{}">{}</span>', full, short)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Ownership and routing of an existing case change through services, not by editing.
        if obj is not None:
            return (*self.readonly_fields, "campaign", "server_owner", "partner")
        return self.readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        qs = super().get_queryset(request)
        url_name = request.resolver_match.url_name if request.resolver_match else None
        if url_name != "campaign_case_changelist":
            return qs  # the case page counts its findings once, in its own panel
        # Counted for the page's rows only (a subquery per shown row), never prefetched whole.
        links = Case.findings.through.objects.filter(case_id=OuterRef("pk")).values("finding_id")
        return qs.annotate(finding_total=SubqueryCount(links))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        address = case_address_q(term)
        if address is not None:
            return queryset.filter(address), False
        if term.upper().startswith("SYS-"):
            return queryset.filter(reference__startswith=term.upper()), False
        if looks_like_email(term):
            return queryset.filter(contact_email_q("server_owner_id")(term)), False
        return queryset.filter(owner_name_q("server_owner__")(term)), False

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
        """The case list as the user sees it (scope and filters): one row per case or per
        finding, as CSV, JSON Lines or XLSX, streamed."""
        from django.http import HttpResponseBadRequest, StreamingHttpResponse

        from campaign import exports

        if not self.has_view_permission(request):
            raise PermissionDenied
        fmt = request.GET.get("format", "csv")
        shape = request.GET.get("shape", "cases")
        if fmt not in exports.FORMATS or shape not in exports.SHAPES:
            return HttpResponseBadRequest(
                "format must be csv, json or xlsx; shape must be cases or findings"
            )
        params = request.GET.copy()
        params.pop("format", None)
        params.pop("shape", None)
        request.GET = QueryDict(params.urlencode())  # the changelist reads its filters here
        cases = self.get_changelist_instance(request).get_queryset(request)
        export = exports.export_for(cases, shape=shape, fmt=fmt)
        response = StreamingHttpResponse(export.stream(), content_type=exports.CONTENT_TYPES[fmt])
        response["Content-Disposition"] = f'attachment; filename="{export.filename()}"'
        # Counted before the first byte: a client compares it with what arrived (docs/exports.md).
        response["X-Export-Rows"] = str(export.count())
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
class CaseEventAdmin(BehindTheCaseMixin, PartnerScopedAdmin):
    partner_field = "case__partner"
    list_display = ("at", "case", "kind", "from_status", "to_status", "actor_label", "note")
    sortable_by = ("at", "case")  # indexed
    list_filter = ("kind", recent_filter("at", _("when")))
    search_fields = ("case__reference", "note")
    list_select_related = ("case",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if term.upper().startswith("SYS-"):
            return queryset.filter(case__reference__startswith=term.upper()), False
        return super().get_search_results(request, queryset, search_term)

    # Append-only: the audit trail is read, never edited.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
