from __future__ import annotations

from celery import shared_task


@shared_task(name="campaign.settle_case")
def settle_case(case_id: int) -> None:
    """Move a new or reviewed case to ready / needs_review / suppressed, as its evidence says."""
    from campaign import services
    from campaign.models import Case

    case = Case.objects.select_related("server_owner__partner").filter(id=case_id).first()
    if case is not None:
        services.case_settle(case=case, actor_label="worker")


@shared_task(name="campaign.attribute_targets")
def attribute_targets(target_ids: list[int]) -> dict[str, int]:
    """Reverse DNS and RDAP for these targets, then their owners' cases; errors are counted."""
    from campaign.attribution import services
    from scanning.models import Target

    targets = Target.objects.filter(id__in=target_ids).order_by("id")
    return services.targets_attribute(targets=targets).counts()


@shared_task(name="campaign.schedule_sweep")
def schedule_sweep() -> int:
    """The beat's sweep: claim due cases and queue one advance_case each."""
    from campaign import services

    return services.schedule_sweep().claimed


@shared_task(name="campaign.advance_case")
def advance_case(case_id: int) -> str:
    from campaign import services

    return services.case_advance(case_id=case_id)


advance_case_task = advance_case


@shared_task(name="campaign.reschedule_campaign")
def reschedule_campaign(campaign_id: int) -> int:
    """Intervals or the end date of a campaign changed: plan its open cases again."""
    from campaign import services
    from campaign.models import Campaign

    campaign = Campaign.objects.filter(pk=campaign_id).first()
    return 0 if campaign is None else services.campaign_reschedule(campaign=campaign)


reschedule_campaign_task = reschedule_campaign


@shared_task(name="campaign.attribute_job")
def attribute_job(job_id: int) -> None:
    """An attribution started from the admin, recorded on its job row."""
    from campaign.attribution import services

    services.attribution_job_run(job_id=job_id)


# Celery discovers campaign/tasks.py only; the intake task lives with the intake code.
from campaign.intake.tasks import import_targets  # noqa: E402,F401
