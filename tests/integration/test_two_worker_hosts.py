"""Two worker hosts (own node names, own concurrency) sharing Redis and PostgreSQL run one
campaign's work: a scan run of loopback targets and a round of letters. The work divides between
them (read from the rows' claims and each host's log) and nothing is done twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from bench import worker_work
from bench.worker_hosts import (
    LOOPBACK_SCAN_ENV,
    LoopbackFleet,
    WorkerHost,
    purge_queues,
    start_host,
    wait_logged,
    wait_ready,
)
from campaign.models import CaseEvent
from letters.models import Letter
from scanning.models import Finding, ScanBatch
from tests.conftest import require
from tests.integration.test_celery_worker import redis_reachable

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TARGETS = 24
BATCH_SIZE = 4
LETTERS = 8
HOST_ENV = {**LOOPBACK_SCAN_ENV, "SCAN_BATCH_SIZE": str(BATCH_SIZE)}


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[list[WorkerHost]]:
    require(connection.vendor == "postgresql", "the integration suite needs PostgreSQL")
    require(redis_reachable(), "the integration suite needs Redis (set REDIS_URL)")
    purge_queues()
    queues = "scans,letters,default"
    started = [
        start_host(f"hostA-{tmp_path.name}", queues=queues, concurrency=2, log_dir=tmp_path,
                   env=HOST_ENV),
        start_host(f"hostB-{tmp_path.name}", queues=queues, concurrency=1, log_dir=tmp_path,
                   env=HOST_ENV),
    ]  # fmt: skip
    try:
        wait_ready(started)
        yield started
    finally:
        for host in started:
            host.stop()


def logs(hosts: list[WorkerHost]) -> str:
    return "\n".join(f"--- {h.name}\n{h.text()[-4000:]}" for h in hosts)


def test_two_hosts_divide_a_scan_run_and_its_letters_and_do_nothing_twice(
    hosts: list[WorkerHost], settings: Any
) -> None:
    settings.SCAN_BATCH_SIZE = BATCH_SIZE
    host_a, host_b = hosts
    with LoopbackFleet("127.93.0.0/24", TARGETS) as fleet:
        target_ids = worker_work.fleet_targets(fleet)
        run = worker_work.start_scan(target_ids, "two hosts")
        assert worker_work.wait_scan(run.pk, timeout=40), logs(hosts)

    batches = list(ScanBatch.objects.filter(scan_run=run))
    assert len(batches) == TARGETS // BATCH_SIZE
    assert {b.status for b in batches} == {ScanBatch.Status.DONE}, logs(hosts)
    assert [b.claims for b in batches] == [1] * len(batches)  # each batch taken once
    wait_logged(hosts, "scanning.probe_batch", {b.claimed_by for b in batches})
    ran_a = set(host_a.succeeded("scanning.probe_batch"))
    ran_b = set(host_b.succeeded("scanning.probe_batch"))
    assert not ran_a & ran_b
    by_a = [b for b in batches if b.claimed_by in ran_a]
    by_b = [b for b in batches if b.claimed_by in ran_b]
    assert len(by_a) + len(by_b) == len(batches), logs(hosts)
    assert by_a and by_b, f"A probed {len(by_a)} batches, B {len(by_b)}"
    # Every target probed exactly once in the run, by the host that claimed its batch.
    probed = Counter(Finding.objects.filter(scan_run=run).values_list("target_id", flat=True))
    assert sorted(probed) == sorted(target_ids)
    assert set(probed.values()) == {1}

    # The letters: each send task delivered twice (a redelivery), to whichever host is free.
    letter_ids = worker_work.queue_letters(LETTERS, deliveries=2)
    assert worker_work.wait_letters(letter_ids, timeout=45), logs(hosts)
    letters = list(Letter.objects.filter(id__in=letter_ids))
    assert {letter.status for letter in letters} == {Letter.Status.SENT}, logs(hosts)
    wait_logged(hosts, "letters.send_letter", {x.claimed_by for x in letters})
    sent_a = set(host_a.succeeded("letters.send_letter"))
    sent_b = set(host_b.succeeded("letters.send_letter"))
    by_a_letters = [x for x in letters if x.claimed_by in sent_a]
    by_b_letters = [x for x in letters if x.claimed_by in sent_b]
    assert len(by_a_letters) + len(by_b_letters) == LETTERS, logs(hosts)
    assert by_a_letters and by_b_letters, f"A {len(by_a_letters)}, B {len(by_b_letters)}"
    events = Counter(
        event.data["letter"] for event in CaseEvent.objects.filter(kind=CaseEvent.Kind.LETTER_SENT)
    )
    assert events == Counter({str(x.public_id): 1 for x in letters})  # each sent once
