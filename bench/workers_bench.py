"""`workers`: tasks per second per real Celery worker (one `celery worker` process and its pool
of `--concurrency` processes; per pool process too), for each queue, on Redis and
PostgreSQL: probes (targets/s: scan batches against fake servers on loopback), letters (letters/s:
render, PDF, anymail's test backend) and attribution (owners/s: reverse DNS and RDAP answered on
loopback from recorded responses). Then two worker hosts (own node names and concurrency) share
one scan run: how the batches divided, and that none was probed twice.

Runs in its own database, `<db>_workers` (created, migrated and emptied here), with the broker
of REDIS_URL; each queue's worker is started, measured once idle and ready, and stopped by PID.
Knobs: BENCH_WORKER_TARGETS (default 1200), BENCH_WORKER_LETTERS (40), BENCH_WORKER_OWNERS (200),
BENCH_WORKER_CONCURRENCY (scans 8; letters and attribution: the CPU count), BENCH_WORKER_PARTS
(default: probes,letters,attribution,two_hosts), BENCH_WORKER_LOGS (keep the workers' logs there).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import worker_work
from bench.worker_hosts import (
    LOOPBACK_SCAN_ENV,
    LoopbackFleet,
    WorkerHost,
    purge_queues,
    start_host,
    wait_ready,
)

FLEET_NETWORK = "127.94.0.0/16"
SCAN_ENV = LOOPBACK_SCAN_ENV


def run() -> dict[str, Any]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.conf import settings
    from django.db import connection

    if connection.vendor != "postgresql":
        return {"skipped": "needs PostgreSQL (DATABASE_URL=postgres://...)"}
    if not _redis_reachable(settings.REDIS_URL):
        return {"skipped": "needs Redis (REDIS_URL=redis://...)"}
    database = _use_own_database()
    cpus = os.cpu_count() or 1
    scans_concurrency = int(os.environ.get("BENCH_WORKER_CONCURRENCY", "8"))
    cpu_concurrency = int(os.environ.get("BENCH_WORKER_CONCURRENCY", str(cpus)))
    report: dict[str, Any] = {
        "database": database,
        "cpus": cpus,
        "scan_batch_size": settings.SCAN_BATCH_SIZE,
        "probes_in_flight_per_batch": settings.SCAN_CONCURRENCY,
    }
    purge_queues()
    parts = os.environ.get("BENCH_WORKER_PARTS", "probes,letters,attribution,two_hosts")
    wanted = {part.strip() for part in parts.split(",")}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        logs = Path(os.environ.get("BENCH_WORKER_LOGS") or tmp)
        if "probes" in wanted:
            report["probes"] = _probes(logs, scans_concurrency)
        if "letters" in wanted:
            report["letters"] = _letters(logs, cpu_concurrency)
        if "attribution" in wanted:
            report["attribution"] = _attribution(logs, cpu_concurrency)
        if "two_hosts" in wanted:
            report["two_hosts"] = _two_hosts(logs, scans_concurrency)
    return report


def _redis_reachable(url: str) -> bool:
    import redis

    try:
        return bool(url) and bool(redis.Redis.from_url(url, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def _use_own_database() -> str:
    from bench.scale_data import use_bench_database

    return use_bench_database("_workers")


def _empty_database() -> None:
    from django.core.management import call_command

    call_command("flush", "--noinput", verbosity=0)


def _hosts(
    logs: Path, specs: list[tuple[str, int]], queues: str, env: dict[str, str]
) -> list[WorkerHost]:
    hosts = [
        start_host(name, queues=queues, concurrency=c, log_dir=logs, env=env) for name, c in specs
    ]
    try:
        wait_ready(hosts, timeout=120)
    except Exception:
        for host in hosts:
            host.stop()
        raise
    return hosts


def _probes(logs: Path, concurrency: int) -> dict[str, Any]:
    from scanning.models import Finding, ScanBatch

    n = int(os.environ.get("BENCH_WORKER_TARGETS", "1200"))
    _empty_database()
    print(f"bench workers: probes, {n} targets, 1 worker x {concurrency}…", file=sys.stderr)
    with LoopbackFleet(FLEET_NETWORK, n) as fleet:
        target_ids = worker_work.fleet_targets(fleet)
        [host] = _hosts(logs, [("probes", concurrency)], "scans,default", SCAN_ENV)
        try:
            started = time.perf_counter()
            run = worker_work.start_scan(target_ids, "bench workers: probes")
            finished = worker_work.wait_scan(run.pk, timeout=300)
            seconds = time.perf_counter() - started
        finally:
            host.stop()
    batches = ScanBatch.objects.filter(scan_run=run)
    probed = Finding.objects.filter(scan_run=run).count()
    return {
        "targets": n,
        "batches": batches.count(),
        "finished": finished,
        "findings": probed,
        "worker_processes": 1,
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "targets_per_second_per_worker": round(probed / seconds, 1),
        "targets_per_second_per_pool_process": round(probed / seconds / concurrency, 2),
    }


def _letters(logs: Path, concurrency: int) -> dict[str, Any]:
    from letters.models import Letter

    n = int(os.environ.get("BENCH_WORKER_LETTERS", "40"))
    _empty_database()
    print(f"bench workers: letters, {n} letters, 1 worker x {concurrency}…", file=sys.stderr)
    [host] = _hosts(logs, [("letters", concurrency)], "letters", {})
    try:
        started = time.perf_counter()
        with worker_work.through_broker():
            ids = worker_work.queue_letters(n)
        finished = worker_work.wait_letters(ids, timeout=300)
        seconds = time.perf_counter() - started
    finally:
        host.stop()
    sent = Letter.objects.filter(id__in=ids, status=Letter.Status.SENT).count()
    return {
        "letters": n,
        "sent": sent,
        "finished": finished,
        "worker_processes": 1,
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "letters_per_second_per_worker": round(sent / seconds, 2),
        "letters_per_second_per_pool_process": round(sent / seconds / concurrency, 2),
        "backend": "anymail.backends.test.EmailBackend",
    }


def _attribution(logs: Path, concurrency: int) -> dict[str, Any]:
    from bench import attribution_world

    n = int(os.environ.get("BENCH_WORKER_OWNERS", "200"))
    _empty_database()
    print(f"bench workers: attribution, {n} networks, 1 worker x {concurrency}…", file=sys.stderr)
    with attribution_world.Registries(n) as world:
        [host] = _hosts(logs, [("attribution", concurrency)], "default", world.env())
        try:
            started = time.perf_counter()
            done = world.attribute(batch=10)
            seconds = time.perf_counter() - started
        finally:
            host.stop()
        return {
            "targets": n,
            "owners": done["owners"],
            "finished": done["finished"],
            "rdap_requests": world.requests(),
            "worker_processes": 1,
            "concurrency": concurrency,
            "seconds": round(seconds, 2),
            "owners_per_second_per_worker": round(done["owners"] / seconds, 1),
            "owners_per_second_per_pool_process": round(done["owners"] / seconds / concurrency, 2),
        }


def _two_hosts(logs: Path, concurrency: int) -> dict[str, Any]:
    from collections import Counter

    from scanning.models import Finding, ScanBatch

    n = int(os.environ.get("BENCH_WORKER_TARGETS", "1200"))
    _empty_database()
    specs = [("hostA", concurrency), ("hostB", max(concurrency // 2, 1))]
    print(f"bench workers: two hosts {specs}, {n} targets…", file=sys.stderr)
    with LoopbackFleet(FLEET_NETWORK, n) as fleet:
        target_ids = worker_work.fleet_targets(fleet)
        hosts = _hosts(logs, specs, "scans,default", SCAN_ENV)
        try:
            started = time.perf_counter()
            run = worker_work.start_scan(target_ids, "bench workers: two hosts")
            finished = worker_work.wait_scan(run.pk, timeout=300)
            seconds = time.perf_counter() - started
        finally:
            for host in hosts:
                host.stop()
    claims = dict(ScanBatch.objects.filter(scan_run=run).values_list("claimed_by", "claims"))
    per_host = {
        host.name: {
            "concurrency": host.concurrency,
            "batches": sum(1 for c in host.succeeded("scanning.probe_batch") if c in claims),
        }
        for host in hosts
    }
    probed = Counter(Finding.objects.filter(scan_run=run).values_list("target_id", flat=True))
    return {
        "targets": n,
        "finished": finished,
        "seconds": round(seconds, 2),
        "targets_per_second": round(sum(probed.values()) / seconds, 1),
        "per_host": per_host,
        "batches": len(claims),
        "batches_claimed_more_than_once": sum(1 for c in claims.values() if c > 1),
        "targets_probed_more_than_once": sum(1 for c in probed.values() if c > 1),
        "targets_not_probed": len(set(target_ids) - set(probed)),
    }
