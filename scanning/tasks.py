from __future__ import annotations

from celery import shared_task


# The soft limit is well above one batch's bounded exchanges (docs/probes.md: 30 s each,
# confirmation waits separate), so only a wedged batch is cut off; it is then marked failed.
@shared_task(name="scanning.probe_batch", soft_time_limit=15 * 60, time_limit=16 * 60)
def probe_batch(batch_id: int) -> None:
    from scanning import services  # services imports this module

    services.scan_batch_probe(batch_id=batch_id)


probe_batch_task = probe_batch
