from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from campaign.intake import services
from campaign.models import ImportBatch
from scanning.models import Target
from tests.base import BaseTestCase
from tests.campaign.intake.helpers import FIXTURES, run_import


def _target(ip: str, port: int, protocol: str) -> Target:
    return Target.objects.get(ip=ip, port=port, protocol=protocol)


class CsvImportTestCase(BaseTestCase):
    def test_it_imports_a_suspect_list(self) -> None:
        before = Target.objects.count()
        batch = run_import("targets.csv", campaign=self.campaign)
        self.assertEqual(batch.status, ImportBatch.Status.DONE)
        self.assertEqual(batch.format, "csv")
        self.assertEqual((batch.rows_total, batch.rows_kept, batch.rows_rejected), (7, 7, 0))
        self.assertEqual(batch.errors, [])
        self.assertEqual(batch.campaign, self.campaign)
        self.assertEqual(batch.targets.count(), 7)
        self.assertEqual(Target.objects.count(), before + 7)
        proxy = _target("198.51.100.80", 3128, "http")
        self.assertEqual(proxy.hostname, "proxy.beta.example")
        self.assertEqual((proxy.asn, proxy.geo_country), (64497, "DE"))
        self.assertEqual(proxy.first_seen, datetime(2026, 11, 3, 10, 0, tzinfo=UTC))
        self.assertEqual(proxy.sources, ["partner-de"])

    def test_it_guesses_the_protocol_from_the_port(self) -> None:
        run_import("targets.csv")
        self.assertEqual(_target("203.0.113.10", 1080, "socks5").sources, ["csv"])
        _target("203.0.113.11", 4145, "socks4")
        _target("2001:db8::beef", 8080, "http")  # "[2001:DB8::BEEF]", protocol "HTTP"

    def test_it_takes_ipv6_and_unpacks_mapped_ipv4(self) -> None:
        run_import("targets.csv")
        six = _target("2001:db8:25::1", 587, "smtp")
        self.assertEqual(six.first_seen, datetime(2026, 11, 5, 11, 0, tzinfo=UTC))
        self.assertEqual(six.geo_country, "NL")
        _target("192.0.2.99", 25, "smtp")  # given as ::ffff:192.0.2.99

    def test_it_reports_bad_rows_with_their_line_and_keeps_the_good_ones(self) -> None:
        batch = run_import("malformed.csv")
        self.assertEqual(batch.status, ImportBatch.Status.DONE)
        self.assertEqual((batch.rows_total, batch.rows_kept, batch.rows_rejected), (10, 2, 8))
        self.assertEqual(
            batch.errors,
            [
                {"line": 3, "reason": "bad IP address 'not-an-ip'"},
                {"line": 4, "reason": "port 0 out of range 1-65535"},
                {"line": 5, "reason": "port 70000 out of range 1-65535"},
                {"line": 6, "reason": "missing column 'port'"},
                {"line": 7, "reason": "undecodable bytes (the file must be UTF-8)"},
                {
                    "line": 8,
                    "reason": "unknown protocol 'gopher' (smtp, http, socks4, socks5 or empty)",
                },
                {"line": 10, "reason": "bad IP address '999.1.2.3'"},
                {"line": 12, "reason": "bad port 'abc'"},  # after a blank line 11
            ],
        )
        self.assertEqual(
            sorted(batch.targets.values_list("ip", flat=True)), ["192.0.2.1", "192.0.2.7"]
        )

    def test_it_keeps_extra_columns_on_the_target(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "extra.csv"
            path.write_text("ip;port;note\n192.0.2.50;25;seen in honeypot 3\n")
            batch = services.import_file(
                path_or_file=path, file_name="extra.csv", format=None, campaign=None, actor=None
            )
        self.assertEqual(batch.rows_kept, 1)
        target = _target("192.0.2.50", 25, "smtp")
        self.assertEqual(target.source_data, {"csv": {"note": "seen in honeypot 3"}})

    def test_it_caps_the_stored_error_list(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bad.csv"
            path.write_text("ip,port\n" + "nope,25\n" * 1500 + "192.0.2.60,25\n")
            batch = services.import_file(
                path_or_file=path, file_name="bad.csv", format="csv", campaign=None, actor=None
            )
        self.assertEqual((batch.rows_kept, batch.rows_rejected), (1, 1500))
        self.assertEqual(len(batch.errors), services.MAX_ERRORS + 1)
        self.assertEqual(batch.errors[0], {"line": 2, "reason": "bad IP address 'nope'"})
        self.assertEqual(
            batch.errors[-1],
            {"line": None, "reason": "… and 500 more rejected rows not listed"},
        )


class DuplicateMergeTestCase(BaseTestCase):
    def test_a_duplicate_merges_into_the_existing_target(self) -> None:
        existing = _target("192.0.2.10", 25, "smtp")  # from tests/base.py, found "now"
        existing.first_seen = datetime(2026, 11, 10, tzinfo=UTC)
        existing.last_seen = datetime(2026, 11, 10, tzinfo=UTC)
        existing.sources = ["scan"]
        existing.source_data = {"scan": {"run": 1}}
        existing.save()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "dupes.csv"
            path.write_text(
                "ip,port,protocol,first_seen,source,asn\n"
                "192.0.2.10,25,smtp,2026-11-01T00:00:00Z,partner-gb,64496\n"
                "192.0.2.10,25,smtp,2026-11-20T00:00:00Z,honeypot,\n"
                "192.0.2.10,25,smtp,2026-11-15T00:00:00Z,partner-gb,\n"
            )
            for _ in range(2):  # importing the same file again changes nothing more
                batch = services.import_file(
                    path_or_file=path,
                    file_name="dupes.csv",
                    format=None,
                    campaign=None,
                    actor=None,
                )
        existing.refresh_from_db()
        self.assertEqual(batch.rows_kept, 3)
        self.assertEqual(batch.targets.count(), 1)
        self.assertEqual(Target.objects.filter(ip="192.0.2.10").count(), 1)
        self.assertEqual(existing.first_seen, datetime(2026, 11, 1, tzinfo=UTC))
        self.assertEqual(existing.last_seen, datetime(2026, 11, 20, tzinfo=UTC))
        self.assertEqual(existing.sources, ["scan", "partner-gb", "honeypot"])
        self.assertEqual(existing.asn, 64496)
        self.assertEqual(existing.source_data, {"scan": {"run": 1}})

    def test_feeds_merge_sources_and_source_data(self) -> None:
        run_import("targets.csv")
        run_import("2026-11-20-scan_smtp-example_org-asn.csv")
        target = _target("192.0.2.25", 25, "smtp")
        self.assertEqual(target.sources, ["partner-gb", "shadowserver:scan_smtp"])
        self.assertEqual(target.first_seen, datetime(2026, 11, 2, 8, 15, tzinfo=UTC))
        self.assertEqual(target.last_seen, datetime(2026, 11, 20, 5, 44, 31, tzinfo=UTC))
        self.assertEqual(target.source_data["shadowserver"]["report"], "scan_smtp")
        run_import("spam-forged.eml")
        target.refresh_from_db()
        self.assertEqual(target.sources, ["partner-gb", "shadowserver:scan_smtp", "spam-sample"])
        self.assertEqual(set(target.source_data), {"shadowserver", "spam"})
        self.assertEqual(target.last_seen, datetime(2026, 11, 20, 5, 44, 31, tzinfo=UTC))


class RejectedFileTestCase(BaseTestCase):
    def assert_rejected(self, batch: ImportBatch, *phrases: str) -> None:
        self.assertEqual(batch.status, ImportBatch.Status.FAILED)
        for phrase in phrases:
            self.assertIn(phrase, batch.failure)
        self.assertEqual((batch.rows_total, batch.rows_kept, batch.rows_rejected), (0, 0, 0))
        self.assertEqual(batch.errors, [])
        self.assertFalse(batch.targets.exists())
        self.assertIsNotNone(batch.finished_at)

    def test_a_csv_without_an_ip_column_stores_nothing(self) -> None:
        before = Target.objects.count()
        batch = run_import("no-ip-column.csv")
        self.assert_rejected(batch, "no 'ip' column", "address, port")
        self.assertEqual(Target.objects.count(), before)

    def test_a_pdf_stores_nothing_whatever_it_claims(self) -> None:
        before = Target.objects.count()
        for format in (None, "csv", "shadowserver", "eml", "mbox"):
            with self.subTest(format=format):
                self.assert_rejected(run_import("not-a-csv.pdf", format=format), "PDF")
        with tempfile.TemporaryDirectory() as tmp:
            renamed = Path(tmp) / "suspects.csv"
            renamed.write_bytes((FIXTURES / "not-a-csv.pdf").read_bytes())
            batch = services.import_file(
                path_or_file=renamed,
                file_name="suspects.csv",
                format=None,
                campaign=None,
                actor=None,
            )
        self.assert_rejected(batch, "suspects.csv is a PDF document")
        self.assertEqual(Target.objects.count(), before)

    def test_csv_claimed_for_an_mbox_stores_nothing(self) -> None:
        self.assert_rejected(run_import("samples.mbox", format="csv"), "mbox", "not a CSV")
        self.assert_rejected(run_import("spam-forged.eml", format="csv"), "e-mail message")

    def test_an_empty_file_is_rejected(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "empty.csv"
            path.write_bytes(b"\n\n")
            batch = services.import_file(
                path_or_file=path, file_name="empty.csv", format=None, campaign=None, actor=None
            )
        self.assert_rejected(batch, "empty")

    def test_a_header_only_csv_is_done_with_nothing(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "header.csv"
            path.write_bytes(b"\xef\xbb\xbfip,port\r\n")
            batch = services.import_file(
                path_or_file=path,
                file_name="header.csv",
                format=None,
                campaign=None,
                actor=None,
            )
        self.assertEqual(batch.status, ImportBatch.Status.DONE)
        self.assertEqual(batch.rows_total, 0)
