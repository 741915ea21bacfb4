"""Admin base classes: every changelist, page, autocomplete and choice list scoped to partners.

Access follows Membership roles, not Django's per-model permissions: viewers read, caseworkers
also change, approvers also approve templates. The lead agency's staff see every partner.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.filters import RelatedOnlyFieldListFilter
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.models import User
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext

from campaign import selectors
from campaign.admin_scale import ScaleChangeList, ScalePaginator
from campaign.models import Membership, Partner
from scanning.models import ScanRun


def log_service_action(request: HttpRequest, objects: Any, message: str) -> None:
    """Actions that go through a service (queue a letter, approve, scan) in the admin's own log,
    so "Recent actions" and each object's history show them as they show edits."""
    from django.contrib.admin.models import CHANGE, LogEntry

    objects = [objects] if isinstance(objects, models.Model) else list(objects)
    user = request.user
    if not objects or not user.is_authenticated:
        return
    LogEntry.objects.log_actions(
        user_id=user.pk, queryset=objects, action_flag=CHANGE, change_message=message
    )


class LeadOnlyFieldsMixin:
    """`lead_only_fields` are read-only for partner staff: facts from scans, imports and RDAP,
    and whatever steers attribution or routing. Only the lead agency's staff edit them."""

    lead_only_fields: tuple[str, ...] = ()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        if self.lead_only_fields and not selectors.sees_all_partners(request.user):
            fields += tuple(f for f in self.lead_only_fields if f not in fields)
        return fields


class ScopedAdmin(LeadOnlyFieldsMixin, admin.ModelAdmin):
    """Base: scoped foreign-key choices and role-based permissions. Subclasses set the scope."""

    change_role: str = Membership.Role.CASEWORKER
    show_full_result_count = False
    paginator = ScalePaginator  # estimated or capped counts: no full count of a million rows
    # Rendering a row costs the admin about a millisecond (nine cells, a link, a checkbox): at
    # Django's default of 100 rows that alone outweighs every query of the page.
    list_per_page = 50

    def scope_queryset(self, request: HttpRequest, qs: QuerySet) -> QuerySet:
        raise NotImplementedError

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ScaleChangeList

    def action_checkbox(self, obj: Any) -> SafeString:
        # Django renders this checkbox through the form template engine, which costs more than
        # the rest of a row put together; the same markup, written directly.
        label = format_html(gettext("Select this object for an action - {}"), str(obj))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            str(obj.pk),
            label,
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return self.scope_queryset(request, super().get_queryset(request))

    def partner_of(self, obj: models.Model) -> Partner | None:
        return None

    # Choices for foreign keys and many-to-many fields come from the related model's own admin,
    # so a partner's form never offers another partner's owners, cases or letters.
    def _scoped_related(self, db_field: models.Field, request: HttpRequest) -> QuerySet | None:
        related_admin = self.admin_site._registry.get(db_field.related_model)  # type: ignore[arg-type]
        if related_admin is None:
            return None
        return related_admin.get_queryset(request)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "queryset" not in kwargs:
            qs = self._scoped_related(db_field, request)
            if qs is not None:
                kwargs["queryset"] = qs
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "queryset" not in kwargs:
            qs = self._scoped_related(db_field, request)
            if qs is not None:
                kwargs["queryset"] = qs
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_list_filter(self, request: HttpRequest) -> Any:
        # Related filters list only what the scoped queryset holds (no other partners' names).
        scoped: list[Any] = []
        for item in super().get_list_filter(request):
            if isinstance(item, str) and self._is_relation(item):
                scoped.append((item, RelatedOnlyFieldListFilter))
            else:
                scoped.append(item)
        return scoped

    def _is_relation(self, path: str) -> bool:
        model = self.model
        field = None
        for part in path.split("__"):
            try:
                field = model._meta.get_field(part)
            except Exception:
                return False
            if not field.is_relation:
                return False
            model = field.related_model
        return field is not None

    def has_module_permission(self, request: HttpRequest) -> bool:
        return selectors.is_member(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.is_member(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        partner = self.partner_of(obj) if obj is not None else None
        return selectors.has_role(request.user, self.change_role, partner)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return selectors.has_role(request.user, self.change_role)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Audit trails and evidence are not deleted through the admin; superusers can clean up.
        return bool(request.user.is_superuser)

    def has_scan_permission(self, request: HttpRequest) -> bool:
        # Scans send packets to other people's servers: the lead agency's caseworkers decide.
        return selectors.sees_all_partners(request.user) and selectors.has_role(
            request.user, Membership.Role.CASEWORKER
        )

    def start_scan(self, request: HttpRequest, targets: QuerySet, label: str) -> ScanRun:
        from scanning import services as scanning_services

        # A queryset, read in chunks by the service: a million selected targets never become
        # a list of a million ids here.
        run = scanning_services.scan_run_start(
            targets=targets, label=label, requested_by=cast(User, request.user)
        )
        url = reverse("admin:scanning_scanrun_change", args=[run.pk])
        log_service_action(request, run, f"Started a scan of {run.targets_total} target(s).")
        self.message_user(
            request,
            format_html(
                'Scan <a href="{}">#{}</a> queued for {} target(s).', url, run.pk, run.targets_total
            ),
        )
        return run


class PartnerScopedAdmin(ScopedAdmin):
    partner_field = "partner"  # a lookup path from the model to its Partner

    def scope_queryset(self, request: HttpRequest, qs: QuerySet) -> QuerySet:
        if selectors.sees_all_partners(request.user):
            return qs
        # The ids themselves, not a subquery: PostgreSQL then estimates a partner's share of a
        # table from its statistics and plans the page's joins for that.
        mine = list(selectors.partners_for(request.user).values_list("id", flat=True))
        return qs.filter(**{f"{self.partner_field}__in": mine})

    def partner_of(self, obj: models.Model) -> Partner | None:
        value: Any = obj
        for part in self.partner_field.split("__"):
            if part == "id" and isinstance(value, Partner):
                break
            value = getattr(value, part, None)
            if value is None:
                return None
        return value if isinstance(value, Partner) else None


class BehindTheCaseMixin:
    """Records partner staff read from the case (or letter) page, not as lists of their own:
    kept out of partner staff's menus, still reachable (and scoped) from the pages that link
    them. The lead agency's staff keep the lists for oversight."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return selectors.sees_all_partners(request.user)


class LeadOnlyAdmin(ScopedAdmin):
    """Models that belong to no partner (scan runs, exclusions, imports): the lead agency's."""

    def scope_queryset(self, request: HttpRequest, qs: QuerySet) -> QuerySet:
        return qs if selectors.sees_all_partners(request.user) else qs.none()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return selectors.sees_all_partners(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.sees_all_partners(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.sees_all_partners(request.user) and selectors.has_role(
            request.user, self.change_role
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_change_permission(request)


class SharedReadOnlyAdmin(ScopedAdmin):
    """Data every partner reads (campaigns); only the lead agency changes it."""

    def scope_queryset(self, request: HttpRequest, qs: QuerySet) -> QuerySet:
        return qs if selectors.is_member(request.user) else qs.none()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.sees_all_partners(request.user) and selectors.has_role(
            request.user, self.change_role
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_change_permission(request)
