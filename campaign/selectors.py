"""Shared reads, above all the one scoping rule: which partners a user may see."""

from __future__ import annotations

from typing import NamedTuple, cast

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from campaign.models import Membership, Partner

AnyUser = User | AnonymousUser

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
