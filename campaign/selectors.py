"""Shared reads, above all the one scoping rule: which partners a user may see."""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple, TypeVar, cast

from django.contrib.auth.models import AnonymousUser, User
from django.db import connection
from django.db.models import Model, Q, QuerySet

from campaign.models import Membership, Partner

AnyUser = User | AnonymousUser
_M = TypeVar("_M", bound=Model)

ROLE_RANK = {Membership.Role.VIEWER: 0, Membership.Role.CASEWORKER: 1, Membership.Role.APPROVER: 2}


class Role(NamedTuple):
    partner_id: int
    partner_is_lead: bool
    rank: int


def _roles(user: AnyUser) -> list[Role]:
    # Cached on the user object, which Django builds anew for every request: one query a request.
    cached = getattr(user, "_sys_roles", None)
    if cached is None:
        user_id = cast(int, user.pk)  # an anonymous user (pk None) has no memberships
        cached = [
            Role(partner_id, is_lead, ROLE_RANK[Membership.Role(role)])
            for partner_id, is_lead, role in Membership.objects.filter(user_id=user_id).values_list(
                "partner_id", "partner__is_lead", "role"
            )
        ]
        user._sys_roles = cached  # type: ignore[union-attr]
    return cached


def _active(user: AnyUser) -> bool:
    return bool(user.is_authenticated and user.is_active)


def sees_all_partners(user: AnyUser) -> bool:
    """Superusers and the lead agency's staff see every partner's data."""
    if not _active(user):
        return False
    return bool(user.is_superuser) or any(r.partner_is_lead for r in _roles(user))


def is_member(user: AnyUser) -> bool:
    return _active(user) and (bool(user.is_superuser) or bool(_roles(user)))


def partners_for(user: AnyUser) -> QuerySet[Partner]:
    if sees_all_partners(user):
        return Partner.objects.all()
    if not _active(user):
        return Partner.objects.none()
    return Partner.objects.filter(id__in=[r.partner_id for r in _roles(user)])


def has_role(user: AnyUser, role: str, partner: Partner | None = None) -> bool:
    """Whether the user holds `role` or a higher one, in `partner` or (when None) in any partner.

    Superusers hold every role everywhere. The lead's staff act on every partner's cases, but
    approve only the lead's own templates.
    """
    if not _active(user):
        return False
    if user.is_superuser:
        return True
    wanted = ROLE_RANK[Membership.Role(role)]
    for r in _roles(user):
        if r.rank < wanted:
            continue
        if partner is None or r.partner_id == partner.id:
            return True
        if r.partner_is_lead and role != Membership.Role.APPROVER:
            return True
    return False


def visible(qs: QuerySet[_M], user: AnyUser, *, partner_field: str = "partner") -> QuerySet[_M]:
    """`qs` narrowed to what `user` may see: the admin's scoping rule, for any other reader."""
    if sees_all_partners(user):
        return qs
    return qs.filter(**{f"{partner_field}__in": partners_for(user)})


def lead_partner() -> Partner | None:
    return Partner.objects.filter(is_lead=True).first()


AS_NUMBER = re.compile(r"^\s*AS\s?(\d{1,10})\s*$", re.IGNORECASE)


def network_query(term: str) -> Q | None:
    """A case filter for an IP address, a CIDR network or an AS number (AS64500), else None."""
    term = term.strip()
    match = AS_NUMBER.match(term)
    if match:
        asn = int(match[1])
        return Q(findings__target__asn=asn) | Q(server_owner__attributions__asn=asn)
    try:
        if "/" not in term:
            return Q(findings__target__ip=str(ipaddress.ip_address(term)))
        network = ipaddress.ip_network(term, strict=False)
    except ValueError:
        return None
    from scanning.models import Target

    if connection.vendor == "postgresql":  # inet containment, served by the address index
        inside = Target.objects.extra(where=["ip <<= %s::inet"], params=[str(network)])
    else:  # SQLite keeps addresses as text: compare them as addresses
        inside = Target.objects.filter(
            id__in=[
                pk
                for pk, ip in Target.objects.values_list("id", "ip").iterator()
                if ipaddress.ip_address(ip) in network
            ]
        )
    return Q(findings__target__in=inside.values("id"))
