from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from django.test import SimpleTestCase

from campaign.intake import services
from campaign.intake.parsers import guess_format
from campaign.intake.records import FileRejected
from campaign.intake.spam import parse_received
from campaign.models import ImportBatch
from scanning.models import Target
from tests.base import BaseTestCase
from tests.campaign.intake.helpers import run_import


class ReceivedHeaderTestCase(SimpleTestCase):
    def test_it_reads_the_common_mta_forms(self) -> None:
        cases = [
            # Postfix / Sendmail: from HELO (rdns [ip])
            (
                "from helo.example (relay.example.net [192.0.2.5]) by mx.example (Postfix)",
                ("192.0.2.5", "helo.example", "relay.example.net", "mx.example"),
            ),
            (
                "from laptop (unknown [198.51.100.9]) by mx.example (Postfix) with ESMTP id X",
                ("198.51.100.9", "laptop", "", "mx.example"),
            ),
            # Exim: from rdns ([ip]:port helo=HELO)
            (
                "from relay.example.net ([203.0.113.4]:53122 helo=fake.example) by mx.example "
                "with esmtp (Exim 4.96) id 1t",
                ("203.0.113.4", "fake.example", "relay.example.net", "mx.example"),
            ),
            # qmail
            (
                "from unknown (HELO box) (203.0.113.7) by mx.example with SMTP",
                ("203.0.113.7", "box", "", "mx.example"),
            ),
            # Exchange, IPv6 in parentheses
            (
                "from EX1.corp.example (2001:db8::5) by EX2.corp.example (2001:db8::6) with "
                "Microsoft SMTP Server id 15.2.1544.4",
                ("2001:db8::5", "ex1.corp.example", "", "ex2.corp.example"),
            ),
            # Sendmail, IPv6 literal
            (
                "from mx6.example (mx6.example [IPv6:2001:db8:25::1]) by mail.example "
                "(8.17.1/8.17.1) with ESMTPS id 4AJ",
                ("2001:db8:25::1", "mx6.example", "mx6.example", "mail.example"),
            ),
        ]
        for text, (ip, helo, rdns, by) in cases:
            with self.subTest(text=text):
                hop = parse_received(1, text + "; Wed, 18 Nov 2026 09:14:05 +0000")
                self.assertEqual((hop.ip, hop.helo, hop.rdns, hop.by), (ip, helo, rdns, by))
                self.assertEqual(hop.at, datetime(2026, 11, 18, 9, 14, 5, tzinfo=UTC))

    def test_a_local_submission_has_no_hop(self) -> None:
        hop = parse_received(1, "by mail.example (Postfix, from userid 1000) id 5; 18 Nov 2026")
        self.assertIsNone(hop.ip)

    def test_it_guesses_the_format(self) -> None:
        self.assertEqual(guess_format("2026-11-20-scan_smtp-x-asn.csv", b"x"), "shadowserver")
        self.assertEqual(guess_format("a.eml", b""), "eml")
        self.assertEqual(guess_format("a.mbox", b""), "mbox")
        self.assertEqual(guess_format("upload", b"From x Tue Nov 17 2026\nReceived: a"), "mbox")
        self.assertEqual(guess_format("upload", b"Received: from a by b; x\r\n"), "eml")
        self.assertEqual(guess_format("upload", b"ip,port\n192.0.2.1,25\n"), "csv")
        self.assertEqual(
            guess_format("upload.txt", b'"timestamp","ip","port","tag","geo"\n'), "shadowserver"
        )
        with self.assertRaises(FileRejected):
            guess_format("notes.txt", b"hello world\n")


class SpamSampleImportTestCase(BaseTestCase):
    def test_it_imports_real_hops_and_reports_forged_ones(self) -> None:
        batch = run_import("spam-forged.eml")
        self.assertEqual(batch.format, "eml")
        self.assertEqual((batch.rows_kept, batch.rows_rejected), (2, 2))
        ips = set(batch.targets.values_list("ip", "port", "protocol"))
        self.assertEqual(ips, {("192.0.2.25", 25, "smtp"), ("198.51.100.77", 25, "smtp")})
        # Our own MX (10.20.0.5) and the spammer's LAN (192.168.1.17) are never suspects.
        self.assertFalse(Target.objects.filter(ip__in=["10.20.0.5", "192.168.1.17"]).exists())
        self.assertEqual(batch.errors[0]["line"], 15)
        self.assertIn("hop 203.0.113.66 not imported", batch.errors[0]["reason"])
        self.assertIn("forged", batch.errors[0]["reason"])
        self.assertEqual(batch.errors[1]["line"], 18)
        self.assertIn("below the broken chain at line 15", batch.errors[1]["reason"])
        relay = Target.objects.get(ip="192.0.2.25", port=25, protocol="smtp")
        self.assertEqual(relay.hostname, "relay.alpha-hosting.example")
        self.assertEqual(relay.sources, ["spam-sample"])
        self.assertEqual(relay.first_seen, datetime(2026, 11, 18, 9, 14, 5, tzinfo=UTC))
        spam = relay.source_data["spam"]
        self.assertEqual(spam["message_id"], "<20261118091338.4411@ws.bank-secure.example>")
        self.assertEqual(spam["by"], "mx1.regulator.example")

    def test_configured_own_domains_are_not_suspects(self) -> None:
        batch = run_import("spam-forged.eml", own_domains=["alpha-hosting.example"])
        self.assertEqual(set(batch.targets.values_list("ip", flat=True)), {"198.51.100.77"})

    def test_it_reads_ipv6_hops(self) -> None:
        batch = run_import("spam-ipv6.eml")
        self.assertEqual((batch.rows_kept, batch.rows_rejected), (1, 0))
        target = batch.targets.get()
        self.assertEqual((target.ip, target.port, target.protocol), ("2001:db8:25::1", 25, "smtp"))
        self.assertEqual(target.hostname, "mx6.example")

    def test_it_reads_every_message_of_an_mbox(self) -> None:
        batch = run_import("samples.mbox")
        self.assertEqual(batch.format, "mbox")
        self.assertEqual((batch.rows_kept, batch.rows_rejected), (4, 1))
        reason = "bad IP address '300.1.2.3' in the Received header"
        self.assertEqual(batch.errors, [{"line": 34, "reason": reason}])
        self.assertEqual(
            set(batch.targets.values_list("ip", flat=True)),
            {"198.51.100.25", "203.0.113.9", "192.0.2.140"},
        )
        # mx2.regulator.example has a public address, but it is the receiving side's own host.
        self.assertFalse(Target.objects.filter(ip="203.0.113.200").exists())
        twice = Target.objects.get(ip="198.51.100.25", port=25, protocol="smtp")
        self.assertEqual(twice.first_seen, datetime(2026, 11, 17, 9, 59, 58, tzinfo=UTC))
        self.assertEqual(twice.last_seen, datetime(2026, 11, 18, 10, 59, tzinfo=UTC))
        self.assertEqual(twice.hostname, "smtp.beta-isp.example")

    def test_undecodable_bytes_in_a_received_header_fail_that_hop(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "sample.eml"
            path.write_bytes(
                b"Received: from a.example (a.example [192.0.2.70]) by mx.regulator.example;"
                b" Wed, 18 Nov 2026 09:00:00 +0000\n"
                b"Received: from b\xff\xfe.example (b.example [192.0.2.71]) by a.example;"
                b" Wed, 18 Nov 2026 08:59:00 +0000\n"
                b"Subject: x\n\nbody\n"
            )
            batch = services.import_file(
                path_or_file=path, file_name="sample.eml", format=None, campaign=None, actor=None
            )
        self.assertEqual((batch.rows_kept, batch.rows_rejected), (1, 1))
        self.assertEqual(
            batch.errors, [{"line": 2, "reason": "undecodable bytes in the Received header"}]
        )

    def test_a_file_claimed_as_mail_that_is_not_is_rejected(self) -> None:
        batch = run_import("targets.csv", format="eml")
        self.assertEqual(batch.status, ImportBatch.Status.FAILED)
        self.assertIn("not an e-mail message", batch.failure)
        batch = run_import("spam-forged.eml", format="mbox")
        self.assertEqual(batch.status, ImportBatch.Status.FAILED)
        self.assertIn("use --format eml", batch.failure)
        self.assertFalse(batch.targets.exists())
