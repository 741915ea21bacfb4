"""Real Celery workers on the `letters` queue (Redis, PostgreSQL, anymail's test backend): a
letter whose task is delivered three times, to two workers, is sent exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from campaign.models import Attribution, Campaign, Case, CaseEvent, Contact, Partner, ServerOwner
from letters import services
from letters.models import Letter
from letters.tasks import send_letter
from scanning.models import Finding, Target
from tests.conftest import require
from tests.integration.test_celery_worker import redis_reachable
from tests.letters.helpers import approved_template

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def start_worker(name: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    db = connection.settings_dict
    env = dict(os.environ)
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    env["DATABASE_URL"] = f"postgres://{db['USER'] or 'postgres'}@{host}:{port}/{db['NAME']}"
    env["VAR_DIR"] = str(tmp_path)
    env["MAIL_ESP"] = "test"  # anymail's test backend: nothing leaves the machine
    log_path = tmp_path / f"{name}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            "letters",
            "--pool",
            "solo",
            "-n",
            f"{name}-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],  # fmt: skip
        cwd=ROOT,
        env=env,
        stdout=open(log_path, "w"),
        stderr=subprocess.STDOUT,
    )
    return process, log_path


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Path]]:
    require(connection.vendor == "postgresql", "the integration suite needs PostgreSQL")
    require(redis_reachable(), "the integration suite needs Redis (set REDIS_URL)")
    started = [start_worker(name, tmp_path) for name in ("letters-a", "letters-b")]
    try:
        yield [log for _, log in started]
    finally:
        for process, _ in started:
            process.terminate()
        for process, _ in started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def make_ready_case() -> Case:
    now = timezone.now()
    User.objects.create_superuser("approver", "a@localhost", "pw")
    partner = Partner.objects.create(
        country="GB", country_name="UK", agency="Agency", languages=["en"]
    )
    owner = ServerOwner.objects.create(name="Owner", partner=partner, country="GB")
    Contact.objects.create(server_owner=owner, position=0, kind="abuse", email="abuse@o.example")
    target = Target.objects.create(
        ip="192.0.2.1", port=25, protocol="smtp", first_seen=now, last_seen=now
    )
    Attribution.objects.create(target=target, server_owner=owner)
    finding = Finding.objects.create(
        target=target, protocol="smtp", verdict="confirmed-open", evidence_level="strong",
        probed_at=now,
    )  # fmt: skip
    case = Case.objects.create(
        reference="SYS-2026-000001",
        campaign=Campaign.objects.create(slug="c", name="C"),
        server_owner=owner,
        partner=partner,
        language="en",
        status=Case.Status.READY,
    )
    case.findings.add(finding)
    approved_template(partner)
    return case


def succeeded(logs: list[Path]) -> int:
    return sum(
        "letters.send_letter[" in line and "succeeded" in line
        for log in logs
        if log.exists()
        for line in log.read_text().splitlines()
    )


def test_a_redelivered_letter_task_is_sent_once_by_two_workers(workers: list[Path]) -> None:
    case = make_ready_case()
    letter = services.letter_queue(case=case, fresh=True)  # enqueued on commit
    send_letter.delay(letter.id)  # a redelivery, and one more for the other worker
    send_letter.delay(letter.id)

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and succeeded(workers) < 3:
        time.sleep(0.3)
    logs = "\n".join(log.read_text() for log in workers)
    assert succeeded(workers) == 3, logs
    letter.refresh_from_db()
    assert letter.status == Letter.Status.SENT, logs
    assert letter.esp_message_id == "0", logs  # the sending worker's test-backend outbox id
    assert letter.pdf_sha256
    assert CaseEvent.objects.filter(case=case, kind=CaseEvent.Kind.LETTER_SENT).count() == 1
    case.refresh_from_db()
    assert case.status == Case.Status.NOTIFIED
