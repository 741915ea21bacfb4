from __future__ import annotations

import logging

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)


class TransientSendError(Exception):
    """The ESP (or the network) failed in a way worth retrying; the letter is QUEUED again."""


# A database error anywhere (the claim included) is transient: the task retries with back-off,
# and if the retry is lost with the broker, the claim's lease expires and the reconciler or the
# dispatcher picks the letter up again. Send errors are retried through the outbox, not here.
@shared_task(
    bind=True,
    name="letters.send_letter",
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=12,
    retry_backoff=2,
    retry_backoff_max=5 * 60,
    retry_jitter=True,
    soft_time_limit=settings.LETTER_SEND_TIME_LIMIT * 4 // 5,
    time_limit=settings.LETTER_SEND_TIME_LIMIT,  # the send claim's lease is longer
)
def send_letter(self: Task, letter_id: int) -> None:
    from letters import services  # services imports this module

    services.letter_send(letter_id=letter_id, claim=self.request.id or "")


send_letter_task = send_letter


@shared_task(
    name="letters.dispatch",
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=3,
    retry_backoff=2,
)
def dispatch_letters() -> int:
    from letters import services

    return services.letters_dispatch().dispatched


dispatch_letters_task = dispatch_letters


@shared_task(
    name="sweeps.reconcile",
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=3,
    retry_backoff=2,
)
def reconcile() -> dict[str, int]:
    from letters import services

    return services.outbox_reconcile().as_dict()


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
