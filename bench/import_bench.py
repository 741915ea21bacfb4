"""Import speed and peak memory for a generated CSV of suspects, against the configured DB."""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path


def write_csv(path: Path, rows: int) -> None:
    # Distinct (ip, port) pairs in TEST-NET-3 and 2001:db8::/32, with a few duplicates and bad rows.
    with open(path, "w", encoding="utf-8") as out:
        out.write("ip,port,protocol,hostname,asn,country,first_seen,source\n")
        for n in range(rows):
            if n % 1000 == 999:
                out.write(f"203.0.113.{n % 300},{n % 70000},smtp,,,,,bench\n")  # some are bad
            elif n % 10 == 0:
                out.write(f"2001:db8:{n >> 16:x}:{n & 0xFFFF:x}::1,3128,,,64500,NL,,bench\n")
            else:
                port = 1024 + (n // 256) % 60000
                out.write(f"203.0.113.{n % 256},{port},,h{n}.example,64496,GB,,bench\n")


def run(rows: int = 1_000_000) -> dict[str, float | int]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from campaign.intake import services

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.csv"
        write_csv(path, rows)
        started = time.perf_counter()
        batch = services.import_file(
            path_or_file=path, file_name="bench.csv", format="csv", campaign=None, actor=None
        )
        seconds = time.perf_counter() - started
        # Python-level peak of a second, traced pass over a slice: tracemalloc slows the import
        # several times over, so it stays out of the timed run.
        sample = Path(tmp) / "sample.csv"
        write_csv(sample, min(rows, 50_000))
        tracemalloc.start()
        services.import_file(
            path_or_file=sample, file_name="sample.csv", format="csv", campaign=None, actor=None
        )
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mb = rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
    return {
        "rows": rows,
        "kept": batch.rows_kept,
        "rejected": batch.rows_rejected,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds) if seconds else 0,
        "peak_rss_mb": round(rss_mb, 1),
        "peak_traced_mb_50k_rows": round(traced_peak / (1024 * 1024), 1),
    }
