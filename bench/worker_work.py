"""A campaign's work for worker hosts: a scan run of loopback targets, and letters to send.

Shared by the `workers` bench section and the two-host integration test. Tasks go through the
real broker (Redis) even when the calling process runs eagerly; the workers do the work.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from bench.worker_hosts import LoopbackFleet


@contextlib.contextmanager
def through_broker() -> Iterator[None]:
    """Send tasks to Redis for the workers, even in a process configured to run them eagerly."""
    from config.celery import app

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        yield
    finally:
        app.conf.task_always_eager = eager


def fleet_targets(fleet: LoopbackFleet) -> list[int]:
    from django.utils import timezone

    from scanning.models import Target

    now = timezone.now()
    rows = Target.objects.bulk_create(
        Target(ip=ip, port=port, protocol=protocol, first_seen=now, last_seen=now)
        for ip, port, _, protocol in fleet.targets
    )
    return [t.pk for t in rows]


def start_scan(target_ids: list[int], label: str) -> Any:
    """A scan run, as the admin starts one: its dispatch task goes to the `default` queue and
    queues one probe task per batch on `scans`."""
    from scanning import services

    with through_broker():
        return services.scan_run_start(target_ids=target_ids, label=label, confirm_relays=False)


def wait_scan(run_id: int, timeout: float) -> bool:
    from scanning.models import ScanBatch

    deadline = time.monotonic() + timeout
    open_states = (ScanBatch.Status.PENDING, ScanBatch.Status.RUNNING)
    while time.monotonic() < deadline:
        if not ScanBatch.objects.filter(scan_run_id=run_id, status__in=open_states).exists():
            return True
        time.sleep(0.2)
    return False


def queue_letters(n: int, *, deliveries: int = 1) -> list[int]:
    """N queued letters to the bench owner (render, PDF, anymail's test backend), each
    letter's send task delivered `deliveries` times (more than once: a redelivery)."""
    from django.utils import timezone

    from bench.letters_bench import _world
    from config.celery import app
    from letters.models import Letter

    case, template = _world()
    now = timezone.now()
    ids = [
        Letter.objects.create(
            case=case,
            kind="initial",
            language="en",
            template=template,
            recipient_email=f"owner-{i}@b.example",
            status=Letter.Status.QUEUED,
            queued_at=now,
        ).id
        for i in range(n)
    ]
    for _ in range(deliveries):
        for letter_id in ids:
            app.send_task("letters.send_letter", args=[letter_id], queue="letters")
    return ids


def wait_letters(ids: list[int], timeout: float) -> bool:
    from letters.models import Letter

    deadline = time.monotonic() + timeout
    waiting = (Letter.Status.QUEUED, Letter.Status.SENDING)
    while time.monotonic() < deadline:
        if not Letter.objects.filter(id__in=ids, status__in=waiting).exists():
            return True
        time.sleep(0.2)
    return False
