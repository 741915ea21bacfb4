"""Admin for suppressions: addresses (or owners) no letter may go to, a partner's own or the
lead's global ones."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from campaign import selectors
from campaign.admin_base import PartnerScopedAdmin
from campaign.models import Suppression


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
            obj.created_by = cast(User, request.user)  # the admin serves signed-in staff only
        super().save_model(request, obj, form, change)
