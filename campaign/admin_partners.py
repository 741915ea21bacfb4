"""Admin for who takes part: partners, their members, and the campaigns all of them share; and
the choice lists (partners, campaigns, languages) other pages filter by."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from django.conf import settings
from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from campaign import selectors, services
from campaign.admin_base import PartnerScopedAdmin, SharedReadOnlyAdmin
from campaign.admin_scale import choices_filter
from campaign.models import Campaign, Membership, Partner

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class CampaignListAnnotations(TypedDict):
    visible_cases: int  # the viewer's own partners' cases only


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
    def case_count(self, obj: WithAnnotations[Campaign, CampaignListAnnotations]) -> int:
        return obj.visible_cases  # annotated: the viewer's own partners' cases only

    def get_queryset(self, request: HttpRequest) -> QuerySet:

        qs = super().get_queryset(request)
        if selectors.sees_all_partners(request.user):
            return qs.annotate(visible_cases=Count("cases"))
        mine = Q(cases__partner__in=selectors.partners_for(request.user))
        return qs.annotate(visible_cases=Count("cases", filter=mine))


def partner_choices(request: HttpRequest) -> list[tuple[Any, Any]]:
    return [(p.pk, str(p)) for p in selectors.partners_for(request.user).order_by("country")]


def campaign_choices(request: HttpRequest) -> list[tuple[Any, Any]]:
    return [(c.pk, str(c)) for c in Campaign.objects.order_by("-starts_on")]


def language_choices(request: HttpRequest) -> list[tuple[Any, Any]]:
    return list(settings.LANGUAGES)


PartnerFilter = choices_filter("partner__id__exact", _("partner"), partner_choices)
