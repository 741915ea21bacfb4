"""The outbox's dispatcher over a large queue: 20,000 queued letters drain at the configured
rate, one tick a minute, with no countdown messages and no worker slot per letter.

The send task is replaced by a counter (no broker, no rendering: the `letters` section measures
those), and everything runs in one transaction that is rolled back.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any
from unittest import mock


class _Rollback(Exception):
    pass


def run(letters: int | None = None) -> dict[str, Any]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.db import transaction

    n = letters or int(os.environ.get("BENCH_OUTBOX_LETTERS", "20000"))
    result: dict[str, Any] = {}
    try:
        with transaction.atomic():
            result = _measure(n)
            raise _Rollback
    except _Rollback:
        pass
    return result


def _measure(n: int) -> dict[str, Any]:
    from django.conf import settings
    from django.utils import timezone

    from campaign.models import Campaign, Case, Partner, ServerOwner
    from letters import services
    from letters.models import Letter

    now = timezone.now()
    partner, _ = Partner.objects.get_or_create(
        country="ZY",
        defaults={"country_name": "Outboxland", "agency": "Bench Agency", "languages": ["en"]},
    )
    owner = ServerOwner.objects.create(name="Bench Outbox", partner=partner, country="ZY")
    case = Case.objects.create(
        reference="SYS-1999-999999",
        campaign=Campaign.objects.create(slug="bench-outbox", name="Bench outbox"),
        server_owner=owner,
        partner=partner,
        language="en",
        status=Case.Status.READY,
    )
    started = time.perf_counter()
    Letter.objects.bulk_create(
        (
            Letter(
                case=case,
                language="en",
                recipient_email=f"r{i}@bench.example",
                status=Letter.Status.QUEUED,
                queued_at=now + timedelta(microseconds=i),
            )
            for i in range(n)
        ),
        batch_size=2000,
    )
    queue_seconds = time.perf_counter() - started
    rate = settings.LETTER_RATE_PER_MINUTE
    enqueued = 0

    def count(*_args: Any) -> None:
        nonlocal enqueued
        enqueued += 1

    ticks, busy, idle, at, most = 0, [], [], now, 0
    with mock.patch("letters.services.outbox.send_letter_task") as task:
        task.delay.side_effect = count
        with mock.patch("django.db.transaction.on_commit", lambda f, *a, **k: f()):
            while Letter.objects.filter(status=Letter.Status.QUEUED).exists():
                t0 = time.perf_counter()
                report = services.letters_dispatch(now=at)
                busy.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                services.letters_dispatch(now=at)  # the same minute again: nothing may leave
                idle.append(time.perf_counter() - t0)
                # The workers send what was dispatched before the next tick.
                Letter.objects.filter(status=Letter.Status.QUEUED, dispatched_at=at).update(
                    status=Letter.Status.SENT
                )
                most = max(most, report.dispatched)
                ticks += 1
                at += timedelta(minutes=1)
    busy.sort()
    idle.sort()
    return {
        "letters": n,
        "rate_per_minute": rate,
        "queue_insert_seconds": round(queue_seconds, 2),
        "ticks_to_drain": ticks,
        "simulated_minutes_to_drain": ticks,
        "send_tasks_enqueued": enqueued,
        "max_enqueued_per_tick": most,
        "tick_ms_median": round(1000 * busy[len(busy) // 2], 1),
        "tick_ms_max": round(1000 * busy[-1], 1),
        "tick_ms_when_rate_is_spent_median": round(1000 * idle[len(idle) // 2], 1),
    }
