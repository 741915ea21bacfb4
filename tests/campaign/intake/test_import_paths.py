"""PostgreSQL's path (COPY into a staging table, one INSERT ... ON CONFLICT per chunk) and the
simpler ORM path store the same targets and report the same bad lines."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from unittest import mock

from django.db import connection, transaction

from campaign.intake import bulk, store
from scanning.models import Target
from tests.base import BaseTestCase
from tests.campaign.intake.helpers import run_import

FILES = (
    "targets.csv",
    "2026-11-20-scan_smtp-example_org-asn.csv",
    "2026-11-20-scan_http_proxy-example_org-asn.csv",
    "2026-11-20-scan_socks-example_org-asn.csv",
    "malformed.csv",
    "tricky.csv",  # quoted, multi-line, short and long records; forms SQL leaves to Python
    "2026-11-21-scan_socks-tricky.csv",
    "targets.csv",  # again: merging is idempotent
)
FIELDS = (
    "ip",
    "port",
    "protocol",
    "hostname",
    "asn",
    "geo_country",
    "first_seen",
    "last_seen",
    "sources",
    "source_data",
)


class _Rollback(Exception):
    pass


class ImportPathsTestCase(BaseTestCase):
    maxDiff = None

    def imported(self) -> tuple[list[Any], list[Any]]:
        outcome: tuple[list[Any], list[Any]] = ([], [])
        now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # rows without a date are seen "now"
        try:
            with mock.patch("campaign.intake.services.timezone.now", return_value=now):
                with transaction.atomic():
                    batches = [run_import(name) for name in FILES]
                    targets = Target.objects.order_by("ip", "port", "protocol")
                    outcome = (
                        list(targets.values_list(*FIELDS)),
                        [
                            (
                                b.rows_total,
                                b.rows_kept,
                                b.rows_rejected,
                                b.errors,
                                b.targets.count(),
                            )
                            for b in batches
                        ],
                    )
                    raise _Rollback
        except _Rollback:
            pass
        return outcome

    def test_it_stores_the_same_on_both_paths(self) -> None:
        if connection.vendor != "postgresql":
            self.skipTest("the COPY path needs PostgreSQL")
        fast = self.imported()
        simple_connection = SimpleNamespace(
            vendor="sqlite", ops=connection.ops, cursor=connection.cursor
        )
        with mock.patch.object(store, "connection", simple_connection):
            simple = self.imported()
        self.assertGreater(len(fast[0]), 5)
        self.assertTrue(any(b[2] for b in fast[1]))  # malformed.csv has bad lines
        self.assertEqual(fast, simple)

    def test_chunk_boundaries_change_nothing(self) -> None:
        """Records split over many small chunks (duplicates in different chunks, Python's rows
        staged a few at a time) store what one chunk does."""
        if connection.vendor != "postgresql":
            self.skipTest("the COPY path needs PostgreSQL")
        whole = self.imported()
        with (
            mock.patch.object(bulk, "CHUNK_ROWS", 3),
            mock.patch.object(bulk, "FETCH_ROWS", 1),
            mock.patch.object(bulk, "WRITE_LINES", 2),
        ):
            chunked = self.imported()
        self.assertEqual(whole, chunked)
