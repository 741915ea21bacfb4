"""Regression tests for defects found in review of intake, attribution and case settling."""

from __future__ import annotations

import io
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from django.utils import timezone

from campaign import services
from campaign.attribution.services import targets_attribute
from campaign.intake import services as intake
from campaign.models import Attribution, Case, Contact, ImportBatch, ServerOwner, Suppression
from scanning.models import Finding, Target
from tests.base import BaseTestCase
from tests.campaign.attribution.base import AttributionTestCase


def import_bytes(name: str, data: bytes, format: str | None = None) -> ImportBatch:
    return intake.import_file(
        path_or_file=io.BytesIO(data), file_name=name, format=format, campaign=None, actor=None
    )


def padding_rows(count: int) -> bytes:
    # Good rows to push a later row past the 64 KiB the format guess reads, and past a chunk.
    return b"".join(b"192.0.2.%d,%d,,\n" % (i % 250 + 1, 1000 + i) for i in range(count))


class IntakeReviewTestCase(BaseTestCase):
    def test_an_ipv6_zone_id_is_a_bad_row_not_a_second_key_for_one_address(self) -> None:
        # Stored without its zone id, "2001:db8::1%eth0" overwrote the merged sources of
        # 2001:db8::1 (and PostgreSQL refused the chunk: one row updated twice).
        import_bytes("first.csv", b"ip,port,source\n2001:db8::1,25,feed-a\n")
        batch = import_bytes(
            "zone.csv", b"ip,port,source\n2001:db8::1,25,feed-a\n2001:db8::1%eth0,25,feed-b\n"
        )
        self.assertEqual(batch.status, ImportBatch.Status.DONE)
        self.assertEqual((batch.rows_kept, batch.rows_rejected), (1, 1))
        self.assertEqual(batch.errors[0]["line"], 3)
        self.assertIn("zone id", batch.errors[0]["reason"])
        target = Target.objects.get(ip="2001:db8::1", port=25, protocol="smtp")
        self.assertEqual(target.sources, ["feed-a"])

    def test_ports_and_asns_are_ascii_digits_only(self) -> None:
        batch = import_bytes(
            "ports.csv",
            "ip,port,asn\n192.0.2.1,\u066525,\n192.0.2.2,2_5,\n192.0.2.3,25,AS\u00b2\n".encode(),
        )
        self.assertEqual(batch.status, ImportBatch.Status.DONE)
        self.assertEqual(batch.rows_kept, 0)
        self.assertEqual(
            batch.errors,
            [
                {"line": 2, "reason": "bad port '\u066525'"},  # int() read it as 525
                {"line": 3, "reason": "bad port '2_5'"},
                {"line": 4, "reason": "bad ASN 'AS\u00b2'"},  # int() raised ValueError
            ],
        )

    def test_a_bad_row_after_a_stored_chunk_does_not_stop_the_file(self) -> None:
        data = b"ip,port,asn,note\n" + padding_rows(2500) + b"192.0.2.9,25,AS\xc2\xb2,\n"
        batch = import_bytes("late.csv", data + b"192.0.2.10,25,,\n")
        self.assertEqual(batch.status, ImportBatch.Status.DONE)
        self.assertEqual((batch.rows_kept, batch.rows_rejected), (2501, 1))
        self.assertEqual(batch.errors, [{"line": 2502, "reason": "bad ASN 'AS\u00b2'"}])

    def test_a_nul_byte_past_the_head_fails_its_row_only(self) -> None:
        data = b"ip,port,hostname,note\n" + padding_rows(5000)
        batch = import_bytes("nul.csv", data + b"192.0.2.9,25,h\x00st,n\x00te\n192.0.2.10,25,,\n")
        self.assertEqual(batch.status, ImportBatch.Status.DONE)
        self.assertEqual((batch.rows_kept, batch.rows_rejected), (5001, 1))
        self.assertEqual(batch.errors[0]["line"], 5002)
        self.assertIn("NUL", batch.errors[0]["reason"])
        self.assertFalse(Target.objects.filter(ip="192.0.2.9", port=25).exists())

    def test_a_timestamp_outside_what_the_database_stores_is_a_bad_row(self) -> None:
        batch = import_bytes(
            "old.csv",
            b"ip,port,first_seen\n192.0.2.1,25,0001-01-01T00:00:00+14:00\n"
            b"192.0.2.2,25,9999-12-31T23:59:00-14:00\n192.0.2.3,25,2026-11-03 10:00:00+01:00\n",
        )
        self.assertEqual(batch.status, ImportBatch.Status.DONE)
        self.assertEqual([e["line"] for e in batch.errors], [2, 3])
        target = Target.objects.get(ip="192.0.2.3", port=25)
        self.assertEqual(target.first_seen, datetime(2026, 11, 3, 9, 0, tzinfo=UTC))

    def test_a_line_over_a_megabyte_is_one_error_and_keeps_the_line_numbers(self) -> None:
        data = b"ip,port\n" + b"1" * (3 * 1024 * 1024) + b"\n192.0.2.1,25\n192.0.2.2,bad\n"
        batch = import_bytes("long.csv", data)
        self.assertEqual(batch.status, ImportBatch.Status.DONE)
        self.assertEqual((batch.rows_total, batch.rows_kept), (3, 1))
        self.assertEqual(
            batch.errors,
            [
                {"line": 2, "reason": "line longer than 1 MB"},
                {"line": 4, "reason": "bad port 'bad'"},
            ],
        )

    def test_a_file_with_bare_cr_line_ends_fails_with_a_message(self) -> None:
        batch = import_bytes("mac.csv", b"ip,port\r192.0.2.1,25\r192.0.2.2,25\r")
        self.assertEqual(batch.status, ImportBatch.Status.FAILED)
        self.assertIn("line ends", batch.failure)
        self.assertEqual(batch.targets.count(), 0)

    def test_a_received_date_that_overflows_is_ignored_not_fatal(self) -> None:
        message = (
            b"Received: from x ([198.51.100.7]) by mx.own.example;"
            b" Mon, 1 Jan 99999999999999999999 00:00:00 +0000\r\n"
            b"Received: from y ([203.0.113.7]) by x; Mon, 1 Jan 0001 00:00:00 +1400\r\n"
            b"Date: Mon, 1 Jan 2026 99999999999999999999:00:00 +0000\r\n"
            b"Subject: s\r\n\r\nbody\r\n"
        )
        batch = import_bytes("overflow.eml", message)
        self.assertEqual(batch.status, ImportBatch.Status.DONE)
        self.assertEqual(batch.rows_kept, 2)

    def test_an_undecodable_message_id_is_stored_as_text(self) -> None:
        message = (
            b"Received: from x ([198.51.100.7]) by mx.own.example;"
            b" Mon, 1 Jan 2026 00:00:00 +0000\r\n"
            b"Message-ID: <\xff@x>\r\nSubject: s\r\n\r\nbody\r\n"
        )
        batch = import_bytes("latin1.eml", message)
        self.assertEqual(batch.status, ImportBatch.Status.DONE)
        target = Target.objects.get(ip="198.51.100.7", port=25)
        self.assertEqual(target.source_data["spam"]["message_id"], "<\ufffd@x>")


class SettleReviewTestCase(BaseTestCase):
    def test_settling_matches_a_suppressed_address_in_any_case(self) -> None:
        Suppression.objects.create(
            partner=self.alpha, email="Abuse@Alpha.example", reason=Suppression.Reason.OPT_OUT
        )
        case = services.case_settle(case=self.alpha_case)
        self.assertEqual(case.status, Case.Status.SUPPRESSED)

    def test_the_partner_agencys_address_keeps_no_letter_going(self) -> None:
        owner = self.alpha_case.server_owner
        Contact.objects.create(
            server_owner=owner, position=1, kind=Contact.Kind.PARTNER, email="desk@alpha.example"
        )
        Suppression.objects.create(
            partner=self.alpha, email="abuse@alpha.example", reason=Suppression.Reason.OPT_OUT
        )
        case = services.case_settle(case=self.alpha_case)
        self.assertEqual(case.status, Case.Status.SUPPRESSED)

    def test_an_owner_with_only_the_partner_agency_has_no_usable_contact(self) -> None:
        owner = ServerOwner.objects.create(name="Gamma", country="GB", partner=self.alpha)
        Contact.objects.create(
            server_owner=owner, position=0, kind=Contact.Kind.PARTNER, email="desk@alpha.example"
        )
        now = timezone.now()
        target = Target.objects.create(
            ip="192.0.2.44", port=25, protocol="smtp", first_seen=now, last_seen=now
        )
        finding = Finding.objects.create(
            target=target,
            protocol="smtp",
            verdict="confirmed-open",
            evidence_level="strong",
            probed_at=now,
        )
        case = services.case_add_finding(campaign=self.campaign, owner=owner, finding=finding)
        self.assertEqual(case.status, Case.Status.NEEDS_REVIEW)
        self.assertEqual(case.review_reason, "No usable contact.")


class RdapReviewTestCase(AttributionTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.tmp = tempfile.TemporaryDirectory()
        deep = Path(cls.tmp.name) / "deep.json"
        deep.write_bytes(b"[" * 200_000 + b"]" * 200_000)
        odd = Path(cls.tmp.name) / "odd.json"
        odd.write_text(
            json.dumps(
                {
                    "objectClassName": "ip network",
                    "handle": "NET-ODD",
                    "startAddress": "198.51.100.151",
                    "endAddress": "198.51.100.151",
                    "entities": [
                        {
                            "roles": ["registrant"],
                            "handle": "ODD",
                            "vcardArray": ["vcard", [[["fn"], {}, "text", "Odd Org"]]],
                        }
                    ],
                }
            )
        )
        cls.arin.route("ip/198.51.100.150", 200, str(deep))
        cls.arin.route("ip/198.51.100.151", 200, str(odd))

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        cls.tmp.cleanup()

    def test_a_hostile_answer_is_an_error_on_its_target_not_the_batch(self) -> None:
        deep = self.make_target("198.51.100.150")
        odd = self.make_target("198.51.100.151")
        good = self.make_target("192.0.2.77")
        counts = targets_attribute(targets=[deep, odd, good]).counts()
        self.assertEqual((counts["errors"], counts["attributed"]), (2, 1))
        errors = dict(Attribution.objects.values_list("target__ip", "error"))
        self.assertTrue(errors["198.51.100.150"].startswith("error: "))
        self.assertTrue(errors["198.51.100.151"].startswith("error: "))
        self.assertEqual(errors["192.0.2.77"], "")


class ShortRowsTestCase(BaseTestCase):
    def test_a_row_without_its_empty_trailing_cells_is_kept(self) -> None:
        from campaign.intake.services import import_file

        data = b"ip,port,protocol,hostname,asn,country\n192.0.2.31,25\n192.0.2.32\n"
        batch = import_file(
            path_or_file=io.BytesIO(data),
            file_name="short.csv",
            format="csv",
            campaign=None,
            actor=None,
        )
        self.assertEqual((batch.rows_kept, batch.rows_rejected), (1, 1))
        self.assertEqual(batch.errors, [{"line": 3, "reason": "missing column 'port'"}])
        self.assertTrue(Target.objects.filter(ip="192.0.2.31", port=25).exists())
