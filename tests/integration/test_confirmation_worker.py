"""The deployed canary's delivery upgrades a provisional finding through a real Celery worker.

A campaign batch stores an open relay provisional without waiting; minutes later (here: once
the batch is done) the relay's queue run delivers the test message to `manage.py canary`, which
stores the hit and asks for a confirmation; the real worker upgrades the finding and campaign
records it on the case. No beat runs, so only the canary's own request can do it.
"""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from campaign.models import Attribution, Campaign, Case, CaseEvent, Contact, Partner, ServerOwner
from fakes.smtp_traps import run_trap
from scanning import services
from scanning.models import CanaryHit, Finding, ScanBatch, ScanRun, Target
from tests.integration import test_celery_worker
from tests.scanning.test_canary_command import _database_url

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.58.1"  # the canary
RELAY = "127.0.58.2"  # the open relay, and where its delivery comes from
DOMAIN = "canary.sys-test.example"

worker = test_celery_worker.worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _start_canary(addrs: dict[str, tuple[str, int]], log: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANARY_")}
    env.update(
        DATABASE_URL=_database_url(),
        CANARY_DOMAIN=DOMAIN,
        CANARY_SECRET="confirmation-worker-secret",
        **{f"CANARY_{name}_ADDR": f"{h}:{p}" for name, (h, p) in addrs.items()},
    )
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "canary"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(log, "w"),  # noqa: SIM115 - closed with the process
        text=True,
    )
    ready = threading.Event()

    def watch() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("canary ready"):
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    assert ready.wait(30), log.read_text()
    return proc


def _owned_target(host: str, port: int) -> Target:
    now = timezone.now()
    Campaign.objects.create(slug="wave", name="Wave")
    partner = Partner.objects.create(country="GB", country_name="UK", agency="A", languages=["en"])
    owner = ServerOwner.objects.create(name="Relay owner", partner=partner, country="GB")
    Contact.objects.create(server_owner=owner, position=0, kind="abuse", email="abuse@o.example")
    target = Target.objects.create(
        ip=host, port=port, protocol="smtp", first_seen=now, last_seen=now
    )
    Attribution.objects.create(target=target, server_owner=owner, network_cidr=f"{host}/32")
    return target


def test_the_canarys_delivery_upgrades_the_finding_through_the_worker(
    worker: subprocess.Popen[bytes], tmp_path: Path, settings: Any
) -> None:
    addrs = {name: (HOST, _free_port(HOST)) for name in ("HTTP", "TLS", "SMTP")}
    settings.CANARY_DOMAIN = DOMAIN
    settings.CANARY_SECRET = "confirmation-worker-secret"
    settings.CANARY_HTTP_ADDR, settings.CANARY_TLS_ADDR = addrs["HTTP"], addrs["TLS"]
    settings.CANARY_SMTP_ADDR, settings.CANARY_SELFCHECK_ADDR = addrs["SMTP"], None
    settings.SCAN_ALLOW_PRIVATE = True
    settings.SCAN_NETWORK_RATE = 0.0
    settings.SCAN_CONNECT_TIMEOUT = settings.SCAN_REPLY_TIMEOUT = 2.0
    settings.SCAN_EXCHANGE_TIMEOUT = 8.0
    canary = _start_canary(addrs, tmp_path / "canary.log")
    try:
        with run_trap("open", RELAY) as relay:  # takes the message; its queue run comes later
            target = _owned_target(*relay)
            run = ScanRun.objects.create(label="wave", confirm_relays=True, targets_total=1)
            batch = ScanBatch.objects.create(scan_run=run, target_ids=[target.pk])
            services.scan_batch_probe(batch_id=batch.pk)
        finding = Finding.objects.get(target=target)
        assert (finding.verdict, finding.final) == ("likely-open-weak", False), finding.reasons
        assert not CanaryHit.objects.exists()
        case = Case.objects.get(findings=finding)
        assert case.status == Case.Status.NEEDS_REVIEW

        # The relay's queue run: the test message reaches the canary's sink from the relay.
        [message] = relay.state.messages
        with smtplib.SMTP(*addrs["SMTP"], timeout=10, source_address=(RELAY, 0)) as smtp:
            smtp.sendmail(
                f"probe-{finding.token}@{DOMAIN}", [f"rcpt-{finding.token}@{DOMAIN}"], message
            )

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            finding.refresh_from_db()
            if finding.final:
                break
            assert worker.poll() is None and canary.poll() is None
            time.sleep(0.3)
        log = (tmp_path / "worker.log").read_text()
        assert finding.final, log + (tmp_path / "canary.log").read_text()
        assert (finding.verdict, finding.evidence_level) == ("confirmed-open", "strong")
        assert "delivered_to_canary" in finding.reasons
        assert finding.details["canary_hits"][0]["peer_ip"] == RELAY
        assert "sweeps.confirm_findings" in log
        event = CaseEvent.objects.get(case=case, kind=CaseEvent.Kind.FINDING_CONFIRMED)
        assert event.data["verdict"] == "confirmed-open"
        case.refresh_from_db()
        assert case.status == Case.Status.READY
    finally:
        canary.send_signal(signal.SIGTERM)
        try:
            canary.wait(15)
        except subprocess.TimeoutExpired:
            canary.kill()
            canary.wait(5)
