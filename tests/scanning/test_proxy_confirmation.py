"""A proxy finding stored before the canary logged its request: provisional, upgraded by the
late hit with a CaseEvent, or settled as judged at its deadline (scanning/confirmation.py)."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from django.test import override_settings
from django.utils import timezone

from campaign.models import Attribution, Case, CaseEvent, Contact, ServerOwner
from fakes.proxy_traps import run_trap
from scanning import services, tasks
from scanning.models import CanaryHit, Finding, ScanRun, Target
from tests.base import BaseTestCase
from tests.scanning.test_confirmation import DEPLOYED_CANARY, FAST


@override_settings(**FAST, **DEPLOYED_CANARY)
class ProxyLateHitTestCase(BaseTestCase):
    def owned_socks_target(self, host: str, port: int) -> Target:
        now = timezone.now()
        owner = ServerOwner.objects.create(name=f"Owner {host}", country="GB", partner=self.alpha)
        Contact.objects.create(
            server_owner=owner, position=0, kind=Contact.Kind.ABUSE, email="abuse@gamma.example"
        )
        target = Target.objects.create(
            ip=host, port=port, protocol="socks5", first_seen=now, last_seen=now
        )
        Attribution.objects.create(target=target, server_owner=owner, network_cidr=f"{host}/32")
        return target

    def scan(self, target: Target) -> ScanRun:
        with self.captureOnCommitCallbacks(execute=True):
            run = services.scan_run_start(target_ids=[target.pk], label="wave")
        run.refresh_from_db()
        return run

    def test_a_canary_hit_after_the_batch_upgrades_the_proxy_finding(self) -> None:
        # Grants every request; the deployed canary has logged nothing when the batch ends.
        with run_trap("socks_grant_all", "127.0.89.1") as (host, port):
            target = self.owned_socks_target(host, port)
            run = self.scan(target)
        finding = Finding.objects.get(target=target)
        self.assertEqual((finding.protocol, finding.verdict), ("socks5", "likely-open-weak"))
        self.assertFalse(finding.final)  # the canary may still log the forwarded request
        self.assertEqual(finding.confirm_by, finding.probed_at + timedelta(seconds=600))
        case = Case.objects.get(findings=finding)

        later = finding.probed_at + timedelta(minutes=3)
        with time_machine.travel(later, tick=False):
            CanaryHit.objects.create(
                token=f"{finding.token}-ipv4",
                kind="http",
                peer_ip="127.0.89.9",
                headers={"User-Agent": "x"},
                detail="GET /c/[token] HTTP/1.1",
                at=later,
            )
            with self.captureOnCommitCallbacks(execute=True):
                # The canary's trigger names the token it stored: the test's own.
                upgraded = tasks.confirm_findings([f"{finding.token}-ipv4"])
        self.assertEqual(upgraded, 1)
        finding.refresh_from_db()
        self.assertTrue(finding.final)
        self.assertIsNone(finding.confirm_by)
        self.assertEqual((finding.verdict, finding.evidence_level), ("likely-open", "medium"))
        self.assertIn("canary_hit", finding.reasons)
        tests = {t["name"]: t for t in finding.details["tests"]}
        self.assertEqual(tests["socks5-ipv4"]["exit_ip"], "127.0.89.9")
        run.refresh_from_db()
        self.assertEqual(run.verdict_counts, {"likely-open": 1})
        event = CaseEvent.objects.get(case=case, kind=CaseEvent.Kind.FINDING_CONFIRMED)
        self.assertEqual(
            (event.data["from_verdict"], event.data["verdict"]),
            ("likely-open-weak", "likely-open"),
        )
        with time_machine.travel(later + timedelta(hours=1), tick=False):
            self.assertEqual(tasks.settle_findings(), 0)  # final already: nothing twice

    def test_without_a_hit_the_deadline_settles_the_proxy_finding_as_judged(self) -> None:
        with run_trap("socks_grant_all", "127.0.89.2") as (host, port):
            target = self.owned_socks_target(host, port)
            self.scan(target)
        finding = Finding.objects.get(target=target)
        self.assertFalse(finding.final)
        # A hit for another probe's token (same prefix, no separator) is not this finding's.
        CanaryHit.objects.create(
            token=f"{finding.token}0-ipv4",
            kind="http",
            peer_ip="127.0.89.9",
            headers={},
            detail="",
            at=timezone.now(),
        )
        self.assertEqual(tasks.confirm_findings(None), 0)
        with time_machine.travel(finding.probed_at + timedelta(seconds=601), tick=False):
            with self.captureOnCommitCallbacks(execute=True):
                self.assertEqual(tasks.settle_findings(), 1)
        finding.refresh_from_db()
        self.assertTrue(finding.final)
        self.assertEqual(finding.verdict, "likely-open-weak")
