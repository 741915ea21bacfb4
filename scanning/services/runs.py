"""Scan runs: starting one over a set of targets (links and batches written set-based), queueing
its batches in chunks, and finding runs whose batches stalled."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from scanning.models import ScanBatch, ScanRun, Target

logger = logging.getLogger(__name__)


# --- Scan runs ---------------------------------------------------------------------------------


def _chunks(ids: list[int], size: int) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


# Elsewhere than on PostgreSQL, links and batches are written this many target ids at a time
# (rounded to whole batches): memory stays flat, and no statement carries a million parameters.
RUN_CHUNK = 10_000
# Probe tasks are sent this many at a time by the dispatch task, which then sends itself for the
# next ones: starting a run of a million targets does not wait for 20,000 messages.
DISPATCH_CHUNK = 1_000


@transaction.atomic
def scan_run_start(
    *,
    target_ids: Iterable[int] | None = None,
    targets: QuerySet[Target] | None = None,
    label: str,
    requested_by: User | None = None,
    confirm_relays: bool = True,
) -> ScanRun:
    """Create a scan run of these targets (ids, or a queryset never read into Python on
    PostgreSQL) and its batches of SCAN_BATCH_SIZE targets in id order; on commit, a dispatch
    task queues the batches' probe tasks in chunks."""
    from scanning.tasks import dispatch_scan_run_task  # tasks import this module

    run = ScanRun.objects.create(
        label=label[:200], requested_by=requested_by, confirm_relays=confirm_relays
    )
    if targets is None:
        targets = Target.objects.filter(pk__in=sorted(set(target_ids or ())))
    if connection.vendor == "postgresql":
        total = _add_run_targets_sql(run, targets)
    else:
        ids = targets.order_by("pk").values_list("pk", flat=True).distinct().iterator(RUN_CHUNK)
        size = settings.SCAN_BATCH_SIZE
        total = 0
        for chunk in _id_chunks(ids, max(RUN_CHUNK // size, 1) * size):
            _add_run_chunk(run, chunk)
            total += len(chunk)
    ScanRun.objects.filter(pk=run.pk).update(targets_total=total)
    run.targets_total = total
    if not total:
        ScanRun.objects.filter(pk=run.pk).update(
            status=ScanRun.Status.FINISHED, finished_at=timezone.now()
        )
        return run
    dispatch_scan_run_task.delay_on_commit(run.pk)
    return run


def _add_run_targets_sql(run: ScanRun, targets: QuerySet[Target]) -> int:
    """Links and batches by two INSERT ... SELECT statements: a million targets never pass
    through Python. Returns the number of targets."""
    scope, params = targets.order_by().values("pk").query.sql_with_params()
    through = ScanRun.targets.through._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {through} (scanrun_id, target_id) "
            f"SELECT %s, s.id FROM ({scope}) AS s(id) GROUP BY s.id",
            [run.pk, *params],
        )
        total = cursor.rowcount
        # Every other column as a new ScanBatch has it, so a field added later comes along.
        fields = [
            f
            for f in ScanBatch._meta.concrete_fields
            if not f.primary_key and f.name not in ("scan_run", "target_ids", "created_at")
        ]
        columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
        defaults = [f.get_db_prep_save(f.get_default(), connection) for f in fields]
        placeholders = ", ".join("%s" for _ in fields)
        cursor.execute(
            f"INSERT INTO {ScanBatch._meta.db_table} (scan_run_id, target_ids, created_at, "
            f"{columns}) "
            f"SELECT %s, jsonb_agg(target_id ORDER BY target_id), %s, {placeholders} "
            f"FROM (SELECT target_id, (row_number() OVER (ORDER BY target_id) - 1) / %s AS n "
            f"      FROM {through} WHERE scanrun_id = %s) AS numbered "
            "GROUP BY n ORDER BY n",
            [run.pk, timezone.now(), *defaults, settings.SCAN_BATCH_SIZE, run.pk],
        )
    return int(total)


def _id_chunks(ids: Iterable[int], size: int) -> Iterator[list[int]]:
    chunk: list[int] = []
    for target_id in ids:
        chunk.append(target_id)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _add_run_chunk(run: ScanRun, ids: list[int]) -> None:
    through = ScanRun.targets.through
    through.objects.bulk_create(
        [through(scanrun_id=run.pk, target_id=target_id) for target_id in ids], batch_size=5000
    )
    ScanBatch.objects.bulk_create(
        [
            ScanBatch(scan_run=run, target_ids=chunk)
            for chunk in _chunks(ids, settings.SCAN_BATCH_SIZE)
        ],
        batch_size=1000,
    )


def scan_run_dispatch(*, run_id: int, after_batch_id: int = 0) -> int:
    """Queue the probe tasks of up to DISPATCH_CHUNK pending batches after `after_batch_id`,
    and the next dispatch if there may be more. A batch queued twice (a redelivered dispatch, the
    reconciler) is probed once: the probe claims its batch first."""
    from scanning.tasks import dispatch_scan_run_task, probe_batch_task

    batch_ids = list(
        ScanBatch.objects.filter(
            scan_run_id=run_id, id__gt=after_batch_id, status=ScanBatch.Status.PENDING
        )
        .order_by("id")
        .values_list("id", flat=True)[:DISPATCH_CHUNK]
    )
    for batch_id in batch_ids:
        probe_batch_task.delay(batch_id)
    if len(batch_ids) == DISPATCH_CHUNK:
        dispatch_scan_run_task.delay(run_id, batch_ids[-1])
    return len(batch_ids)


def scan_runs_needing_attention(*, now: datetime | None = None) -> QuerySet[ScanRun]:
    """Runs with a batch whose claim expired, or a batch due for longer than the grace with no
    worker on it: the reconciler repairs them; if they stay, a person looks."""
    now = now or timezone.now()
    S = ScanBatch.Status
    grace = now - timedelta(seconds=settings.SCAN_PENDING_GRACE)
    stale = ScanBatch.objects.filter(
        Q(status=S.RUNNING, lease_until__lt=now)
        | (
            Q(status=S.PENDING, created_at__lt=grace)
            & (Q(not_before__isnull=True) | Q(not_before__lt=grace))
            & (Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        )
    )
    return ScanRun.objects.filter(pk__in=stale.values("scan_run_id"))


def scan_run_requeue_stale(*, run: ScanRun) -> int:
    """Hand a run's stale batches to workers again (a person's nudge; the reconciler does the
    same on its own). A batch still claimed by a live worker is left alone."""
    from scanning.tasks import probe_batch_task

    now = timezone.now()
    S = ScanBatch.Status
    grace = timedelta(seconds=settings.SCAN_PENDING_GRACE)
    batches = run.batches.filter(
        Q(status=S.RUNNING, lease_until__lt=now, claims__lt=settings.SCAN_BATCH_MAX_CLAIMS)
        | (
            Q(status=S.PENDING)
            & (Q(not_before__isnull=True) | Q(not_before__lte=now))
            & (Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        )
    )
    ids = list(batches.values_list("id", flat=True))
    ScanBatch.objects.filter(id__in=ids).update(
        status=S.PENDING, claimed_by="", lease_until=now + grace
    )
    transaction.on_commit(lambda: [probe_batch_task.delay(batch_id) for batch_id in ids])
    return len(ids)


def scan_batches_stale(*, now: datetime | None = None) -> dict[str, object]:
    """Running batches past their lease, and the oldest batch still waiting: for health."""
    now = now or timezone.now()
    S = ScanBatch.Status
    stale = ScanBatch.objects.filter(status=S.RUNNING, lease_until__lt=now)
    oldest = (
        ScanBatch.objects.filter(status=S.PENDING)
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    return {"stale_running": stale.count(), "oldest_pending": oldest}
