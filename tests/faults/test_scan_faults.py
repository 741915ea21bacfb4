"""A scan run through a real scans worker that is killed mid-run: the run still finishes, and
every target has exactly one finding."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from fakes.smtp_traps import run_trap
from scanning.models import Finding, ScanBatch, ScanRun, Target
from tests.conftest import require
from tests.faults.harness import RedisServer, beat, process_env, report_row, wait_for, worker

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

TARGETS = 8
SCAN_ENV = {
    "SCAN_ALLOW_PRIVATE": "true",
    "SCAN_BATCH_SIZE": "1",
    "SCAN_CONNECT_TIMEOUT": "2",
    "SCAN_REPLY_TIMEOUT": "3",  # a tarpit holds each batch this long
    "SCAN_EXCHANGE_TIMEOUT": "8",
    "SCAN_NETWORK_RATE": "0",
    "SCAN_GREYLIST_RETRY_DELAYS": "",
}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    require(connection.vendor == "postgresql", "the fault suite needs PostgreSQL")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_scan_run_finishes_after_its_worker_is_killed(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = process_env(redis_server, None, tmp_path, **SCAN_ENV)
    started: list[Any] = []
    with ExitStack() as stack:
        now = timezone.now()
        traps = [
            stack.enter_context(run_trap("tarpit", f"127.0.82.{i + 1}")) for i in range(TARGETS)
        ]
        targets = [
            Target.objects.create(
                ip=host, port=port, protocol="smtp", first_seen=now, last_seen=now
            )
            for host, port in traps
        ]
        run = ScanRun.objects.create(label="faults", targets_total=TARGETS, confirm_relays=False)
        run.targets.set(targets)
        batches = [ScanBatch.objects.create(scan_run=run, target_ids=[t.pk]) for t in targets]
        # Published to our own Redis, as scan_run_start does on commit.
        # Not the current app: shared tasks called later in this process must keep the project's.
        broker = Celery(broker=redis_server.url, set_as_current=False)
        for batch in batches:
            broker.send_task("scanning.probe_batch", args=[batch.pk], queue="scans",
                             routing_key="scans")  # fmt: skip
        scans = worker(env, tmp_path / "scans.log", "scans", "scans", concurrency=2)
        started += [scans, worker(env, tmp_path / "default.log", "default", "sweeps", 1)]
        started.append(beat(env, tmp_path / "beat.log", tmp_path))
        try:
            began = time.monotonic()
            assert wait_for(lambda: ScanBatch.objects.filter(status="done").count() >= 2, 120), (
                tmp_path / "scans.log"
            ).read_text()[-3000:]
            assert ScanBatch.objects.filter(status="running").exists()
            scans.kill()  # kill -9 of the whole scans worker, batches in flight
            injected = time.monotonic()
            time.sleep(2)
            started.append(worker(env, tmp_path / "scans2.log", "scans", "scans2", 2))
            finished = wait_for(
                lambda: ScanRun.objects.get(pk=run.pk).status in ("finished", "void", "failed"),
                150,
                step=0.5,
            )
            heal = round(time.monotonic() - injected, 1)
        finally:
            for process in started:
                process.stop()
        run.refresh_from_db()
        per_target = dict(
            Finding.objects.filter(scan_run=run)
            .values_list("target_id")
            .annotate(n=Count("id"))
            .values_list("target_id", "n")
        )
        row = {
            "fault": "kill -9 whole scans worker",
            "scan_batches": TARGETS,
            "findings": sum(per_target.values()),
            "duplicated": sum(n - 1 for n in per_target.values() if n > 1),
            "lost": TARGETS - len(per_target),
            "stuck": ScanBatch.objects.filter(
                scan_run=run, status__in=("pending", "running")
            ).count(),
            "run_status": run.status,
            "time_to_heal_s": heal if finished else None,
            "total_s": round(time.monotonic() - began, 1),
        }
        report_row(row)
        logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("*.log"))
        assert finished, (row, logs)
        assert row["duplicated"] == 0, (row, logs)
        assert row["stuck"] == 0, (row, logs)
        assert row["lost"] == 0, (row, logs)
        assert run.targets_done == TARGETS
