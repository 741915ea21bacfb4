"""The work queue: cases that need a person, why, and the one-click actions that settle them.

A case is in the queue while its `attention` is set (services set it where things happen: an
owner's reply, every contact bounced, an escalation, a failed letter, a review). Apps above
campaign add actions of their own with `register` (letters: retry a failed letter, write to
the address the owner gave), so campaign never imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from campaign import selectors, services
from campaign.models import Attention, Case, CaseEvent, Contact
from campaign.selectors import AnyUser

Handler = Callable[[Case, AnyUser], str]
StrOrPromise = str | Promise


@dataclass(frozen=True)
class WorkAction:
    name: str
    label: StrOrPromise
    handler: Handler
    attentions: frozenset[str]


ACTIONS: dict[str, WorkAction] = {}


def register(name: str, label: StrOrPromise, attentions: set[str]) -> Callable[[Handler], Handler]:
    def decorate(handler: Handler) -> Handler:
        ACTIONS[name] = WorkAction(name, label, handler, frozenset(attentions))
        return handler

    return decorate


def actions_for(case: Case) -> list[WorkAction]:
    return [a for a in ACTIONS.values() if case.attention in a.attentions]


# The order of the page: owners' replies first, then what the schedule handed over.
ORDER = [
    Attention.NOT_MINE,
    Attention.OTHER_CONTACT,
    Attention.OPT_OUT,
    Attention.BOUNCED,
    Attention.ESCALATED,
    Attention.LETTER_FAILED,
    Attention.REOPENED,
    Attention.REVIEW,
    Attention.TRIAGE,
]


def work_items(user: AnyUser) -> QuerySet[Case]:
    """The cases that need a person, in the user's partners only."""
    cases = Case.objects.exclude(attention="")
    if not selectors.sees_all_partners(user):
        cases = cases.filter(partner__in=selectors.partners_for(user))
    return cases


def work_count(user: AnyUser, cap: int | None = None) -> int:
    """How many cases need the user; with `cap`, counted no further than that (the header's
    badge, drawn on every admin page, says "1000+" rather than count a long backlog each time)."""
    if not selectors.is_member(user):
        return 0
    items = work_items(user)
    return items.order_by()[:cap].count() if cap else items.count()


def work_counts(user: AnyUser) -> dict[str, int]:
    rows = work_items(user).values("attention").annotate(n=Count("id")).order_by()
    return {row["attention"]: row["n"] for row in rows}


# --- Actions campaign knows ---------------------------------------------------------------------
REVIEWABLE = {
    Attention.REVIEW,
    Attention.REOPENED,
    Attention.TRIAGE,
    Attention.NOT_MINE,
    Attention.OTHER_CONTACT,
}


@register("withdraw", _("Withdraw: not theirs / misattributed"), REVIEWABLE | {Attention.BOUNCED})
def _withdraw(case: Case, user: AnyUser) -> str:
    services.case_transition(
        case=case,
        to_status=Case.Status.WITHDRAWN,
        actor=user,
        note=f"Withdrawn from the work queue ({case.get_attention_display()}).",
    )
    return str(_("withdrawn"))


@register("mark_ready", _("Reviewed: ready for a letter"), {Attention.REVIEW, Attention.TRIAGE})
def _mark_ready(case: Case, user: AnyUser) -> str:
    services.case_transition(
        case=case,
        to_status=Case.Status.READY,
        actor=user,
        note=f"Reviewed in the work queue: {case.attention_note}",
    )
    return str(_("ready for a letter"))


@register("escalate", _("Hand to the partner now"), {Attention.BOUNCED, Attention.REOPENED})
def _escalate(case: Case, user: AnyUser) -> str:
    services.case_transition(
        case=case,
        to_status=Case.Status.ESCALATED,
        actor=user,
        note=f"Handed to the partner from the work queue: {case.attention_note}",
    )
    return str(_("escalated"))


@register(
    "close_unresponsive", _("Close as unresponsive"), {Attention.ESCALATED, Attention.BOUNCED}
)
def _close_unresponsive(case: Case, user: AnyUser) -> str:
    services.case_transition(
        case=case,
        to_status=Case.Status.UNRESPONSIVE,
        actor=user,
        note="Closed as unresponsive by the partner after its own follow-up.",
    )
    return str(_("closed as unresponsive"))


@register(
    "done",
    _("Done: handled"),
    {
        Attention.OPT_OUT,
        Attention.ESCALATED,
        Attention.BOUNCED,
        Attention.LETTER_FAILED,
        Attention.NOT_MINE,
        Attention.OTHER_CONTACT,
    },
)
def _done(case: Case, user: AnyUser) -> str:
    services.case_attention_clear(
        case=case, actor=user, note=f"Handled in the work queue: {case.get_attention_display()}."
    )
    return str(_("handled"))


# --- Services the actions above and letters' actions use ----------------------------------------
class NoGivenContact(Exception):
    pass


def given_contact(case: Case) -> str:
    """The address the owner asked us to write to instead, from their latest correction."""
    event = (
        CaseEvent.objects.filter(
            case=case, kind=CaseEvent.Kind.CORRECTION, data__correction="other_contact"
        )
        .order_by("-at", "-id")
        .first()
    )
    email = str(event.data.get("email", "")) if event is not None else ""
    if not email:
        raise NoGivenContact(f"{case.reference}: the owner gave no other address.")
    return email


@transaction.atomic
def case_use_given_contact(*, case: Case, actor: AnyUser) -> Contact:
    """Put the address the owner gave first in their contact chain and make the case ready."""
    email = given_contact(case)
    owner = case.server_owner
    existing = owner.contacts.filter(email__iexact=email).first()
    if existing is not None and existing.bounced_at is not None:
        raise NoGivenContact(f"{email} bounced before; check it with the owner by other means.")
    if existing is not None:
        existing.delete()
    # Shift the chain by one, last first, so the unique (owner, position) holds at each step.
    for contact in owner.contacts.select_for_update().order_by("-position"):
        Contact.objects.filter(pk=contact.pk).update(position=contact.position + 1)
    contact = Contact.objects.create(
        server_owner=owner, position=0, kind=Contact.Kind.TECHNICAL, email=email, source="owner"
    )
    services.case_transition(
        case=case,
        to_status=Case.Status.READY,
        actor=actor,
        note=f"The owner's address {email} is now first in the contact chain.",
    )
    return contact
