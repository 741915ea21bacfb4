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
