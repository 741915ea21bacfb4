from __future__ import annotations

from django.utils import timezone

from campaign.models import ImportBatch
from scanning.models import ScanRun, Target
from tests.base import BaseTestCase


class ImportBatchScanActionTestCase(BaseTestCase):
    def test_lead_staff_scan_an_imports_targets(self) -> None:
        now = timezone.now()
        batch = ImportBatch.objects.create(file_name="suspects.csv", format="csv")
        targets = [
            Target.objects.create(
                ip=f"192.0.2.{i}", port=25, protocol="smtp", first_seen=now, last_seen=now
            )
            for i in (1, 2)
        ]
        batch.targets.set(targets)
        self.client.force_login(self.lead_staff)
        with self.captureOnCommitCallbacks():
            self.client.post(
                "/admin/campaign/importbatch/",
                {"action": "scan_batch_targets", "_selected_action": [batch.pk]},
            )
        run = ScanRun.objects.get()
        self.assertEqual(set(run.targets.all()), set(targets))
