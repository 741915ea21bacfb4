from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from campaign.intake import services
from campaign.models import ImportBatch
from scanning.models import Target


def _write(path: Path, rows: int, *, offset: int = 0) -> None:
    with open(path, "w") as out:
        out.write("ip,port,protocol,first_seen,source\n")
        for i in range(rows):
            n = i + offset
            if n % 10_000 == 1:
                out.write(f"198.51.100.{n % 256},70000,smtp,,bulk\n")  # a bad row in 10,000
            elif n % 3:
                out.write(f"192.0.2.{n // 65000},{1 + n % 65000},,2026-11-20T00:00:00Z,bulk\n")
            else:
                out.write(f"2001:db8::{n >> 16:x}:{n & 0xFFFF:x},25,,,bulk\n")


def _import(path: Path) -> ImportBatch:
    return services.import_file(
        path_or_file=path, file_name=path.name, format=None, campaign=None, actor=None
    )


@pytest.mark.django_db(transaction=True)
def test_a_100k_row_csv_imports(tmp_path: Path) -> None:
    rows = 100_000
    _write(tmp_path / "100k.csv", rows)
    batch = _import(tmp_path / "100k.csv")
    assert batch.status == ImportBatch.Status.DONE
    assert (batch.rows_total, batch.rows_kept, batch.rows_rejected) == (rows, rows - 10, 10)
    assert batch.targets.count() == Target.objects.count() == rows - 10
    assert batch.errors[0] == {"line": 3, "reason": "port 70000 out of range 1-65535"}


@pytest.mark.django_db(transaction=True)
def test_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    peaks = []
    for rows, offset in ((5_000, 0), (25_000, 5_000)):
        path = tmp_path / f"{rows}.csv"
        _write(path, rows, offset=offset)
        tracemalloc.start()
        try:
            assert _import(path).rows_total == rows
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    # Chunks of 2,000 rows: five times the rows, about the same peak.
    assert peaks[1] < peaks[0] * 1.5, [f"{p / 1e6:.1f} MB" for p in peaks]
