"""`scale`: the campaign at scale on PostgreSQL, each figure next to PostgreSQL's own.

Builds its own data set in `<db>_scale` (bench/scale_data.py; BENCH_SCALE targets, default
20,000, kept between runs) and measures: the exports (ours, and COPY of comparable columns;
BENCH_SCALE_FORMATS, default csv,json,xlsx), the import of a CSV (ours, COPY of the same file into
a bare table, and COPY plus inserting into Target; BENCH_SCALE_IMPORT_ROWS rows, default all),
starting a scan run of every target (ours, and the same rows inserted by one SQL statement each),
and the admin pages (p50 of BENCH_PAGE_RUNS requests and their query count). Rolled back:
imports, scan runs. BENCH_SCALE_PARTS picks some of exports, import, scan_run_start, admin_pages
(default: all).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class _Rollback(Exception):
    pass


def run() -> dict[str, Any]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.db import connection

    if connection.vendor != "postgresql":
        return {"skipped": "needs PostgreSQL (DATABASE_URL=postgres://...)"}
    from bench import scale_data

    n = int(os.environ.get("BENCH_SCALE", "20000"))
    database = scale_data.use_scale_database()
    report: dict[str, Any] = {"database": database}
    if scale_data.built_size() != n:
        print(f"bench scale: building {n:,} targets…", file=sys.stderr)
        report["data_set"] = scale_data.build(n)
    else:
        report["data_set"] = {"targets": n, "reused": True}
    parts = os.environ.get("BENCH_SCALE_PARTS", "exports,import,scan_run_start,admin_pages")
    wanted = {part.strip() for part in parts.split(",")}
    if "exports" in wanted:
        report["exports"] = _exports()
    if "import" in wanted:
        report["import"] = _import(n)
    if "scan_run_start" in wanted:
        report["scan_run_start"] = _scan_start()
    if "admin_pages" in wanted:
        report["admin_pages"] = _pages()
    return report


def _timed(fn: Any, runs: int = 3) -> tuple[float, Any]:
    results = []
    value = None
    for _ in range(runs):
        started = time.perf_counter()
        value = fn()
        results.append(time.perf_counter() - started)
    return statistics.median(results), value


def _pg_copy_seconds(sql: str) -> tuple[float, int]:
    from django.db import connection, transaction

    def copy() -> int:
        with transaction.atomic():
            raw = connection.cursor().cursor
            with raw.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)") as out:
                for _ in out:
                    pass
            return int(raw.rowcount)

    return _timed(copy)


PG_CASES = """SELECT c.reference, c.status, p.country, cp.slug, o.name, o.country, c.language,
  (SELECT count(*) FROM campaign_case_findings cf WHERE cf.case_id = c.id), c.opened_at,
  c.status_changed_at, c.next_action_at
FROM campaign_case c JOIN campaign_partner p ON p.id = c.partner_id
JOIN campaign_campaign cp ON cp.id = c.campaign_id
JOIN campaign_serverowner o ON o.id = c.server_owner_id ORDER BY c.reference"""
PG_FINDINGS = """SELECT c.reference, p.country, o.name, host(t.ip), t.port, f.protocol, f.verdict,
  f.evidence_level, f.software_family, f.probed_at, t.first_seen, t.last_seen
FROM campaign_case_findings cf JOIN campaign_case c ON c.id = cf.case_id
JOIN campaign_partner p ON p.id = c.partner_id
JOIN campaign_serverowner o ON o.id = c.server_owner_id
JOIN scanning_finding f ON f.id = cf.finding_id JOIN scanning_target t ON t.id = f.target_id
ORDER BY c.reference, f.probed_at, f.id"""


def _exports() -> dict[str, Any]:
    from campaign import exports
    from campaign.models import Case

    out: dict[str, Any] = {}
    for shape, pg_sql in (("cases", PG_CASES), ("findings", PG_FINDINGS)):
        pg_seconds, pg_rows = _pg_copy_seconds(pg_sql)
        for fmt in os.environ.get("BENCH_SCALE_FORMATS", "csv,json,xlsx").split(","):

            def stream(shape: str = shape, fmt: str = fmt) -> int:
                export = exports.export_for(Case.objects.all(), shape=shape, fmt=fmt)
                for _ in export.stream():
                    pass
                return export.rows

            runs = 3 if fmt == "csv" else 1
            seconds, rows = _timed(stream, runs)
            entry: dict[str, Any] = {
                "rows": rows,
                "seconds": round(seconds, 2),
                "rows_per_second": round(rows / seconds) if seconds else 0,
            }
            if fmt == "csv":
                entry.update(_export_process(shape))
                entry["postgresql_copy"] = {
                    "rows": pg_rows,
                    "seconds": round(pg_seconds, 2),
                    "rows_per_second": round(pg_rows / pg_seconds) if pg_seconds else 0,
                }
                entry["ratio_to_copy"] = round(pg_seconds / seconds, 2) if seconds else None
            out[f"{shape}_{fmt}"] = entry
    return out


def _export_process(shape: str) -> dict[str, Any]:
    """`manage.py export_cases` as partners run it: first byte and the process's peak memory."""
    from django.db import connection

    env = {**os.environ, "DATABASE_URL": _database_url(connection.settings_dict["NAME"])}
    command = [sys.executable, "manage.py", "export_cases", "--shape", shape]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    first = process.stdout.read(1)
    first_byte = time.perf_counter() - started
    size = len(first)
    while chunk := process.stdout.read(1 << 16):
        size += len(chunk)
    _, status, usage = os.wait4(process.pid, 0)
    return {
        "command_seconds": round(time.perf_counter() - started, 2),
        "command_first_byte_seconds": round(first_byte, 2),
        "command_peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "command_exit_status": os.waitstatus_to_exitcode(status),
        "bytes": size,
    }


def _database_url(name: str) -> str:
    url = os.environ["DATABASE_URL"]
    return url.rsplit("/", 1)[0] + "/" + name


def _import(n: int) -> dict[str, Any]:
    from django.db import transaction

    from bench.import_bench import write_csv
    from campaign.intake import services

    rows = min(n, int(os.environ.get("BENCH_SCALE_IMPORT_ROWS", str(n))))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scale.csv"
        write_csv(path, rows)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        try:
            with transaction.atomic():
                batch = services.import_file(
                    path_or_file=path, file_name="scale.csv", format="csv", campaign=None
                )
                seconds = time.perf_counter() - started
                raise _Rollback
        except _Rollback:
            pass
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        copy_seconds, store_seconds = _pg_copy_and_store(path)
    return {
        "rows": rows,
        "kept": batch.rows_kept,
        "rejected": batch.rows_rejected,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds) if seconds else 0,
        "rss_growth_mb": round((after - before) / 1024, 1),
        "postgresql_copy": {
            "seconds": round(copy_seconds, 2),
            "rows_per_second": round(rows / copy_seconds) if copy_seconds else 0,
        },
        "ratio_to_copy": round(copy_seconds / seconds, 3) if seconds else None,
        "postgresql_copy_then_insert": {
            "seconds": round(copy_seconds + store_seconds, 2),
            "rows_per_second": round(rows / (copy_seconds + store_seconds)),
        },
        "ratio_to_copy_then_insert": round((copy_seconds + store_seconds) / seconds, 3)
        if seconds
        else None,
    }


def _pg_copy_and_store(path: Path) -> tuple[float, float]:
    """PostgreSQL alone: COPY of the file into a bare table; then what storing costs it, the
    rows inserted into Target (its indexes included) and linked to a batch, with no checks and
    no merging rules. Rolled back, as the import measured before it is (so neither pays the
    deferred foreign-key checks of a commit)."""
    from django.db import connection, transaction

    from campaign.models import ImportBatch

    timings: list[float] = []
    try:
        with transaction.atomic():
            batch = ImportBatch.objects.create(file_name="bench")
            raw = connection.cursor().cursor
            raw.execute(
                "CREATE TEMPORARY TABLE bench_copy (ip text, port text, protocol text, "
                "hostname text, asn text, country text, first_seen text, source text) "
                "ON COMMIT DROP"
            )
            started = time.perf_counter()
            with raw.copy("COPY bench_copy FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
                with open(path, "rb") as handle:
                    while data := handle.read(1 << 16):
                        copy.write(data)
            timings.append(time.perf_counter() - started)
            started = time.perf_counter()
            raw.execute(
                "WITH stored AS (INSERT INTO scanning_target (ip, port, protocol, hostname, asn, "
                "geo_country, first_seen, last_seen, sources, source_data, created_at) "
                "SELECT DISTINCT ON (ip::inet, port::int) ip::inet, port::int, 'unknown', "
                "COALESCE(hostname, ''), NULLIF(asn, '')::bigint, COALESCE(country, ''), "
                "now(), now(), '[]', '{}', now() "
                "FROM bench_copy WHERE port::int BETWEEN 1 AND 65535 "
                "AND CASE WHEN ip LIKE '203.%%' THEN split_part(ip, '.', 4)::int <= 255 "
                "ELSE true END "
                "ORDER BY ip::inet, port::int "
                "ON CONFLICT DO NOTHING RETURNING id) "
                "INSERT INTO campaign_importbatch_targets (importbatch_id, target_id) "
                "SELECT %s, id FROM stored",
                [batch.pk],
            )
            timings.append(time.perf_counter() - started)
            raise _Rollback
    except _Rollback:
        pass
    return timings[0], timings[1]


def _scan_start() -> dict[str, Any]:
    import tracemalloc
    from unittest import mock

    from django.conf import settings
    from django.db import connection, transaction

    from scanning import services, tasks
    from scanning.models import Target

    out: dict[str, Any] = {}
    # Timed first, then once more under tracemalloc (which slows Python several times over)
    # for the peak of what Python holds: flat whatever the number of targets.
    for traced in (False, True):
        try:
            with transaction.atomic(), mock.patch.object(tasks.dispatch_scan_run_task, "delay"):
                if traced:
                    tracemalloc.start()
                started = time.perf_counter()
                run = services.scan_run_start(targets=Target.objects.all(), label="bench scale")
                if traced:
                    out["peak_traced_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
                    tracemalloc.stop()
                else:
                    out["seconds"] = round(time.perf_counter() - started, 2)
                    out["targets"] = run.targets_total
                    out["batches"] = run.batches.count()
                raise _Rollback
        except _Rollback:
            pass
    size = settings.SCAN_BATCH_SIZE
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(
                "INSERT INTO scanning_scanrun (label, status, confirm_relays, targets_total, "
                "targets_done, verdict_counts, note, created_at, refusals) "
                "VALUES ('sql', 'pending', true, 0, 0, '{}', '', now(), '[]') RETURNING id"
            )
            run_id = cursor.fetchone()[0]
            cursor.execute(
                "INSERT INTO scanning_scanrun_targets (scanrun_id, target_id) "
                "SELECT %s, id FROM scanning_target",
                [run_id],
            )
            cursor.execute(
                "INSERT INTO scanning_scanbatch (scan_run_id, target_ids, attempt, tokens, "
                "status, error, created_at, claimed_by, claims) "
                "SELECT %s, jsonb_agg(id ORDER BY id), 0, '{}', 'pending', '', now(), '', 0 "
                "FROM (SELECT id, (row_number() OVER (ORDER BY id) - 1) / %s AS n "
                "FROM scanning_target) s GROUP BY n",
                [run_id, size],
            )
            out["postgresql_sql_seconds"] = round(time.perf_counter() - started, 2)
            raise _Rollback
    except _Rollback:
        pass
    except Exception as exc:  # the bare SQL follows the schema; say so rather than fail
        out["postgresql_sql_error"] = str(exc).splitlines()[0]
    return out


def _pages() -> dict[str, Any]:
    from bench import scale_pages

    return scale_pages.run()
