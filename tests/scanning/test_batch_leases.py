"""Scan batches claimed under a lease: a dead worker's batch is taken over, its findings stored
once, and every run reaches a final state."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

from django.test import override_settings
from django.utils import timezone

from fakes.smtp_traps import run_trap
from scanning import services
from scanning.models import Finding, ScanBatch, ScanRun
from scanning.tasks import probe_batch
from tests.base import BaseTestCase
from tests.scanning.test_scan_runs import FAST, smtp_target

PAST = timedelta(seconds=1)


@override_settings(**FAST)
class BatchLeaseTestCase(BaseTestCase):
    def start(self, *targets: object) -> ScanRun:
        with self.captureOnCommitCallbacks(execute=False):  # the tasks are "lost"
            return services.scan_run_start(
                target_ids=[t.pk for t in targets],  # type: ignore[attr-defined]
                label="t",
                confirm_relays=False,
            )

    def test_it_takes_over_an_expired_claim_and_stores_findings_once(self) -> None:
        with run_trap("closed", "127.0.81.40") as closed:
            target = smtp_target(*closed)
            run = self.start(target)
            batch = run.batches.get()
            live = timezone.now() + timedelta(minutes=5)
            ScanBatch.objects.filter(pk=batch.pk).update(
                status="running", claimed_by="dead", lease_until=live, claims=1
            )
            probe_batch(batch.pk)  # the claim is alive: nothing happens
            self.assertFalse(Finding.objects.filter(scan_run=run).exists())
            ScanBatch.objects.filter(pk=batch.pk).update(lease_until=timezone.now() - PAST)
            probe_batch(batch.pk)  # a redelivery takes the expired claim over
            probe_batch(batch.pk)  # and one more is a no-op
        self.assertEqual(Finding.objects.filter(target=target).count(), 1)
        run.refresh_from_db()
        self.assertEqual(run.status, ScanRun.Status.FINISHED)
        self.assertEqual(run.batches.get().claims, 2)

    def test_a_worker_whose_claim_was_taken_over_keeps_nothing(self) -> None:
        target = smtp_target("127.0.81.41", 25)
        run = self.start(target)
        batch = run.batches.get()
        ScanBatch.objects.filter(pk=batch.pk).update(status="running", claimed_by="new-worker")
        batch.claimed_by = "old-worker"
        finding = Finding(
            target=target,
            scan_run=run,
            protocol="smtp",
            verdict="closed",
            evidence_level="none",
            probed_at=timezone.now(),
        )
        services.batches._finish_batch(batch, ScanBatch.Status.DONE, findings=[finding], refused=[])
        self.assertFalse(Finding.objects.filter(scan_run=run).exists())
        self.assertEqual(ScanBatch.objects.get(pk=batch.pk).status, "running")

    def test_the_reconciler_finishes_a_run_whose_workers_keep_dying(self) -> None:
        run = self.start(smtp_target("127.0.81.42", 25))
        ScanBatch.objects.filter(scan_run=run).update(
            status="running", claims=3, lease_until=timezone.now() - PAST
        )
        report = services.scan_batches_reconcile()
        self.assertEqual(report.failed, 1)
        run.refresh_from_db()
        self.assertEqual(run.status, ScanRun.Status.FINISHED)
        self.assertIn("stopped 3 times", run.note)
        self.assertEqual(run.verdict_counts, {"failed": 1})

    def test_the_reconciler_hands_an_expired_claim_to_a_worker_again(self) -> None:
        run = self.start(smtp_target("127.0.81.43", 25))
        batch = run.batches.get()
        ScanBatch.objects.filter(pk=batch.pk).update(
            status="running", claims=1, lease_until=timezone.now() - PAST
        )
        with mock.patch("scanning.tasks.probe_batch_task") as task:
            report = services.scan_batches_reconcile()
        self.assertEqual(report.requeued, 1)
        task.delay.assert_called_once_with(batch.pk)
        self.assertEqual(ScanBatch.objects.get(pk=batch.pk).status, "pending")

    def test_a_pending_batch_is_enqueued_again_only_when_nothing_waits(self) -> None:
        run = self.start(smtp_target("127.0.81.44", 25))
        ScanBatch.objects.filter(scan_run=run).update(
            created_at=timezone.now() - timedelta(hours=1)
        )
        with mock.patch("scanning.tasks.probe_batch_task") as task:
            services.scan_batches_reconcile(broker_waiting=5)  # busy queue: it may still come
            services.scan_batches_reconcile(broker_waiting=None)  # unknown: do nothing
            self.assertEqual(task.delay.call_count, 0)
            self.assertEqual(services.scan_runs_needing_attention().count(), 1)
            report = services.scan_batches_reconcile(broker_waiting=0)
            services.scan_batches_reconcile(broker_waiting=0)  # not again within the grace
        self.assertEqual(report.reenqueued, 1)
        self.assertEqual(task.delay.call_count, 1)
        self.assertEqual(services.scan_runs_needing_attention().count(), 0)

    def test_the_admin_shows_and_requeues_stale_runs(self) -> None:
        run = self.start(smtp_target("127.0.81.45", 25))
        ScanBatch.objects.filter(scan_run=run).update(
            status="running", claims=1, lease_until=timezone.now() - PAST
        )
        self.client.force_login(self.regulator)
        response = self.client.get("/admin/scanning/scanrun/")
        self.assertContains(response, "1 scan run has stale batches")
        with mock.patch("scanning.tasks.probe_batch_task") as task:
            with self.captureOnCommitCallbacks(execute=True):
                self.client.post(
                    "/admin/scanning/scanrun/",
                    {"action": "requeue_stale_batches", "_selected_action": [run.pk]},
                )
        task.delay.assert_called_once()
        self.client.force_login(self.alpha_staff)
        self.assertNotEqual(self.client.get("/admin/scanning/scanrun/").status_code, 200)
