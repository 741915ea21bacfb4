from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from openpyxl import load_workbook

from campaign import services
from campaign.models import Case
from tests.base import BaseTestCase


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("export_cases", *args, stdout=out)
    return out.getvalue()


class ExportCasesCommandTestCase(BaseTestCase):
    def test_it_exports_one_partners_cases_as_csv_whatever_the_code_case(self) -> None:
        rows = list(csv.DictReader(io.StringIO(export("--partner", "gb"))))
        self.assertEqual([r["reference"] for r in rows], [self.alpha_case.reference])
        row = rows[0]
        self.assertEqual(
            (row["partner"], row["owner"], row["status"]), ("GB", "Alpha Hosting", "ready")
        )
        self.assertEqual(row["servers"], "192.0.2.10:25/smtp")
        self.assertEqual(row["strongest_verdict"], "confirmed-open")
        self.assertEqual(row["first_contact"], "abuse@alpha.example")

    def test_every_partner_without_the_option(self) -> None:
        data = json.loads(export("--format", "json"))
        self.assertEqual(
            {r["reference"] for r in data}, {self.alpha_case.reference, self.beta_case.reference}
        )

    def test_bad_partner_codes_name_the_problem(self) -> None:
        with self.assertRaisesMessage(CommandError, "the United Kingdom is GB"):
            export("--partner", "UK")
        with self.assertRaises(CommandError) as raised:
            export("--partner", "XX")
        self.assertEqual(raised.exception.returncode, 2)

    def test_xlsx_needs_a_file(self) -> None:
        with self.assertRaisesMessage(CommandError, "needs --output"):
            export("--format", "xlsx")

    def test_xlsx_to_a_file(self) -> None:
        path = Path(self.tmp) / "cases.xlsx"
        export("--format", "xlsx", "--output", str(path))
        sheet = load_workbook(path).active
        values = list(sheet.values)
        self.assertEqual(values[0][0], "reference")
        self.assertEqual(
            {v[0] for v in values[1:]}, {self.alpha_case.reference, self.beta_case.reference}
        )

    def test_cells_that_would_run_as_formulas_are_defused(self) -> None:
        owner = self.alpha_case.server_owner
        owner.name = '=HYPERLINK("http://x.example","click")'
        owner.save()
        row = next(csv.DictReader(io.StringIO(export("--partner", "GB"))))
        self.assertEqual(row["owner"], "'" + owner.name)

    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path: Path) -> None:
        self.tmp = tmp_path


class CaseExportAdminTestCase(BaseTestCase):
    def test_a_partner_exports_only_its_own_cases(self) -> None:
        self.client.force_login(self.beta_staff)
        response = self.client.get("/admin/campaign/case/export/", {"format": "csv"})
        self.assertEqual(response.status_code, 200)
        body = b"".join(response.streaming_content).decode()
        self.assertIn(self.beta_case.reference, body)
        self.assertNotIn(self.alpha_case.reference, body)

    def test_the_export_follows_the_changelist_filters(self) -> None:
        services.case_transition(case=self.beta_case, to_status=Case.Status.WITHDRAWN)
        self.client.force_login(self.lead_staff)
        response = self.client.get(
            "/admin/campaign/case/export/", {"format": "json", "status__exact": "ready"}
        )
        data = json.loads(b"".join(response.streaming_content))
        self.assertEqual([r["reference"] for r in data], [self.alpha_case.reference])

    def test_xlsx_download(self) -> None:
        self.client.force_login(self.alpha_staff)
        response = self.client.get("/admin/campaign/case/export/", {"format": "xlsx"})
        sheet = load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
        self.assertEqual([v[0] for v in list(sheet.values)[1:]], [self.alpha_case.reference])

    def test_the_changelist_links_to_the_export(self) -> None:
        self.client.force_login(self.alpha_staff)
        self.assertContains(
            self.client.get("/admin/campaign/case/"), "/admin/campaign/case/export/"
        )
