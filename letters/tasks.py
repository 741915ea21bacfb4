from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="sweeps.report_stuck_letters")
def report_stuck_letters() -> int:
    from letters import services

    stuck = list(
        services.letters_stuck().values_list("case__reference", "status", "status_changed_at")
    )
    for reference, status, since in stuck:
        logger.warning(
            "Letter for %s stuck in %s since %s: review it by hand.", reference, status, since
        )
    return len(stuck)
