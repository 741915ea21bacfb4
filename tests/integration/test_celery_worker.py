"""A real Celery worker on Redis, against the PostgreSQL test database, runs a queued task."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from campaign.models import Attribution, Campaign, Case, Contact, Partner, ServerOwner
from campaign.tasks import settle_case
from scanning.models import Finding, Target
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def redis_reachable() -> bool:
    if not settings.REDIS_URL:
        return False
    try:
        return bool(redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def worker(tmp_path: Path):  # type: ignore[no-untyped-def]
    require(
        connection.vendor == "postgresql",
        "the integration suite needs PostgreSQL (set DATABASE_URL)",
    )
    require(redis_reachable(), "the integration suite needs Redis (set REDIS_URL)")
    db = connection.settings_dict
    env = dict(os.environ)
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    env["DATABASE_URL"] = f"postgres://{db['USER'] or 'postgres'}@{host}:{port}/{db['NAME']}"
    env["VAR_DIR"] = str(tmp_path)
    log = open(tmp_path / "worker.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            "default",
            "--pool",
            "solo",
            "-n",
            f"test-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_a_queued_task_runs_in_a_real_worker(
    worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    now = timezone.now()
    partner = Partner.objects.create(country="GB", country_name="UK", agency="A", languages=["en"])
    owner = ServerOwner.objects.create(name="Owner", partner=partner, country="GB")
    Contact.objects.create(
        server_owner=owner, position=0, kind="abuse", email="abuse@owner.example"
    )
    target = Target.objects.create(
        ip="192.0.2.1", port=25, protocol="smtp", first_seen=now, last_seen=now
    )
    Attribution.objects.create(target=target, server_owner=owner)
    finding = Finding.objects.create(
        target=target,
        protocol="smtp",
        verdict="confirmed-open",
        evidence_level="strong",
        probed_at=now,
    )
    case = Case.objects.create(
        reference="SYS-2026-000001",
        campaign=Campaign.objects.create(slug="c", name="C"),
        server_owner=owner,
        partner=partner,
        language="en",
    )
    case.findings.add(finding)

    settle_case.delay(case.id)  # through the real broker: the fixture's worker picks it up

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        case.refresh_from_db()
        if case.status != Case.Status.NEW:
            break
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
        time.sleep(0.3)
    assert case.status == Case.Status.READY, (tmp_path / "worker.log").read_text()
    event = case.events.get()
    assert (event.from_status, event.to_status, event.actor_label) == ("new", "ready", "worker")
