"""campaign's reactions to scanning's signals; each only calls a service."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.dispatch import receiver

from campaign import services
from campaign.models import Attribution, Campaign
from scanning.models import OPEN_VERDICTS, Finding, Verdict
from scanning.signals import finding_confirmed, finding_recorded, finding_settled


@receiver(finding_recorded)
def on_finding_recorded(sender: Any, finding: Finding, **kwargs: Any) -> None:
    if finding.scan_run_id is not None:  # a step of the schedule may wait for this re-probe
        services.case_reprobe_seen(finding=finding)
    if finding.verdict == Verdict.CLOSED:  # a re-probe: the server of an open case is fixed
        services.case_apply_recheck_result(finding=finding)
        return
    if finding.verdict not in OPEN_VERDICTS:
        return
    attribution = (
        Attribution.objects.filter(target=finding.target_id)
        .select_related("server_owner__partner")
        .first()
    )
    campaign = Campaign.objects.current()
    if attribution is None or attribution.server_owner is None:
        # Unknown owner: attribution finds it (reverse DNS, RDAP) and then opens the case.
        if settings.ATTRIBUTE_AFTER_SCAN:
            from campaign.tasks import attribute_targets

            attribute_targets.delay_on_commit([finding.target_id])
        return
    if campaign is None:
        return
    services.case_add_finding(campaign=campaign, owner=attribution.server_owner, finding=finding)


@receiver(finding_confirmed)
def on_finding_confirmed(
    sender: Any, finding: Finding, previous_verdict: str, **kwargs: Any
) -> None:
    services.case_finding_revised(
        finding=finding, previous_verdict=previous_verdict, by_canary=True
    )


@receiver(finding_settled)
def on_finding_settled(sender: Any, finding: Finding, previous_verdict: str, **kwargs: Any) -> None:
    if finding.verdict != previous_verdict:  # settled as it was: the case already knows it
        services.case_finding_revised(finding=finding, previous_verdict=previous_verdict)
