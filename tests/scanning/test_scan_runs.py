"""Scan runs in Celery: batches claimed once, findings stored with transcripts, greylisting
retried with the same token, exclusions and the address policy honoured, void batches."""

from __future__ import annotations

from unittest import mock

from django.test import override_settings
from django.utils import timezone

from fakes import proxy_traps
from fakes.smtp_traps import run_trap
from scanning import services, tasks
from scanning.models import Exclusion, Finding, ScanBatch, ScanRun, Target
from scanning.tasks import probe_batch
from tests.base import BaseTestCase

FAST = {
    "SCAN_ALLOW_PRIVATE": True,
    "SCAN_REPLY_TIMEOUT": 2.0,
    "SCAN_CONNECT_TIMEOUT": 2.0,
    "SCAN_EXCHANGE_TIMEOUT": 8.0,
    "SCAN_NETWORK_RATE": 0.0,
    "SCAN_GREYLIST_RETRY_DELAYS": [0, 0],
}


def smtp_target(host: str, port: int) -> Target:
    now = timezone.now()
    return Target.objects.create(ip=host, port=port, protocol="smtp", first_seen=now, last_seen=now)


@override_settings(**FAST)
class ScanRunTestCase(BaseTestCase):
    def scan(self, *targets: Target, by=None) -> ScanRun:  # type: ignore[no-untyped-def]
        with self.captureOnCommitCallbacks(execute=True):
            run = services.scan_run_start(
                target_ids=[t.pk for t in targets],
                label="test",
                requested_by=by,
                confirm_relays=False,
            )
        run.refresh_from_db()
        return run

    def test_it_stores_graded_findings_with_transcripts(self) -> None:
        with (
            run_trap("catchall", "127.0.81.1") as catchall,
            run_trap("closed", "127.0.81.2") as closed,
            run_trap("postscreen", "127.0.81.3") as postscreen,
        ):
            targets = [smtp_target(*catchall), smtp_target(*closed), smtp_target(*postscreen)]
            run = self.scan(*targets)
        self.assertEqual(run.status, ScanRun.Status.FINISHED)
        self.assertEqual((run.targets_done, run.targets_total), (3, 3))
        verdicts = {
            f.target.ip: f.verdict for f in Finding.objects.filter(scan_run=run, retry_after=None)
        }
        self.assertEqual(verdicts["127.0.81.1"], "likely-open-weak")
        self.assertEqual(verdicts["127.0.81.2"], "closed")
        finding = Finding.objects.filter(target=targets[1]).get()
        self.assertEqual(finding.evidence_level, "none")
        self.assertTrue(any("Relay access denied" in line["text"] for line in finding.transcript))
        self.assertTrue(finding.token)
        self.assertFalse(any(finding.token in line["text"] for line in finding.transcript))
        self.assertEqual(run.verdict_counts["likely-open-weak"], 1)

    def test_a_greylisted_target_is_probed_again_with_the_same_token(self) -> None:
        with run_trap("greylist", "127.0.81.10") as greylist:
            target = smtp_target(*greylist)
            run = self.scan(target)
        first, second = Finding.objects.filter(target=target).order_by("id")
        self.assertEqual(first.verdict, "inconclusive")
        self.assertIn("temp_reject_4xx", first.reasons)
        self.assertNotEqual(second.verdict, "inconclusive")
        self.assertEqual(first.token, second.token)  # a greylister keys on sender and recipient
        self.assertEqual(
            list(run.batches.values_list("attempt", flat=True).order_by("attempt")), [0, 1]
        )
        self.assertEqual(run.targets_done, 1)

    def test_an_excluded_network_is_never_contacted(self) -> None:
        Exclusion.objects.create(network="127.0.82.0/24", status=Exclusion.Status.APPROVED)
        with run_trap("closed", "127.0.82.7") as closed:
            target = smtp_target(*closed)
            self.scan(target)
            self.assertEqual(closed.state.connections, 0)
        finding = Finding.objects.get(target=target)
        self.assertEqual((finding.verdict, finding.reasons), ("not-applicable", ["excluded"]))

    @override_settings(SCAN_ALLOW_PRIVATE=False)
    def test_private_and_loopback_targets_are_refused_without_the_setting(self) -> None:
        with run_trap("closed", "127.0.81.20") as closed:
            run = self.scan(smtp_target(*closed))
            self.assertEqual(closed.state.connections, 0)
        self.assertFalse(Finding.objects.filter(scan_run=run).exists())
        self.assertEqual(run.verdict_counts, {"refused": 1})
        self.assertEqual(run.status, ScanRun.Status.FINISHED)
        # The run says which target and why, for the scan run's page.
        self.assertEqual(len(run.refusals), 1)
        self.assertEqual(run.refusals[0]["target"], f"127.0.81.20:{run.targets.get().port}")
        self.assertIn("loopback", run.refusals[0]["reason"])

    def test_a_batch_whose_self_check_fails_is_void(self) -> None:
        with (
            proxy_traps.run_trap("interceptor", "127.0.81.30") as interceptor,
            run_trap("closed", "127.0.81.31") as closed,
            override_settings(CANARY_SELFCHECK_ADDR=interceptor),
        ):
            run = self.scan(smtp_target(*closed))
            self.assertEqual(closed.state.connections, 0)
        self.assertEqual(run.status, ScanRun.Status.VOID)
        self.assertFalse(Finding.objects.filter(scan_run=run).exists())
        self.assertIn("self-check failed", run.note)

    def test_a_redelivered_batch_task_probes_nothing_twice(self) -> None:
        with run_trap("closed", "127.0.81.40") as closed:
            run = self.scan(smtp_target(*closed))
            connections = closed.state.connections
            probe_batch(run.batches.get().pk)  # acks_late redelivery after a worker crash
            self.assertEqual(closed.state.connections, connections)
        self.assertEqual(Finding.objects.filter(scan_run=run).count(), 1)

    def test_targets_are_split_into_batches(self) -> None:
        now = timezone.now()
        targets = [
            Target.objects.create(
                ip=f"192.0.2.{i}", port=25, protocol="smtp", first_seen=now, last_seen=now
            )
            for i in range(1, 6)
        ]
        with override_settings(SCAN_BATCH_SIZE=2), self.captureOnCommitCallbacks() as callbacks:
            run = services.scan_run_start(target_ids=[t.pk for t in targets], label="split")
        self.assertEqual([len(b.target_ids) for b in run.batches.order_by("id")], [2, 2, 1])
        self.assertEqual(len(callbacks), 1)  # one dispatch, queued on commit
        self.assertEqual(ScanBatch.objects.filter(status="pending").count(), 3)
        sent: list[tuple[object, ...]] = []
        with mock.patch.object(tasks.probe_batch_task, "delay", lambda *a: sent.append(a)):
            with mock.patch.object(
                tasks.dispatch_scan_run_task, "delay", lambda *a: sent.append(a)
            ):
                with mock.patch.object(services.runs, "DISPATCH_CHUNK", 2):
                    services.scan_run_dispatch(run_id=run.pk)
        batch_ids = list(run.batches.order_by("id").values_list("id", flat=True))
        # Two probe tasks, then the next dispatch after the second batch.
        self.assertEqual(sent, [(batch_ids[0],), (batch_ids[1],), (run.pk, batch_ids[1])])

    def test_a_run_of_a_queryset_is_cut_into_batches_in_id_order(self) -> None:
        targets = [smtp_target(f"192.0.2.{i}", 25) for i in range(1, 8)]
        with override_settings(SCAN_BATCH_SIZE=3), mock.patch.object(services.runs, "RUN_CHUNK", 4):
            with self.captureOnCommitCallbacks():
                run = services.scan_run_start(
                    targets=Target.objects.filter(pk__in=[t.pk for t in targets]), label="all"
                )
        self.assertEqual(run.targets_total, 7)
        self.assertEqual(set(run.targets.values_list("id", flat=True)), {t.pk for t in targets})
        # Batches of three in id order, whatever the chunks the targets are read in.
        batches = [b.target_ids for b in run.batches.order_by("id")]
        self.assertEqual(batches, [[t.pk for t in targets[i : i + 3]] for i in (0, 3, 6)])

    def test_a_target_reached_twice_through_a_join_is_scanned_once(self) -> None:
        targets = [smtp_target(f"192.0.2.{i}", 25) for i in range(1, 4)]
        for target in targets[:2]:
            for verdict in ("closed", "confirmed-open"):  # two rows per target in the join
                Finding.objects.create(
                    target=target,
                    protocol="smtp",
                    verdict=verdict,
                    evidence_level="none",
                    probed_at=timezone.now(),
                )
        mine = [t.pk for t in targets]
        joined = Target.objects.filter(findings__protocol="smtp", pk__in=mine)
        self.assertGreater(joined.count(), 2)  # the join repeats them
        with override_settings(SCAN_BATCH_SIZE=50), self.captureOnCommitCallbacks():
            run = services.scan_run_start(targets=joined, label="joined")
        self.assertEqual(run.targets_total, 2)
        self.assertEqual(run.targets.count(), 2)
        self.assertEqual(
            [b.target_ids for b in run.batches.all()], [[targets[0].pk, targets[1].pk]]
        )


class ScanAdminTestCase(BaseTestCase):
    def test_lead_staff_scan_selected_targets_and_watch_progress(self) -> None:
        target = self.alpha_case.findings.first().target
        self.client.force_login(self.lead_staff)
        with self.captureOnCommitCallbacks() as callbacks:
            response = self.client.post(
                "/admin/scanning/target/",
                {"action": "scan_targets", "_selected_action": [target.pk]},
            )
        self.assertEqual(response.status_code, 302)
        run = ScanRun.objects.get()
        self.assertEqual((run.targets_total, run.requested_by), (1, self.lead_staff))
        self.assertEqual(len(callbacks), 1)
        page = self.client.get(f"/admin/scanning/scanrun/{run.pk}/change/")
        self.assertContains(page, "0 / 1")
        self.assertContains(page, 'http-equiv="refresh"')  # reloads itself while it runs

    def test_partner_staff_cannot_start_scans(self) -> None:
        target = self.alpha_case.findings.first().target
        self.client.force_login(self.alpha_staff)
        self.client.post(
            "/admin/scanning/target/", {"action": "scan_targets", "_selected_action": [target.pk]}
        )
        self.assertFalse(ScanRun.objects.exists())
