"""Confirmation decoupled from the session: a campaign batch stores a relay that took the test
message as provisional at once; the canary's delivery upgrades it whenever it comes (with a
CaseEvent), and the deadline job settles the rest the way the probe judged them."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from unittest import mock

import time_machine
from django.conf import settings
from django.db import connection
from django.test import TransactionTestCase, override_settings
from django.utils import timezone

from campaign.models import Attribution, Case, CaseEvent, Contact, ServerOwner
from config.celery import app
from fakes.smtp_traps import run_trap
from scanning import confirmation, services, tasks
from scanning.hitstore import DatabaseHitStore
from scanning.models import CanaryHit, Finding, ScanRun, Target
from scanning.probes import runner
from scanning.probes.canary import CanaryHit as ProbeHit
from tests.base import BaseTestCase, make_world
from tests.conftest import require

FAST = {
    "SCAN_ALLOW_PRIVATE": True,
    "SCAN_REPLY_TIMEOUT": 2.0,
    "SCAN_CONNECT_TIMEOUT": 2.0,
    "SCAN_EXCHANGE_TIMEOUT": 8.0,
    "SCAN_CONFIRM_DEADLINE": 600,
    "SCAN_NETWORK_RATE": 0.0,
    "SCAN_GREYLIST_RETRY_DELAYS": [0, 0],
}
# The deployed canary, as the workers see it: its hits are rows of the CanaryHit table, written
# here by the test when "the delivery arrives". Nothing listens on these ports; the SMTP probe
# only needs the canary's mail domain.
DEPLOYED_CANARY = {
    "CANARY_DOMAIN": "canary.sys-test.example",
    "CANARY_SECRET": "confirmation-test-secret",
    "CANARY_HTTP_ADDR": ("127.0.0.1", 9),
    "CANARY_TLS_ADDR": ("127.0.0.1", 9),
    "CANARY_SMTP_ADDR": ("127.0.0.1", 9),
    "CANARY_SELFCHECK_ADDR": None,
}

NO_CANARY = {
    "CANARY_DOMAIN": "",
    "CANARY_HTTP_ADDR": "",
    "CANARY_TLS_ADDR": "",
    "CANARY_SMTP_ADDR": "",
}


@contextmanager
def recorded_canary_waits() -> Iterator[list[float]]:
    """Every wait the batch asks of the canary's hit table, by its timeout."""
    waits: list[float] = []
    original = DatabaseHitStore.wait_for

    async def spy(self: DatabaseHitStore, token: str, *, kind: str | None, timeout: float) -> Any:
        waits.append(timeout)
        return await original(self, token, kind=kind, timeout=timeout)

    with mock.patch.object(DatabaseHitStore, "wait_for", spy):
        yield waits


def deliver(token: str, at: datetime, peer: str = "127.0.88.1") -> CanaryHit:
    """What the deployed canary stores when the relayed test message reaches its sink."""
    return CanaryHit.objects.create(
        token=token,
        kind="smtp",
        peer_ip=peer,
        headers={"Subject": "relay test"},
        detail=f"MAIL FROM:<probe-{token}@canary.sys-test.example>",
        at=at,
    )


@override_settings(**FAST, **DEPLOYED_CANARY)
class ConfirmationTestCase(BaseTestCase):
    def owned_target(self, host: str, port: int) -> Target:
        """A target whose owner is known, so its open finding opens a case at once."""
        now = timezone.now()
        owner = ServerOwner.objects.create(name=f"Owner {host}", country="GB", partner=self.alpha)
        Contact.objects.create(
            server_owner=owner, position=0, kind=Contact.Kind.ABUSE, email="abuse@gamma.example"
        )
        target = Target.objects.create(
            ip=host, port=port, protocol="smtp", first_seen=now, last_seen=now
        )
        Attribution.objects.create(target=target, server_owner=owner, network_cidr=f"{host}/32")
        return target

    def scan(self, *targets: Target) -> ScanRun:
        with self.captureOnCommitCallbacks(execute=True):
            run = services.scan_run_start(
                target_ids=[t.pk for t in targets], label="wave", confirm_relays=True
            )
        run.refresh_from_db()
        return run

    def test_a_delivery_minutes_later_upgrades_the_finding_the_batch_stored_provisional(
        self,
    ) -> None:
        with run_trap("open", "127.0.88.1") as relay:  # takes the message, delivers nothing yet
            target = self.owned_target(*relay)
            with recorded_canary_waits() as waits:
                run = self.scan(target)
            assert relay.state.messages, "the probe sent its test message"
        # The batch is done and its finding stored before any delivery exists.
        self.assertEqual(run.status, ScanRun.Status.FINISHED)
        self.assertFalse(CanaryHit.objects.exists())
        self.assertTrue(waits)
        self.assertEqual(max(waits), 0)  # it read the canary's table once, waiting for nothing
        finding = Finding.objects.get(target=target)
        self.assertFalse(finding.final)
        self.assertEqual(finding.verdict, "likely-open-weak")  # it also took the .invalid control
        self.assertIn("accepted_not_delivered", finding.reasons)
        self.assertEqual(finding.confirm_by, finding.probed_at + timedelta(seconds=600))
        case = Case.objects.get(findings=finding)
        self.assertEqual(case.status, Case.Status.NEEDS_REVIEW)  # weak evidence only, for now

        # The relay queued the message; its queue run delivers it seven minutes later.
        later = finding.probed_at + timedelta(minutes=7)
        with time_machine.travel(later, tick=False):
            deliver(finding.token, later)
            with self.captureOnCommitCallbacks(execute=True):
                upgraded = tasks.confirm_findings([finding.token])
        self.assertEqual(upgraded, 1)
        finding.refresh_from_db()
        self.assertTrue(finding.final)
        self.assertIsNone(finding.confirm_by)
        self.assertEqual((finding.verdict, finding.evidence_level), ("confirmed-open", "strong"))
        self.assertIn("delivered_to_canary", finding.reasons)
        self.assertNotIn("accepted_not_delivered", finding.reasons)
        self.assertTrue(finding.details["delivered"])
        self.assertEqual(finding.details["canary_hits"][0]["peer_ip"], "127.0.88.1")
        self.assertFalse(any(finding.token in str(hit) for hit in finding.details["canary_hits"]))
        run.refresh_from_db()
        self.assertEqual(run.verdict_counts, {"confirmed-open": 1})

        event = CaseEvent.objects.get(case=case, kind=CaseEvent.Kind.FINDING_CONFIRMED)
        self.assertEqual(
            (event.data["from_verdict"], event.data["verdict"]),
            ("likely-open-weak", "confirmed-open"),
        )
        case.refresh_from_db()
        self.assertEqual(case.status, Case.Status.READY)  # strong evidence and a contact now

        # The deadline passes: the finding is final already, nothing is settled or told twice.
        with time_machine.travel(later + timedelta(hours=1), tick=False):
            self.assertEqual(tasks.settle_findings(), 0)
            self.assertEqual(tasks.confirm_findings(None), 0)
        self.assertEqual(
            CaseEvent.objects.filter(
                case=case,
                kind__in=(CaseEvent.Kind.FINDING_CONFIRMED, CaseEvent.Kind.FINDING_SETTLED),
            ).count(),
            1,
        )

    @override_settings(**NO_CANARY)
    def test_a_batch_with_its_own_canary_keeps_a_delivery_that_came_after_the_session(
        self,
    ) -> None:
        # No canary configured: the batch runs one in-process, which stops with the batch. A
        # delivery it received after the session (here: right after every probe ended) is kept.
        original = runner.Scanner.run_each

        async def run_then_deliver(scanner: runner.Scanner, items: Any, on_result: Any = None):  # type: ignore[no-untyped-def]
            results = await original(scanner, items, on_result)
            for result in results:
                recorded = scanner.hits.record(
                    ProbeHit(token=result.token or "", kind="smtp", peer_ip=result.ip)
                )
                if inspect.isawaitable(recorded):
                    await recorded
            return results

        with run_trap("open", "127.0.88.21") as relay:
            target = self.owned_target(*relay)
            with mock.patch.object(runner.Scanner, "run_each", run_then_deliver):
                self.scan(target)
        finding = Finding.objects.get(target=target)
        self.assertEqual((finding.verdict, finding.final), ("confirmed-open", True))
        self.assertIn("delivered_to_canary", finding.reasons)
        self.assertEqual(CanaryHit.objects.get(token=finding.token).peer_ip, "127.0.88.21")
        # Strong evidence and a contact: the case can be notified.
        self.assertEqual(Case.objects.get(findings=finding).status, Case.Status.READY)

    def provisional(
        self, verdict: str = "likely-open-weak", token: str = "a" * 32, **fields: Any
    ) -> Finding:
        target = self.alpha_case.findings.order_by("pk").first().target  # type: ignore[union-attr]
        now = timezone.now()
        finding = Finding.objects.create(
            target=target,
            protocol="smtp",
            verdict=verdict,
            evidence_level="weak" if verdict == "likely-open-weak" else "medium",
            reasons=["rcpt_2xx_external", "data_accepted", "accepted_not_delivered"],
            token=token,
            details={"delivered": False, "canary_hits": []},
            transcript=[{"t_ms": 0, "direction": "<", "text": "250 queued"}],
            probed_at=now,
            final=False,
            confirm_by=now + timedelta(minutes=10),
            **fields,
        )
        self.alpha_case.findings.add(finding)
        return finding

    def test_a_delivery_for_an_unknown_or_foreign_token_changes_nothing(self) -> None:
        finding = self.provisional()
        settled = Finding.objects.create(
            target=finding.target,
            protocol="smtp",
            verdict="closed",
            evidence_level="none",
            token="b" * 32,
            probed_at=timezone.now(),
        )
        now = timezone.now()
        deliver("c" * 32, now)  # nobody's token
        deliver(settled.token, now)  # a final finding's token
        CanaryHit.objects.create(  # this finding's token, but a web request, not a delivery
            token=finding.token, kind="http", peer_ip="192.0.2.77", at=now
        )
        self.assertEqual(tasks.confirm_findings(["c" * 32, settled.token]), 0)
        self.assertEqual(tasks.confirm_findings(None), 0)
        finding.refresh_from_db()
        settled.refresh_from_db()
        self.assertEqual((finding.verdict, finding.final), ("likely-open-weak", False))
        self.assertEqual((settled.verdict, settled.final), ("closed", True))
        self.assertFalse(
            CaseEvent.objects.filter(
                kind__in=(CaseEvent.Kind.FINDING_CONFIRMED, CaseEvent.Kind.FINDING_SETTLED)
            ).exists()
        )

    def test_confirming_twice_records_one_upgrade_and_one_event(self) -> None:
        finding = self.provisional(verdict="likely-open")
        deliver(finding.token, timezone.now())
        self.assertEqual(confirmation.findings_confirm_from_hits(tokens=[finding.token]), 1)
        self.assertEqual(confirmation.findings_confirm_from_hits(tokens=[finding.token]), 0)
        self.assertEqual(confirmation.findings_confirm_from_hits(), 0)
        deliver(finding.token, timezone.now(), peer="127.0.88.2")  # the relay retried
        self.assertEqual(confirmation.findings_confirm_from_hits(), 0)
        finding.refresh_from_db()
        self.assertEqual(finding.verdict, "confirmed-open")
        self.assertEqual(len(finding.details["canary_hits"]), 1)  # final: the retry changes nothing
        events = CaseEvent.objects.filter(
            case=self.alpha_case, kind=CaseEvent.Kind.FINDING_CONFIRMED
        )
        self.assertEqual(events.count(), 1)
        self.assertIn("likely-open → confirmed-open", events.get().note)

    def test_the_deadline_settles_unconfirmed_relays_as_the_probe_judged_them(self) -> None:
        with (
            run_trap("catchall", "127.0.88.11") as catchall,
            run_trap("discriminating", "127.0.88.12") as checks_domains,
        ):
            targets = [self.owned_target(*catchall), self.owned_target(*checks_domains)]
            run = self.scan(*targets)
        found = {f.target.ip: f for f in Finding.objects.filter(scan_run=run)}
        catch_all, discriminating = found["127.0.88.11"], found["127.0.88.12"]
        # What the probe judged from the session alone: a catch-all also took the .invalid
        # control (weak); the other refused it and still took our recipient (likely open).
        self.assertEqual(catch_all.verdict, "likely-open-weak")
        self.assertIn("control_invalid_accepted", catch_all.reasons)
        self.assertEqual(discriminating.verdict, "likely-open")
        self.assertIn("control_invalid_refused", discriminating.reasons)
        self.assertFalse(catch_all.final or discriminating.final)
        events_before = CaseEvent.objects.count()

        with time_machine.travel(catch_all.confirm_by - timedelta(seconds=1), tick=False):
            self.assertEqual(tasks.settle_findings(), 0)  # not due yet
        with time_machine.travel(catch_all.confirm_by + timedelta(seconds=1), tick=False):
            self.assertEqual(tasks.settle_findings(), 2)
            self.assertEqual(tasks.settle_findings(), 0)
        for finding, verdict in ((catch_all, "likely-open-weak"), (discriminating, "likely-open")):
            finding.refresh_from_db()
            self.assertTrue(finding.final)
            self.assertIsNone(finding.confirm_by)
            self.assertEqual(finding.verdict, verdict)
            self.assertIn("accepted_not_delivered", finding.reasons)
            self.assertIn("by the deadline", finding.transcript[-1]["text"])
        # Settled as they were: the cases already hold those verdicts, nothing new to tell.
        self.assertEqual(CaseEvent.objects.count(), events_before)
        # A delivery after the deadline leaves the final verdict alone (the next re-probe sees).
        deliver(catch_all.token, timezone.now() + timedelta(hours=2))
        self.assertEqual(tasks.confirm_findings([catch_all.token]), 0)

    def test_a_row_the_probes_rule_cannot_read_is_logged_and_the_sweep_goes_on(self) -> None:
        unreadable = self.provisional(token="e" * 32, transport="pigeon")
        readable = self.provisional(token="f" * 32)
        deliver(unreadable.token, timezone.now())
        deliver(readable.token, timezone.now())
        with self.assertLogs("scanning.confirmation", "ERROR") as logs:
            self.assertEqual(tasks.confirm_findings(None), 1)
        self.assertIn(f"finding {unreadable.pk}: confirmation failed", logs.output[0])
        unreadable.refresh_from_db()
        readable.refresh_from_db()
        self.assertEqual((unreadable.verdict, unreadable.final), ("likely-open-weak", False))
        self.assertEqual((readable.verdict, readable.final), ("confirmed-open", True))
        self.assertEqual(CaseEvent.objects.filter(kind=CaseEvent.Kind.FINDING_CONFIRMED).count(), 1)

    def test_a_finding_with_a_delivery_on_record_is_confirmed_not_settled(self) -> None:
        finding = self.provisional()
        deliver(finding.token, timezone.now())
        with time_machine.travel(timezone.now() + timedelta(hours=1), tick=False):
            self.assertEqual(tasks.settle_findings(), 0)  # the sweep may have lost the trigger
            self.assertEqual(tasks.confirm_findings(None), 1)
        finding.refresh_from_db()
        self.assertEqual((finding.verdict, finding.final), ("confirmed-open", True))

    def test_beat_runs_both_sweeps_on_the_default_queue(self) -> None:
        for entry_name, task_name in (
            ("confirm-findings", "sweeps.confirm_findings"),
            ("settle-findings", "sweeps.settle_findings"),
        ):
            entry = settings.CELERY_BEAT_SCHEDULE[entry_name]
            self.assertEqual(entry["task"], task_name)
            self.assertLessEqual(entry["schedule"], 5 * 60)
            # Never behind probe batches on the scans queue.
            self.assertEqual(app.amqp.router.route({}, task_name)["queue"].name, "default")

    def test_health_names_findings_left_provisional_past_their_deadline(self) -> None:
        from letters.health import health_report

        finding = self.provisional()
        self.assertEqual(health_report()["findings_unsettled"], 0)
        Finding.objects.filter(pk=finding.pk).update(confirm_by=timezone.now() - timedelta(hours=1))
        report = health_report()
        self.assertEqual(report["findings_unsettled"], 1)
        self.assertIn(
            "1 finding(s) provisional past their deadline (is the settle sweep running?)",
            report["problems"],
        )
        tasks.settle_findings()
        self.assertEqual(health_report()["findings_unsettled"], 0)


@override_settings(**FAST)
class TwoWorkersTestCase(TransactionTestCase):
    """Two workers confirm the same finding at the same moment: one upgrade, one event."""

    def setUp(self) -> None:
        make_world(self)

    def test_two_workers_upgrade_a_finding_once(self) -> None:
        require(connection.vendor == "postgresql", "row locks need PostgreSQL")
        case: Case = self.alpha_case  # type: ignore[attr-defined]
        now = timezone.now()
        finding = Finding.objects.create(
            target=case.findings.get().target,
            protocol="smtp",
            verdict="likely-open-weak",
            evidence_level="weak",
            reasons=["rcpt_2xx_external", "accepted_not_delivered"],
            token="d" * 32,
            probed_at=now,
            final=False,
            confirm_by=now + timedelta(minutes=10),
        )
        case.findings.add(finding)
        deliver(finding.token, now)
        start = threading.Barrier(2)
        counts: list[int] = []

        def worker() -> None:
            try:
                start.wait(5)
                counts.append(confirmation.findings_confirm_from_hits(tokens=[finding.token]))
            finally:
                connection.close()

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        self.assertEqual(sorted(counts), [0, 1])
        self.assertEqual(
            CaseEvent.objects.filter(case=case, kind=CaseEvent.Kind.FINDING_CONFIRMED).count(), 1
        )
