from __future__ import annotations

from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from campaign.models import ImportBatch
from scanning.models import Target
from tests.base import BaseTestCase
from tests.campaign.intake.helpers import FIXTURES

IMPORT_URL = "/admin/campaign/importbatch/import/"


def _upload(name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, (FIXTURES / name).read_bytes(), "application/octet-stream")


class ImportAdminTestCase(BaseTestCase):
    def test_the_changelist_links_to_the_import_page(self) -> None:
        self.client.force_login(self.lead_staff)
        r = self.client.get("/admin/campaign/importbatch/")
        self.assertContains(r, f'href="{IMPORT_URL}"')
        self.assertContains(r, "Import targets")
        r = self.client.get("/admin/campaign/importbatch/add/")
        self.assertRedirects(r, IMPORT_URL)
        r = self.client.get(IMPORT_URL)
        self.assertContains(r, 'enctype="multipart/form-data"')
        self.assertContains(r, "Guess from the file")
        self.assertContains(r, "Wave 1")

    def test_lead_staff_upload_and_see_the_rejected_rows(self) -> None:
        self.client.force_login(self.lead_staff)
        r = self.client.post(
            IMPORT_URL,
            {"file": _upload("malformed.csv"), "format": "", "campaign": self.campaign.id},
        )
        batch = ImportBatch.objects.get()
        self.assertRedirects(r, f"/admin/campaign/importbatch/{batch.id}/change/")
        self.assertEqual(batch.uploaded_by, self.lead_staff)
        self.assertEqual((batch.format, batch.campaign), ("csv", self.campaign))
        self.assertEqual((batch.rows_kept, batch.rows_rejected), (2, 8))
        r = self.client.get(f"/admin/campaign/importbatch/{batch.id}/change/")
        self.assertContains(r, '<table class="import-errors">')
        self.assertContains(r, "<tr><td>5</td><td>port 70000 out of range 1-65535</td></tr>")
        self.assertContains(
            r, "<tr><td>3</td><td>bad IP address &#x27;not-an-ip&#x27;</td></tr>", html=False
        )

    def test_a_rejected_upload_shows_why(self) -> None:
        self.client.force_login(self.lead_staff)
        before = Target.objects.count()
        r = self.client.post(IMPORT_URL, {"file": _upload("not-a-csv.pdf"), "format": "csv"})
        batch = ImportBatch.objects.get()
        self.assertEqual(batch.status, ImportBatch.Status.FAILED)
        r = self.client.get(r["Location"])
        self.assertContains(r, "File rejected:")
        self.assertContains(r, "not-a-csv.pdf is a PDF document")
        self.assertEqual(Target.objects.count(), before)

    @override_settings(INTAKE_SYNC_MAX_BYTES=100)
    def test_a_large_upload_is_imported_by_the_task(self) -> None:
        self.client.force_login(self.lead_staff)
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            r = self.client.post(
                IMPORT_URL, {"file": _upload("2026-11-20-scan_http_proxy-example_org-asn.csv")}
            )
        self.assertEqual(len(callbacks), 1)
        batch = ImportBatch.objects.get()
        self.assertRedirects(r, f"/admin/campaign/importbatch/{batch.id}/change/")
        self.assertEqual(batch.status, ImportBatch.Status.DONE)
        self.assertEqual(
            (batch.format, batch.rows_kept, batch.rows_rejected), ("shadowserver", 3, 1)
        )
        from django.conf import settings

        self.assertEqual(list((Path(settings.MEDIA_ROOT) / "imports").glob(f"{batch.id}-*")), [])

    def test_partner_staff_have_no_access(self) -> None:
        for user in (self.alpha_staff, self.beta_staff):
            with self.subTest(user=user.username):
                self.client.force_login(user)
                self.assertEqual(self.client.get(IMPORT_URL).status_code, 403)
                r = self.client.post(IMPORT_URL, {"file": _upload("targets.csv")})
                self.assertEqual(r.status_code, 403)
        self.assertFalse(ImportBatch.objects.exists())
        self.client.logout()
        r = self.client.get(IMPORT_URL)
        self.assertEqual(r.status_code, 302)  # to the login page
        self.assertIn("/admin/login/", r["Location"])
