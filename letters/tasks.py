from __future__ import annotations

import logging

from celery import Task, shared_task

logger = logging.getLogger(__name__)


class TransientSendError(Exception):
    """The ESP (or the network) failed in a way worth retrying; the letter is QUEUED again."""


@shared_task(
    bind=True,
    name="letters.send_letter",
    autoretry_for=(TransientSendError,),
    max_retries=6,
    retry_backoff=60,
    retry_backoff_max=30 * 60,  # cap < the Redis visibility timeout (2 h)
    retry_jitter=True,
)
def send_letter(self: Task, letter_id: int) -> None:
    from letters import services  # services imports this module

    # On the last attempt a transient error fails the letter visibly instead of re-queueing it.
    services.letter_send(letter_id=letter_id, last_attempt=self.request.retries >= self.max_retries)


send_letter_task = send_letter


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
