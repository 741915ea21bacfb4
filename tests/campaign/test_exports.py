from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from openpyxl import load_workbook

from campaign import exports, services
from campaign.models import Case, CaseEvent, Contact
from scanning.models import Finding, Target
from tests.base import BaseTestCase

UTC = dt.UTC
HARMONIZATION = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "intelmq" / "harmonization.json").read_text()
)


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("export_cases", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def rows_of(text: str) -> list[dict[str, str]]:
    lines = text.splitlines(keepends=True)
    assert lines[-1].startswith("# complete: "), lines[-1]
    return list(csv.DictReader(lines[:-1]))


def at(month: int, day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, 0, 0, 654321, tzinfo=UTC)


class ExportTestCase(BaseTestCase):
    """Alpha (GB, Europe/London) has a case with a history: two letters (the first bounced), a
    reminder, an escalation, three findings on two servers (one re-checked closed)."""

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.alpha.time_zone = "Europe/London"
        cls.alpha.save()
        case = cls.alpha_case
        owner = case.server_owner
        Contact.objects.filter(server_owner=owner).update(bounced_at=at(7, 1, 13))
        Contact.objects.create(
            server_owner=owner, position=1, kind="network", email="noc@a.example"
        )
        smtp = Finding.objects.get(cases=case)
        Finding.objects.filter(pk=smtp.pk).update(probed_at=at(6, 30), software_family="Postfix")
        proxy_target = Target.objects.create(
            ip="192.0.2.11", port=3128, protocol="http", first_seen=at(6, 1), last_seen=at(6, 30)
        )
        proxy = Finding.objects.create(
            target=proxy_target,
            protocol="http",
            verdict="likely-open",
            evidence_level="medium",
            probed_at=at(6, 30, 11),
        )
        recheck = Finding.objects.create(
            target=smtp.target,
            protocol="smtp",
            verdict="closed",
            evidence_level="none",
            probed_at=at(8, 2),
        )
        case.findings.add(proxy, recheck)
        events = [
            ("letter_queued", at(7, 1, 10), "", ""),
            ("letter_sent", at(7, 1, 11), "", ""),
            ("status_changed", at(7, 1, 11), "ready", "notified"),
            ("letter_bounced", at(7, 1, 13), "", ""),
            ("letter_queued", at(7, 1, 14), "", ""),
            ("letter_sent", at(7, 1, 15), "", ""),
            ("letter_delivered", at(7, 1, 16), "", ""),
            ("status_changed", at(7, 22), "notified", "reminded"),
            ("note", at(7, 23), "reminded", "reminded"),
            ("status_changed", at(8, 1), "reminded", "escalated"),
        ]
        for kind, when, from_status, to_status in events:
            CaseEvent.objects.create(
                case=case, kind=kind, at=when, from_status=from_status, to_status=to_status
            )
        Case.objects.filter(pk=case.pk).update(
            status="escalated", next_action_at=at(9, 1), opened_at=at(6, 30, 12)
        )


class ExportCommandTestCase(ExportTestCase):
    def test_it_writes_one_partners_cases_with_labels_codes_and_local_dates(self) -> None:
        rows = rows_of(export("--partner", "gb"))
        self.assertEqual(len(rows), 1)
        row = rows[0]
        expected = {
            "reference": self.alpha_case.reference,
            "status": "Escalated",
            "status_code": "escalated",
            "partner": "GB",
            "owner": "Alpha Hosting",
            "contact": "noc@a.example",  # the first contact bounced
            "servers": "2",
            "findings": "3",
            "kinds": "Open SMTP relay; Open HTTP proxy",
            "kind_codes": "smtp http",
            "strongest_verdict": "Confirmed open",
            "strongest_verdict_code": "confirmed-open",
            "letter_status": "Delivered",
            "letter_status_code": "delivered",
            "letter_sent_at": "2026-07-01T12:00:00+01:00",  # the first letter, BST, no micros
            "letter_delivered_at": "2026-07-01T17:00:00+01:00",
            "letter_bounced_at": "2026-07-01T14:00:00+01:00",
            "reminder_sent_at": "2026-07-22T13:00:00+01:00",
            "last_check_at": "2026-08-02T13:00:00+01:00",
            "last_check_result": "Closed",
            "last_check_result_code": "closed",
            "fixed_at": "",
            "escalated_at": "2026-08-01T13:00:00+01:00",
            "next_deadline": "2026-09-01T13:00:00+01:00",
            "opened_at": "2026-06-30T13:00:00+01:00",
        }
        self.assertEqual({k: row[k] for k in expected}, expected)

    def test_it_writes_one_row_per_finding_with_the_last_check_of_its_service(self) -> None:
        rows = rows_of(export("--partner", "GB", "--shape", "findings"))
        self.assertEqual(
            [(r["ip"], r["port"], r["kind_code"], r["verdict"]) for r in rows],
            [
                ("192.0.2.11", "3128", "http", "Likely open"),
                ("192.0.2.10", "25", "smtp", "Confirmed open"),
                ("192.0.2.10", "25", "smtp", "Closed"),
            ],
        )
        smtp = rows[1]
        self.assertEqual(smtp["software"], "Postfix")
        self.assertEqual(smtp["evidence_level"], "Strong (our canary)")
        self.assertEqual(smtp["probed_at"], "2026-06-30T13:00:00+01:00")
        self.assertEqual(smtp["last_check_at"], "2026-08-02T13:00:00+01:00")
        self.assertEqual(smtp["last_check_result_code"], "closed")
        self.assertEqual(rows[0]["first_seen"], "2026-06-01T13:00:00+01:00")
        self.assertEqual(rows[0]["last_check_result"], "Likely open")

    def test_the_trailer_counts_the_rows_so_a_cut_file_shows(self) -> None:
        text = export("--shape", "findings")
        self.assertTrue(text.endswith("# complete: 4 rows\n"))  # three of alpha's, one of beta's

    def test_every_partner_without_the_option_in_the_lead_agencys_zone(self) -> None:
        self.lead.time_zone = "America/New_York"
        self.lead.save()
        rows = rows_of(export())
        self.assertEqual(
            [r["reference"] for r in rows], [self.alpha_case.reference, self.beta_case.reference]
        )
        self.assertEqual(rows[0]["opened_at"], "2026-06-30T08:00:00-04:00")

    def test_json_lines_use_intelmq_field_names(self) -> None:
        lines = export("--format", "json", "--shape", "findings").splitlines()
        events = [json.loads(line) for line in lines]
        self.assertEqual(len(events), 4)
        fields = HARMONIZATION["event"]
        for event in events:
            for key in event:
                self.assertTrue(key in fields or key.startswith("extra."), key)
            self.assertIn(
                event["classification.taxonomy"], HARMONIZATION["classification.taxonomy"]
            )
            self.assertIn(event["classification.type"], HARMONIZATION["classification.type"])
            self.assertNotIn(None, event.values())
        proxy = events[0]
        self.assertEqual(
            (proxy["source.ip"], proxy["source.port"], proxy["protocol.application"]),
            ("192.0.2.11", 3128, "http"),
        )
        self.assertEqual(proxy["classification.identifier"], "open-http-proxy")
        self.assertEqual(proxy["time.source"], "2026-06-30T11:00:00+00:00")  # the lead's UTC
        self.assertEqual(proxy["extra.case"], self.alpha_case.reference)
        self.assertEqual(proxy["extra.verdict_code"], "likely-open")

    def test_json_cases_carry_the_contact_and_case_columns(self) -> None:
        event = json.loads(export("--partner", "GB", "--format", "json").splitlines()[0])
        self.assertEqual(event["source.abuse_contact"], "noc@a.example")
        self.assertEqual(event["classification.identifier"], "open-smtp-relay")
        self.assertEqual(event["extra.letter_status_code"], "delivered")
        self.assertEqual(event["extra.reference"], self.alpha_case.reference)

    def test_xlsx_looks_finished(self) -> None:
        path = Path(self.tmp) / "cases.xlsx"
        export("--partner", "GB", "--format", "xlsx", "--output", str(path))
        self.assertEqual(list(Path(self.tmp).iterdir()), [path])  # no partial file left behind
        sheet = load_workbook(path).active
        header = [c.value for c in sheet[1]]
        self.assertEqual(header, [c.name for c in exports.CASE_COLUMNS])
        self.assertTrue(all(c.font.b for c in sheet[1]))
        self.assertEqual(sheet.freeze_panes, "A2")
        self.assertEqual(sheet.auto_filter.ref, "A1:AC2")
        self.assertEqual(sheet.column_dimensions["F"].width, 30)
        opened = sheet.cell(row=2, column=header.index("opened_at") + 1)
        self.assertTrue(opened.is_date)
        self.assertEqual(opened.value, dt.datetime(2026, 6, 30, 13, 0, 0))  # London time
        self.assertEqual(sheet.cell(row=2, column=header.index("servers") + 1).value, 2)
        self.assertEqual(sheet.cell(row=2, column=header.index("fixed_at") + 1).value, None)

    def test_xlsx_of_findings(self) -> None:
        path = Path(self.tmp) / "findings.xlsx"
        export("--format", "xlsx", "--shape", "findings", "--output", str(path))
        sheet = load_workbook(path).active
        self.assertEqual(sheet.max_row, 5)
        self.assertEqual(sheet.auto_filter.ref, "A1:V5")

    def test_bad_partner_codes_name_the_problem(self) -> None:
        with self.assertRaisesMessage(CommandError, "the United Kingdom is GB"):
            export("--partner", "UK")
        with self.assertRaises(CommandError) as raised:
            export("--partner", "XX")
        self.assertEqual(raised.exception.returncode, 2)

    def test_xlsx_needs_a_file(self) -> None:
        with self.assertRaisesMessage(CommandError, "needs --output"):
            export("--format", "xlsx")

    def test_cells_that_would_run_as_formulas_are_defused(self) -> None:
        owner = self.alpha_case.server_owner
        owner.name = '=HYPERLINK("http://x.example","click")'
        owner.save()
        row = rows_of(export("--partner", "GB"))[0]
        self.assertEqual(row["owner"], "'" + owner.name)
        finding = rows_of(export("--partner", "GB", "--shape", "findings"))[0]
        self.assertEqual(finding["owner"], "'" + owner.name)

    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path: Path) -> None:
        self.tmp = tmp_path


class BothPathsTestCase(ExportTestCase):
    """PostgreSQL's COPY and the simpler path (SQLite's) write the same bytes."""

    maxDiff = None

    def test_it_writes_the_same_csv_on_both_paths(self) -> None:
        if connection.vendor != "postgresql":
            self.skipTest("the fast path needs PostgreSQL")
        owner = self.beta_case.server_owner
        owner.name = '-1+1, "quoted"\nand a second line'
        owner.save()
        for shape in exports.SHAPES:
            for partner in (None, self.alpha):
                cases = Case.objects.all()
                fast = b"".join(exports.export_for(cases, shape=shape, partner=partner).stream())
                with mock.patch.object(exports.rows, "on_postgresql", return_value=False):
                    simple = exports.export_for(cases, shape=shape, partner=partner).stream()
                    self.assertEqual(
                        fast.decode().splitlines(), b"".join(simple).decode().splitlines()
                    )

    def test_it_writes_the_same_json_on_both_paths(self) -> None:
        if connection.vendor != "postgresql":
            self.skipTest("the fast path needs PostgreSQL")
        for shape in exports.SHAPES:
            fast = b"".join(
                exports.export_for(Case.objects.all(), shape=shape, fmt="json").stream()
            )
            with mock.patch.object(exports.rows, "on_postgresql", return_value=False):
                simple = exports.export_for(Case.objects.all(), shape=shape, fmt="json").stream()
                self.assertEqual(fast, b"".join(simple))


class CaseExportAdminTestCase(ExportTestCase):
    def get(self, user: object, **params: str) -> tuple[object, bytes]:
        self.client.force_login(user)
        response = self.client.get("/admin/campaign/case/export/", params)
        return response, b"".join(response.streaming_content)

    def test_a_partner_exports_only_its_own_cases_and_findings(self) -> None:
        for shape in exports.SHAPES:
            for fmt in ("csv", "json"):
                response, body = self.get(self.beta_staff, format=fmt, shape=shape)
                self.assertEqual(response.status_code, 200)
                self.assertIn(self.beta_case.reference.encode(), body)
                self.assertNotIn(self.alpha_case.reference.encode(), body)
                self.assertNotIn(b"192.0.2.1", body)  # alpha's servers
                self.assertEqual(response["X-Export-Rows"], "1")

    def test_the_export_follows_the_changelist_filters(self) -> None:
        services.case_transition(case=self.beta_case, to_status=Case.Status.WITHDRAWN)
        response, body = self.get(self.lead_staff, format="json", status__exact="escalated")
        self.assertEqual(
            [json.loads(line)["extra.reference"] for line in body.splitlines()],
            [self.alpha_case.reference],
        )
        self.assertEqual(response["X-Export-Rows"], "1")

    def test_xlsx_download_is_named_for_the_partner_shape_and_day(self) -> None:
        response, body = self.get(self.alpha_staff, format="xlsx", shape="findings")
        self.assertRegex(
            response["Content-Disposition"],
            r'^attachment; filename="sys-GB-findings-\d{4}-\d{2}-\d{2}\.xlsx"$',
        )
        self.assertEqual(response["X-Export-Rows"], "3")
        sheet = load_workbook(io.BytesIO(body)).active
        self.assertEqual([v[0] for v in list(sheet.values)[1:]], [self.alpha_case.reference] * 3)

    def test_the_lead_downloads_every_partner_as_all(self) -> None:
        response, body = self.get(self.lead_staff, format="csv")
        self.assertIn('filename="sys-all-cases-', response["Content-Disposition"])
        self.assertTrue(body.endswith(b"# complete: 2 rows\n"))
        self.assertEqual(response["X-Export-Rows"], "2")

    def test_bad_parameters_are_a_clear_400(self) -> None:
        self.client.force_login(self.alpha_staff)
        for params in ({"format": "pdf"}, {"shape": "owners"}):
            response = self.client.get("/admin/campaign/case/export/", params)
            self.assertEqual(response.status_code, 400)

    def test_the_changelist_links_to_each_export(self) -> None:
        self.client.force_login(self.alpha_staff)
        page = self.client.get("/admin/campaign/case/", {"status__exact": "escalated"})
        self.assertContains(page, "/admin/campaign/case/export/?format=xlsx&amp;status__exact")
        self.assertContains(page, "format=csv&amp;shape=findings")
