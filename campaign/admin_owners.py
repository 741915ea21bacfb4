"""Admin for whom letters go to: server owners (with their contact chain and a bounded list of
their servers), contacts, and the attributions that tie each server to its owner."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from campaign import selectors
from campaign.admin_base import LeadOnlyFieldsMixin, PartnerScopedAdmin, log_service_action
from campaign.admin_partners import PartnerFilter
from campaign.admin_scale import (
    SHOWN_ROWS,
    AddressSearchMixin,
    looks_like_email,
    values_filter,
)
from campaign.models import Attribution, Case, Contact, Membership, ServerOwner


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
    sortable_by = ("name", "country")  # indexed; the partner is a filter
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
        if looks_like_email(term):
            # An address is looked up in the contacts' index alone: OR-ed with the name's
            # substring search, PostgreSQL would read every owner.
            return queryset.filter(contact_email_q("pk")(term)), False
        return queryset.filter(Q(name__icontains=term) | Q(rdap_handle=term)), False


@admin.register(Contact)
class ContactAdmin(PartnerScopedAdmin):
    partner_field = "server_owner__partner"
    list_display = ("email", "kind", "server_owner", "position", "source", "bounced_at")
    list_filter = ("kind", "source")
    search_fields = ("email", "server_owner__name")
    list_select_related = ("server_owner",)
    sortable_by = ("server_owner",)  # the contact chain's own index (owner, position)

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
    # An address goes to its own index only (OR-ed with another column, every row is read).
    text_search = (
        ("reverse_dns", lambda term: not looks_like_email(term)),
        ("abuse_email__iexact", looks_like_email),
    )
    list_select_related = ("target", "server_owner")
    sortable_by = ("target", "server_owner")  # indexed: a million rows are never sorted whole
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
