from __future__ import annotations

from celery import shared_task


@shared_task(name="campaign.import_targets")
def import_targets(batch_id: int, path: str) -> None:
    """Import a large upload stored under MEDIA_ROOT/imports/ (queue: default)."""
    from campaign.intake import services

    services.import_stored_upload(batch_id=batch_id, path=path)
