"""Letters through real processes while things break: a Celery worker and beat on our own Redis
and the PostgreSQL test database, mail to an SMTP sink under the test's control, faults injected
by PID. For each fault: queued, sent, duplicated, lost, stuck, and the time to heal by itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from campaign.models import Attribution, Campaign, Case, Contact, Partner, ServerOwner
from letters import services
from letters.models import Letter
from scanning.models import Finding, Target
from tests.conftest import require
from tests.faults.harness import (
    RedisServer,
    SmtpSink,
    beat,
    process_env,
    report_row,
    terminate_backends,
    wait_for,
    worker,
)
from tests.letters.helpers import approved_template

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

LETTERS = 12
HEAL_BOUND = 150.0  # seconds: a few reconciler intervals and send leases
S = Letter.Status
FINAL = (S.SENT, S.DELIVERED, S.FAILED, S.UNKNOWN)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[dict[str, Any]]:
    require(connection.vendor == "postgresql", "the fault suite needs PostgreSQL")
    redis = RedisServer(tmp_path)
    redis.start()
    sink = SmtpSink()
    sink.start()
    started: list[Any] = []
    try:
        yield {"redis": redis, "sink": sink, "tmp": tmp_path, "started": started}
    finally:
        for process in started:
            process.stop()
        sink.stop()
        redis.stop()


def queue_letters(count: int, *, refuse_every: int = 0) -> list[Letter]:
    now = timezone.now()
    User.objects.create_superuser("approver", "a@localhost", "pw")
    partner = Partner.objects.create(
        country="GB", country_name="UK", agency="Agency", languages=["en"]
    )
    approved_template(partner)
    campaign = Campaign.objects.create(slug="c", name="C")
    letters = []
    with mock.patch("letters.services.queueing.dispatch_letters_task"):  # beat's dispatcher sends
        for i in range(count):
            owner = ServerOwner.objects.create(name=f"Owner {i}", partner=partner, country="GB")
            bad = refuse_every and i % refuse_every == 0
            Contact.objects.create(
                server_owner=owner,
                position=0,
                kind="abuse",
                email=f"{'refused' if bad else 'abuse'}{i}@owner.example",
            )
            target = Target.objects.create(
                ip=f"192.0.2.{i + 1}", port=25, protocol="smtp", first_seen=now, last_seen=now
            )
            Attribution.objects.create(target=target, server_owner=owner)
            finding = Finding.objects.create(
                target=target, protocol="smtp", verdict="confirmed-open",
                evidence_level="strong", probed_at=now,
            )  # fmt: skip
            case = Case.objects.create(
                reference=f"SYS-2026-{i + 1:06d}",
                campaign=campaign,
                server_owner=owner,
                partner=partner,
                language="en",
                status=Case.Status.READY,
            )
            case.findings.add(finding)
            letters.append(services.letter_queue(case=case, fresh=True))
    return letters


def run(
    rig: dict[str, Any],
    name: str,
    fault: Callable[[dict[str, Any]], None],
    *,
    count: int = LETTERS,
    refuse_every: int = 0,
    concurrency: int = 2,
) -> dict[str, Any]:
    queue_letters(count, refuse_every=refuse_every)
    tmp: Path = rig["tmp"]
    env = process_env(rig["redis"], rig["sink"], tmp)
    rig["env"] = env
    rig["worker"] = worker(env, tmp / "worker.log", "letters,default", "faults", concurrency)
    rig["started"] += [rig["worker"], beat(env, tmp / "beat.log", tmp)]
    started = time.monotonic()
    fault(rig)
    injected = time.monotonic()
    healed = wait_for(
        lambda: not Letter.objects.exclude(status__in=FINAL).exists(), HEAL_BOUND, step=0.5
    )
    heal_seconds = round(time.monotonic() - injected, 1)
    received = rig["sink"].counts()
    rows = list(Letter.objects.values_list("case__reference", "status"))
    status_of = dict(rows)
    row = {
        "fault": name,
        "queued": count,
        "sent": sum(s in (S.SENT, S.DELIVERED) for s in status_of.values()),
        "failed": sum(s == S.FAILED for s in status_of.values()),
        "unknown": sum(s == S.UNKNOWN for s in status_of.values()),
        # Of those, how many the server did get: a blind resend would have duplicated them.
        "unknown_received": sum(
            1 for ref, status in rows if status == S.UNKNOWN and received.get(ref)
        ),
        "duplicated": sum(n - 1 for n in received.values() if n > 1),
        # Recorded as sent but never received, or received and recorded as not sent: lost
        # from the books either way. An `unknown` letter is an honest question, not a loss.
        "lost": sum(
            1
            for ref, status in rows
            if (status in (S.SENT, S.DELIVERED)) != bool(received.get(ref)) and status != S.UNKNOWN
        ),
        "stuck": sum(s not in FINAL for s in status_of.values()),
        "time_to_heal_s": heal_seconds if healed else None,
        "total_s": round(time.monotonic() - started, 1),
        "failed_reasons": sorted(
            {e[:80] for e in Letter.objects.filter(status=S.FAILED).values_list("error", flat=True)}
        ),
    }
    report_row(row)
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in tmp.glob("*.log") if p.exists())
    assert healed, f"{name}: not healed within {HEAL_BOUND} s: {row}\n{logs}"
    assert row["duplicated"] == 0, (row, logs)
    assert row["lost"] == 0, (row, logs)
    assert row["stuck"] == 0, (row, logs)
    return row


def received_at_least(rig: dict[str, Any], count: int, timeout: float = 90) -> None:
    assert wait_for(lambda: len(rig["sink"].received) >= count, timeout), "nothing was sent"


def test_it_sends_every_letter_once_with_no_fault(rig: dict[str, Any]) -> None:
    row = run(rig, "none", lambda rig: None)
    assert row["sent"] == LETTERS


def test_it_heals_after_pool_processes_are_killed(rig: dict[str, Any]) -> None:
    def fault(rig: dict[str, Any]) -> None:
        received_at_least(rig, 2)
        for _ in range(3):  # kill -9 a pool child three times while letters go out
            rig["worker"].kill_child()
            time.sleep(1.5)

    row = run(rig, "kill -9 pool child x3", fault)
    assert row["sent"] + row["unknown"] == LETTERS


def test_it_heals_after_the_whole_worker_is_killed(rig: dict[str, Any]) -> None:
    def fault(rig: dict[str, Any]) -> None:
        received_at_least(rig, 3)
        rig["worker"].kill()
        time.sleep(2)
        rig["worker"] = worker(rig["env"], rig["tmp"] / "worker2.log", "letters,default", "f2")
        rig["started"].append(rig["worker"])

    row = run(rig, "kill -9 whole worker", fault)
    assert row["sent"] + row["unknown"] == LETTERS


def test_it_heals_after_redis_is_killed_and_restarted(rig: dict[str, Any]) -> None:
    def fault(rig: dict[str, Any]) -> None:
        received_at_least(rig, 3)
        rig["redis"].kill()
        time.sleep(3)
        rig["redis"].start()  # same port, same append-only file

    row = run(rig, "redis kill -9 + restart", fault)
    # The worker survived the broker's restart: the same main process is still running.
    assert rig["worker"].alive(), (rig["tmp"] / "worker.log").read_text()[-3000:]
    assert row["sent"] + row["unknown"] == LETTERS


def test_it_heals_after_database_connections_are_cut(rig: dict[str, Any]) -> None:
    def fault(rig: dict[str, Any]) -> None:
        received_at_least(rig, 2)
        for _ in range(4):  # a failover-like blip: every worker and beat session ends at once
            terminate_backends()
            time.sleep(0.7)

    row = run(rig, "database sessions terminated x4", fault)
    assert row["sent"] + row["unknown"] == LETTERS


def test_temporary_smtp_refusals_are_retried(rig: dict[str, Any]) -> None:
    control = rig["sink"].control
    control.mail_replies += ["421 4.3.2 busy"] * 4
    control.rcpt_replies += ["451 4.7.1 greylisted, try again"] * 6
    row = run(rig, "smtp 421 on MAIL x4, 451 on RCPT x6", lambda rig: None)
    assert row["sent"] == LETTERS


def test_permanent_smtp_refusals_fail_with_a_reason(rig: dict[str, Any]) -> None:
    rig["sink"].control.refuse = "refused"
    row = run(rig, "smtp 550 for every 4th recipient", lambda rig: None, refuse_every=4)
    assert row["failed"] == LETTERS // 4
    assert row["sent"] == LETTERS - LETTERS // 4
    assert all(
        "550" in e for e in Letter.objects.filter(status=S.FAILED).values_list("error", flat=True)
    )


def test_a_worker_killed_while_the_server_holds_its_reply_leaves_an_honest_question(
    rig: dict[str, Any],
) -> None:
    release = threading.Event()
    control = rig["sink"].control
    control.hold_after_data = release

    def fault(rig: dict[str, Any]) -> None:
        assert control.holding.wait(90), "the sink never held a reply"
        rig["worker"].kill_child()  # the message is with the server, the 250 never came
        control.hold_after_data = None
        release.set()

    row = run(rig, "kill -9 while the SMTP server holds its 250", fault, concurrency=1)
    assert row["unknown"] >= 1
    assert row["sent"] + row["unknown"] == LETTERS
