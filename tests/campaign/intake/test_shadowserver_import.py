from __future__ import annotations

from datetime import UTC, datetime

from campaign.models import ImportBatch
from scanning.models import Target
from tests.base import BaseTestCase
from tests.campaign.intake.helpers import run_import

HTTP_PROXY = "2026-11-20-scan_http_proxy-example_org-asn.csv"
SOCKS = "2026-11-20-scan_socks-example_org-asn.csv"
SMTP = "2026-11-20-scan_smtp-example_org-asn.csv"


class ShadowserverImportTestCase(BaseTestCase):
    def test_it_reads_the_open_http_proxy_report(self) -> None:
        batch = run_import(HTTP_PROXY)
        self.assertEqual(batch.format, "shadowserver")  # from the file name
        self.assertEqual((batch.rows_kept, batch.rows_rejected), (3, 1))
        self.assertEqual(batch.errors, [{"line": 5, "reason": "bad IP address '203.0.113.300'"}])
        proxy = Target.objects.get(ip="198.51.100.22", port=8080, protocol="http")
        self.assertEqual(proxy.sources, ["shadowserver:scan_http_proxy"])
        self.assertEqual((proxy.asn, proxy.geo_country), (64497, "DE"))
        self.assertEqual(proxy.first_seen, datetime(2026, 11, 20, 0, 1, 40, tzinfo=UTC))
        kept = proxy.source_data["shadowserver"]
        self.assertEqual(kept["timestamp"], "2026-11-20 00:01:40")
        self.assertEqual((kept["ip"], kept["port"], kept["geo"]), ("198.51.100.22", "8080", "DE"))
        self.assertEqual(kept["server"], "squid/5.7")
        self.assertEqual(kept["report"], "scan_http_proxy")
        self.assertNotIn("hostname", kept)  # empty columns are not kept

    def test_it_reads_the_accessible_socks_report(self) -> None:
        batch = run_import(SOCKS)
        self.assertEqual((batch.rows_kept, batch.rows_rejected), (3, 1))
        self.assertEqual(batch.errors, [{"line": 5, "reason": "port 0 out of range 1-65535"}])
        five = Target.objects.get(ip="192.0.2.140", port=1080)
        four = Target.objects.get(ip="192.0.2.141", port=4145)
        self.assertEqual((five.protocol, four.protocol), ("socks5", "socks4"))
        self.assertEqual(five.hostname, "socks.alpha-hosting.example")
        self.assertEqual(five.source_data["shadowserver"]["asn"], "64496")

    def test_it_reads_the_accessible_smtp_report_with_ipv6(self) -> None:
        batch = run_import(SMTP)
        self.assertEqual((batch.rows_kept, batch.rows_rejected), (4, 0))
        six = Target.objects.get(ip="2001:db8:25::25", port=587, protocol="smtp")
        self.assertEqual(six.source_data["shadowserver"]["severity"], "medium")
        self.assertEqual(six.source_data["shadowserver"]["tag"], "smtp;starttls")
        unknown = Target.objects.get(ip="203.0.113.25", port=25, protocol="smtp")
        self.assertEqual((unknown.asn, unknown.geo_country), (None, ""))  # 0 and ZZ: unknown

    def test_it_recognises_a_report_by_its_header(self) -> None:
        batch = run_import("shadowserver-export.csv")
        self.assertEqual(batch.format, "shadowserver")
        self.assertEqual(batch.rows_kept, 3)
        target = Target.objects.get(ip="198.51.100.142", port=1080)
        self.assertEqual(target.protocol, "socks5")  # from the tag column
        self.assertEqual(target.sources, ["shadowserver"])

    def test_other_reports_are_rejected(self) -> None:
        batch = run_import("2026-11-20-scan_ssh-example_org-asn.csv")
        self.assertEqual(batch.status, ImportBatch.Status.FAILED)
        self.assertIn("'scan_ssh' report", batch.failure)
        self.assertFalse(Target.objects.filter(ip="192.0.2.22").exists())

    def test_a_plain_csv_claimed_as_shadowserver_is_rejected(self) -> None:
        batch = run_import("targets.csv", format="shadowserver")
        self.assertEqual(batch.status, ImportBatch.Status.FAILED)
        self.assertIn("not a Shadowserver report", batch.failure)
        self.assertIn("'timestamp'", batch.failure)
        self.assertFalse(batch.targets.exists())
