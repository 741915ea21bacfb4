"""The embedded default: no Redis, SQLite in WAL mode, and still a worker process outside the
request, fed through kombu's filesystem transport."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SETUP = """
from django.utils import timezone
from campaign.models import *
from scanning.models import *
now = timezone.now()
p = Partner.objects.create(country="GB", country_name="UK", agency="A", languages=["en"])
o = ServerOwner.objects.create(name="Owner", partner=p)
Contact.objects.create(server_owner=o, position=0, kind="abuse", email="abuse@owner.example")
t = Target.objects.create(ip="192.0.2.1", port=25, protocol="smtp", first_seen=now, last_seen=now)
f = Finding.objects.create(
    target=t, protocol="smtp", verdict="confirmed-open", evidence_level="strong", probed_at=now
)
camp = Campaign.objects.create(slug="c", name="C")
c = Case.objects.create(
    reference="SYS-2026-000001", campaign=camp, server_owner=o, partner=p, language="en"
)
c.findings.add(f)
from campaign.tasks import settle_case
settle_case.delay(c.id)
"""


def test_a_worker_process_does_background_work_without_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["VAR_DIR"] = str(tmp_path)

    def manage(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""

    manage("migrate", "--noinput", "-v0")
    manage("shell", "-c", SETUP)  # the "web" process: commits the case and queues the task
    assert list((tmp_path / "broker" / "queue").iterdir()), "the message should wait on disk"
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen(
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
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"embedded-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        status = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = manage(
                "shell", "-c", "from campaign.models import Case; print(Case.objects.get().status)"
            )
            if status.strip() != "new":
                break
            time.sleep(0.5)
        assert status.strip() == "ready", (tmp_path / "worker.log").read_text()
        mode = manage(
            "shell",
            "-c",
            "from django.db import connection; c = connection.cursor(); "
            "c.execute('PRAGMA journal_mode'); print(c.fetchone()[0])",
        )
        assert mode.strip() == "wal"
    finally:
        worker.terminate()
        worker.wait(timeout=15)
        log.close()
