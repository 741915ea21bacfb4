from __future__ import annotations

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError


# The soft limit is well above one batch's bounded exchanges (docs/probes.md: 30 s each, and no
# wait for confirmations), so only a wedged batch is cut off; it is then marked failed.
# A database error (the claim included) retries with back-off; a lost retry is repaired by the
# reconciler, which finds the batch pending or its claim expired.
@shared_task(
    bind=True,
    name="scanning.probe_batch",
    soft_time_limit=15 * 60,
    time_limit=16 * 60,  # settings.SCAN_BATCH_TIME_LIMIT; the batch lease is longer
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=10,
    retry_backoff=2,
    retry_backoff_max=5 * 60,
)
def probe_batch(self: Task, batch_id: int) -> None:
    from scanning import services  # services imports this module

    services.scan_batch_probe(batch_id=batch_id, claim=self.request.id or "")


probe_batch_task = probe_batch


# Not under scanning.*: it runs on the default queue, so it does not wait behind the probes
# it queues.
@shared_task(name="dispatch.scan_run", autoretry_for=(OperationalError, InterfaceError))
def dispatch_scan_run(run_id: int, after_batch_id: int = 0) -> None:
    from scanning import services

    services.scan_run_dispatch(run_id=run_id, after_batch_id=after_batch_id)


dispatch_scan_run_task = dispatch_scan_run


@shared_task(name="sweeps.reconcile_scans")
def reconcile_scans() -> dict[str, int]:
    from config.broker import queue_depths
    from scanning import services

    waiting = queue_depths().get("scans")
    return services.scan_batches_reconcile(broker_waiting=waiting).as_dict()


# On the default queue (not scanning.*): a confirmation must not wait behind probe batches.
# The canary sends it with the token of each delivery it stores; beat sends it with none,
# so a lost message only delays an upgrade to the next sweep.
@shared_task(
    name="sweeps.confirm_findings",
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=5,
    retry_backoff=2,
)
def confirm_findings(tokens: list[str] | None = None) -> int:
    from scanning import confirmation

    return confirmation.findings_confirm_from_hits(tokens=tokens)


confirm_findings_task = confirm_findings


# A finding with a delivery on record is left to confirm_findings, never settled.
@shared_task(name="sweeps.settle_findings")
def settle_findings() -> int:
    from scanning import confirmation

    return confirmation.findings_settle_overdue()
