"""What the owner's page reads from the database: its link, the re-check the owner asked for,
the recipient's address and opt-out, and what the recipient told us."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from campaign import services as campaign_services
from campaign.models import Case, CaseEvent, Contact, Suppression
from letters import links
from letters.models import RemediationLink
from scanning.models import Finding, ScanRun


def remediation_link_for_page(token: str) -> RemediationLink | None:
    link = links.remediation_link_find(token)
    if link is None:
        return None
    return RemediationLink.objects.select_related(
        "letter", "case__partner", "case__campaign", "case__server_owner"
    ).get(pk=link.pk)


@dataclass
class Recheck:
    state: str = "none"  # none, queued, running, done
    run: ScanRun | None = None
    requested_at: Any = None
    results: dict[tuple[int, str], Finding] = field(default_factory=dict)


def recheck_of(case: Case) -> Recheck:
    event = campaign_services.case_last_recheck(case)
    if event is None:
        return Recheck()
    run_id = (event.data or {}).get("scan_run")
    run = ScanRun.objects.filter(pk=run_id).first() if run_id else None
    if run is None:
        return Recheck()
    state = {ScanRun.Status.PENDING: "queued", ScanRun.Status.RUNNING: "running"}.get(
        ScanRun.Status(run.status), "done"
    )
    results: dict[tuple[int, str], Finding] = {}
    for finding in Finding.objects.filter(scan_run=run).order_by("probed_at", "id"):
        # The newest per service (greylist retries); one port may speak several protocols.
        results[(finding.target_id, finding.protocol)] = finding
    return Recheck(state=state, run=run, requested_at=event.at, results=results)


def recipient_email(link: RemediationLink) -> str:
    if link.letter is not None and link.letter.recipient_email:
        return link.letter.recipient_email
    contact = (
        link.case.server_owner.contacts.exclude(kind=Contact.Kind.PARTNER)
        .order_by("position")
        .first()
    )
    return contact.email if contact else ""


def has_opted_out(link: RemediationLink, email: str) -> bool:
    # An expired opt-out no longer stops letters: the form is offered again.
    suppressions = (
        Suppression.objects.active()
        .affecting(link.case.partner_id)
        .filter(reason=Suppression.Reason.OPT_OUT)
    )
    if email:
        return suppressions.filter(email__iexact=email).exists()
    return suppressions.filter(server_owner=link.case.server_owner).exists()


def recipient_corrections(case: Case) -> QuerySet[CaseEvent]:
    """Corrections the recipient sent through the page's forms, oldest first."""
    return CaseEvent.objects.filter(
        case=case, kind=CaseEvent.Kind.CORRECTION, actor_label="recipient"
    ).order_by("at", "id")
