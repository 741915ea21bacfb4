from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from campaign import selectors, services
from campaign.admin_base import (
    BehindTheCaseMixin,
    LeadOnlyAdmin,
    LeadOnlyFieldsMixin,
    PartnerScopedAdmin,
    SharedReadOnlyAdmin,
    log_service_action,
)
from campaign.admin_scale import (
    AddressSearchMixin,
    anything,
    choices_filter,
    looks_like_email,
    network_q,
    parse_address_term,
    recent_filter,
    values_filter,
)
from campaign.intake import admin_views as intake_views
from campaign.models import (
    Attribution,
    AttributionJob,
    Campaign,
    Case,
    CaseEvent,
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
    REPLAN_FIELDS = (
        "reprobe_after_days",
        "reminder_after_days",
        "final_deadline_days",
        "unresponsive_after_days",
        "ends_on",
        "is_active",
    )

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and any(f in form.changed_data for f in self.REPLAN_FIELDS):
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
            targets = Target.objects.filter(
                Q(findings__cases__campaign=campaign) | Q(import_batches__campaign=campaign)
            )
            campaign.scan_runs.add(self.start_scan(request, targets, f"campaign {campaign.slug}"))

    # Dates decide when links expire and letters stop; only the lead's approvers move them.
    SCHEDULE_FIELDS = ("starts_on", "ends_on", "is_active")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = tuple(super().get_readonly_fields(request, obj))
        user = request.user
        if user.is_superuser or (
            selectors.sees_all_partners(user)
            and selectors.has_role(user, Membership.Role.APPROVER, selectors.lead_partner())
        ):
            return readonly
        return (*readonly, *self.SCHEDULE_FIELDS)

    @admin.display(description="Cases")
    def case_count(self, obj: Campaign) -> int:
        return obj.visible_cases  # annotated: the viewer's own partners' cases only

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        from django.db.models import Count

        qs = super().get_queryset(request)
        if selectors.sees_all_partners(request.user):
            return qs.annotate(visible_cases=Count("cases"))
        mine = Q(cases__partner__in=selectors.partners_for(request.user))
        return qs.annotate(visible_cases=Count("cases", filter=mine))


class ContactInline(LeadOnlyFieldsMixin, admin.TabularInline):
    model = Contact
    extra = 0
    fields = ("position", "kind", "email", "source", "bounced_at")
    lead_only_fields = ("source",)  # attribution replaces "rdap" rows and keeps the others
    ordering = ("position",)

    # Roles, not Django's model permissions (which no partner account holds): members read the
    # chain, the owner's partner's caseworkers edit it; deleting stays with superusers.
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.is_member(request.user)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        partner = obj.partner if isinstance(obj, ServerOwner) else None
        return selectors.has_role(request.user, Membership.Role.CASEWORKER, partner)

    has_change_permission = has_add_permission

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)


def partner_choices(request: HttpRequest) -> list[tuple[Any, Any]]:
    return [(p.pk, str(p)) for p in selectors.partners_for(request.user).order_by("country")]


def campaign_choices(request: HttpRequest) -> list[tuple[Any, Any]]:
    return [(c.pk, str(c)) for c in Campaign.objects.order_by("-starts_on")]


def language_choices(request: HttpRequest) -> list[tuple[Any, Any]]:
    return list(settings.LANGUAGES)


PartnerFilter = choices_filter("partner__id__exact", _("partner"), partner_choices)
OwnerPartnerFilter = choices_filter(
    "server_owner__partner__id__exact", _("partner"), partner_choices
)


def owner_name_q(prefix: str) -> Any:
    # icontains is UPPER(name) LIKE '%…%', which the trigram index on UPPER(name) serves.
    return lambda term: Q(**{f"{prefix}name__icontains": term})


def contact_email_q(owner_ref: str) -> Any:
    def q(term: str) -> Q:
        # EXISTS, not a join: an owner with several matching contacts is still one row.
        return Q(
            Exists(Contact.objects.filter(server_owner_id=OuterRef(owner_ref), email__iexact=term))
        )

    return q


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


SHOWN_ROWS = 50  # rows of a long related list shown on a change page; the rest are linked


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
    list_filter = (PartnerFilter, values_filter(ServerOwner, "country", _("country")))
    search_fields = ("name", "rdap_handle", "contacts__email")
    ordering = ("name",)
    list_select_related = ("partner",)
    inlines = (ContactInline, CaseInline)
    readonly_fields = ("servers", "created_at", "updated_at")
    # What attribution matches on and routes by. A partner that could set another's RDAP handle,
    # or a country, would pull that partner's targets, evidence and contacts into its own case.
    lead_only_fields = ("rdap_handle", "country", "corrections")
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
            log_service_action(request, owners[0], f"Merged in: {merged}.")
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

    @admin.display(description=_("Servers"))
    def servers(self, obj: ServerOwner) -> str:
        # An owner may hold ten thousand servers: the first few, and a link to all of them.
        attributions = obj.attributions.select_related("target").order_by("target_id")
        total = attributions.count()
        if not total:
            return "—"
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:campaign_attribution_change", args=[a.pk]),
                    a.target,
                    a.reverse_dns or "—",
                    a.network_cidr or "—",
                    a.registrant_country or "—",
                )
                for a in attributions[:SHOWN_ROWS]
            ),
        )
        link = (
            reverse("admin:campaign_attribution_changelist") + f"?server_owner__id__exact={obj.pk}"
        )
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead>"
            '<tbody>{}</tbody></table><p><a href="{}">{}</a></p>',
            _("Server"),
            _("Reverse DNS"),
            _("Network"),
            _("Country"),
            rows,
            link,
            _("All %(count)s servers of this owner") % {"count": total},
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("contacts")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        q = Q(name__icontains=term) | Q(rdap_handle=term)
        if looks_like_email(term):
            q |= contact_email_q("pk")(term)
        return queryset.filter(q), False


@admin.register(Contact)
class ContactAdmin(PartnerScopedAdmin):
    partner_field = "server_owner__partner"
    list_display = ("email", "kind", "server_owner", "position", "source", "bounced_at")
    list_filter = ("kind", "source")
    search_fields = ("email", "server_owner__name")
    list_select_related = ("server_owner",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if looks_like_email(term):
            return queryset.filter(email__iexact=term), False
        return queryset.filter(server_owner__name__icontains=term), False

    autocomplete_fields = ("server_owner",)
    lead_only_fields = ("source",)


@admin.register(Attribution)
class AttributionAdmin(AddressSearchMixin, PartnerScopedAdmin):
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
    list_filter = (values_filter(Attribution, "registrant_country", _("registrant country")),)
    search_fields = ("target__ip", "reverse_dns", "network_name", "abuse_email")
    address_field = "target__ip"
    asn_field = "target__asn"
    text_search = (("reverse_dns", anything), ("abuse_email__iexact", looks_like_email))
    list_select_related = ("target", "server_owner")
    autocomplete_fields = ("server_owner",)
    raw_id_fields = ("target",)

    # What RDAP and reverse DNS said, and which owner that led to: read-only for partners, who
    # ask for a correction; the lead agency fixes attribution (owner corrections, merges).
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.sees_all_partners(request.user) and super().has_change_permission(
            request, obj
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return selectors.sees_all_partners(request.user) and super().has_add_permission(request)


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


LANGUAGE_NAMES = dict(settings.LANGUAGES)


class CaseForm(forms.ModelForm):
    """The letter language is one of the partner's letter languages, picked from a list."""

    language = forms.ChoiceField(choices=settings.LANGUAGES)

    class Meta:
        model = Case
        fields = "__all__"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        partner = self.instance.partner if self.instance.partner_id else None
        if partner is not None and "language" in self.fields:
            codes = list(partner.letter_languages)
            if self.instance.language and self.instance.language not in codes:
                codes.append(self.instance.language)  # keep what the case has, to see it
            self.fields["language"].choices = [
                (code, f"{LANGUAGE_NAMES.get(code, code)} ({code})") for code in codes
            ]
            self.fields[
                "language"
            ].help_text = (
                f"Letters in the languages {partner.country_name} writes in, in its order."
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        partner = data.get("partner") or (
            self.instance.partner if self.instance.partner_id else None
        )
        language = data.get("language")
        if partner is not None and language and language not in partner.letter_languages:
            self.add_error(
                "language",
                f"{partner.country_name} writes letters in "
                f"{', '.join(partner.letter_languages) or 'no shipped language'}, "
                f"not “{language}”.",
            )
        return data


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
    def finding_count(self, obj: Case) -> int:
        return obj.finding_total  # type: ignore[attr-defined]

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
            .order_by("-probed_at", "-id")[:SHOWN_ROWS]
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
        # Counted for the page's rows only (a subquery per shown row), never prefetched whole.
        count = (
            Case.findings.through.objects.filter(case_id=OuterRef("pk"))
            .order_by()
            .values("case_id")
            .annotate(n=Count("finding_id"))
            .values("n")
        )
        return super().get_queryset(request).annotate(finding_total=Coalesce(Subquery(count), 0))

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
        request.GET = params  # the changelist reads its filters from here
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


STATUS_COLOURS = {
    Case.Status.NEW: ("#e8eef7", "#1f3d6b"),
    Case.Status.NEEDS_REVIEW: ("#fff1d6", "#6b4500"),
    Case.Status.READY: ("#dff3e4", "#155724"),
    Case.Status.NOTIFIED: ("#e3e9ff", "#23348f"),
    Case.Status.REMINDED: ("#ece3ff", "#4a2a8f"),
    Case.Status.ESCALATED: ("#ffe1dc", "#8a1f11"),
    Case.Status.FIXED: ("#d4f0d9", "#0f5132"),
}


def status_badge(case: Case) -> str:
    background, colour = STATUS_COLOURS.get(case.status, ("#eee", "#333"))
    return format_html(
        '<span class="status-badge status-{}" style="background:{};color:{}">{}</span>',
        case.status,
        background,
        colour,
        case.get_status_display(),
    )


NEXT_ACTIONS = {
    Case.Status.NEW: "Attribution pending: run attribution for its targets.",
    Case.Status.NEEDS_REVIEW: "Review the evidence and contacts, then mark ready or withdraw.",
    Case.Status.READY: "Queue the advisory letter.",
    Case.Status.NOTIFIED: "Wait for the owner; the schedule re-probes, and reminds only a server "
    "it has just seen open.",
    Case.Status.REMINDED: "Wait; the schedule hands the case to the partner at the deadline.",
    Case.Status.ESCALATED: "The partner follows up by hand.",
    Case.Status.FIXED: "Nothing: verified fixed.",
    Case.Status.UNRESPONSIVE: "Closed at the final deadline.",
    Case.Status.WITHDRAWN: "Nothing: withdrawn.",
    Case.Status.SUPPRESSED: "Nothing: the contact asked not to be written to.",
}


@admin.register(CaseEvent)
class CaseEventAdmin(BehindTheCaseMixin, PartnerScopedAdmin):
    partner_field = "case__partner"
    list_display = ("at", "case", "kind", "from_status", "to_status", "actor_label", "note")
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


@admin.register(Suppression)
class SuppressionAdmin(PartnerScopedAdmin):
    """A partner's suppressions stop only its own letters; the lead's global ones (no partner)
    stop everyone's. A partner sees both kinds that touch its cases, and changes only its own."""

    list_display = ("email", "server_owner", "scope", "reason", "expires_at", "created_at")
    list_filter = ("reason", "partner")
    search_fields = ("email", "server_owner__name", "note")
    list_select_related = ("partner", "server_owner")
    autocomplete_fields = ("server_owner", "partner")
    readonly_fields = ("created_by", "created_at")
    date_hierarchy = "created_at"

    def scope_queryset(self, request: HttpRequest, qs: QuerySet) -> QuerySet:
        if selectors.sees_all_partners(request.user):
            return qs
        mine = selectors.partners_for(request.user)
        # A global suppression naming an owner concerns that owner's partner only; a global
        # address concerns everyone (any partner may meet it in a contact chain).
        return qs.filter(
            Q(partner__in=mine)
            | Q(partner__isnull=True, server_owner__isnull=True)
            | Q(partner__isnull=True, server_owner__partner__in=mine)
        )

    @admin.display(description="Stops letters of", ordering="partner__country")
    def scope(self, obj: Suppression) -> str:
        return obj.partner.country if obj.partner else "every partner (global)"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.is_global and not selectors.sees_all_partners(request.user):
            return False  # the lead's global suppressions are read-only for partners
        return super().has_change_permission(request, obj)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change=change, **kwargs)
        if "partner" in form.base_fields and not selectors.sees_all_partners(request.user):
            form.base_fields["partner"].required = True  # only the lead adds global ones
        return form

    def save_model(self, request: HttpRequest, obj: Suppression, form: Any, change: bool) -> None:
        if obj.partner_id is None and not selectors.sees_all_partners(request.user):
            raise PermissionDenied  # the form requires a partner; never trust that alone
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


class HasRejectedRowsFilter(admin.SimpleListFilter):
    title = "rejected rows"
    parameter_name = "rejected"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return (("yes", "Some rows rejected"), ("no", "No rows rejected"))

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(Q(rows_rejected__gt=0) | Q(status=ImportBatch.Status.FAILED))
        if self.value() == "no":
            return queryset.filter(rows_rejected=0).exclude(status=ImportBatch.Status.FAILED)
        return queryset


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


class JobHasErrorsFilter(admin.SimpleListFilter):
    title = "errors"
    parameter_name = "errors"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return (("yes", "With errors"), ("no", "Without errors"))

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(Q(error_count__gt=0) | Q(status=AttributionJob.Status.FAILED))
        if self.value() == "no":
            return queryset.filter(error_count=0).exclude(status=AttributionJob.Status.FAILED)
        return queryset


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


# Case sequences are bookkeeping for references (SYS-<year>-<n>): no one works with them, so
# they have no admin page.


# Scanning's models are scoped through their owner, which only campaign knows; accounts and
# schedules are the lead's. Registering them here keeps admin scoping in one app.
from campaign import admin_scanning, admin_system  # noqa: E402,F401
