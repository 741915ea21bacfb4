"""The life of a case after its letter, by the clock: re-probes, the reminder, escalation,
closing; the sweep that runs it (twice at once too), pause and the campaign's end.

The clock moves with time-machine; re-probes are real scans (run eagerly) against SMTP traps on
loopback, so "still open", "closed" and "unreachable" are what a probe really saw.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from campaign import services
from campaign.models import (
    Attention,
    Attribution,
    Campaign,
    Case,
    CaseEvent,
    Contact,
    Membership,
    NextAction,
    Partner,
    ServerOwner,
)
from fakes.smtp_traps import run_trap
from letters.models import Letter, LetterKind
from letters.services import letter_queue
from scanning.models import Finding, ScanRun, Target
from tests.letters.helpers import approved_template

pytestmark = pytest.mark.django_db(transaction=True)

FAST_SCAN = {
    "SCAN_ALLOW_PRIVATE": True,
    "SCAN_REPLY_TIMEOUT": 2.0,
    "SCAN_CONNECT_TIMEOUT": 2.0,
    "SCAN_EXCHANGE_TIMEOUT": 8.0,
    "SCAN_NETWORK_RATE": 0.0,
    "SCAN_GREYLIST_RETRY_DELAYS": [0, 0],
    "RECHECK_MIN_INTERVAL": 0,
}
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def fast_scans(settings):
    for name, value in FAST_SCAN.items():
        setattr(settings, name, value)
    return settings


@pytest.fixture
def world() -> dict[str, object]:
    User.objects.create_superuser("regulator", "regulator@localhost", "pw")  # approves templates
    partner = Partner.objects.create(
        country="GB", country_name="Alphaland", agency="Alpha Agency", languages=["en"]
    )
    Partner.objects.create(
        country="US", country_name="United States", agency="Lead", languages=["en"], is_lead=True
    )
    for kind in ("initial", "reminder", "fixed"):
        approved_template(partner, kind=kind)
    campaign = Campaign.objects.create(slug="wave-1", name="Wave 1", starts_on=START.date())
    return {"partner": partner, "campaign": campaign}


def open_case(world: dict[str, object], host: str, port: int, n: int = 0) -> Case:
    partner, campaign = world["partner"], world["campaign"]
    assert isinstance(partner, Partner) and isinstance(campaign, Campaign)
    owner = ServerOwner.objects.create(name=f"Owner {n}", country="GB", partner=partner)
    Contact.objects.create(
        server_owner=owner, position=0, kind=Contact.Kind.ABUSE, email=f"abuse{n}@owner.example"
    )
    now = timezone.now()
    target = Target.objects.create(
        ip=host, port=port, protocol="smtp", first_seen=now, last_seen=now
    )
    Attribution.objects.create(target=target, server_owner=owner)
    finding = Finding.objects.create(
        target=target,
        protocol="smtp",
        verdict="confirmed-open",
        evidence_level="strong",
        probed_at=now,
    )
    case = services.case_add_finding(campaign=campaign, owner=owner, finding=finding)
    assert case.status == Case.Status.READY
    return case


def send_letter(case: Case) -> Case:
    letter_queue(case=case, fresh=True)  # eager: rendered and sent on commit
    case.refresh_from_db()
    assert case.status == Case.Status.NOTIFIED, case.status
    return case


def tick() -> str:
    out = StringIO()
    call_command("campaign_tick", stdout=out)
    return out.getvalue()


def schedule_events(case: Case) -> list[str]:
    return list(
        CaseEvent.objects.filter(case=case, actor_label="schedule")
        .order_by("at", "id")
        .values_list("note", flat=True)
    )


def kinds_sent(case: Case) -> list[str]:
    return list(
        Letter.objects.filter(case=case, status__in=("sent", "delivered"))
        .order_by("id")
        .values_list("kind", flat=True)
    )


@contextmanager
def at(moment: datetime) -> Iterator[None]:
    with time_machine.travel(moment, tick=True):
        yield


def test_it_reminds_a_server_seen_open_then_thanks_the_owner_who_fixed_it(
    world, fast_scans
) -> None:
    with run_trap("open", "127.0.86.1") as trap:
        with at(START):
            case = send_letter(open_case(world, trap.host, trap.port))
            assert case.next_action == NextAction.REPROBE
            assert case.next_action_label == "re-probe on 8 Dec"
        with at(START + timedelta(days=7, minutes=5)):
            out = tick()
            case.refresh_from_db()
            assert "re-probe queued" in out
            assert case.next_action_label == "reminder on 22 Dec if still open"
            assert case.reprobe_run is not None
            assert Finding.objects.get(scan_run=case.reprobe_run).is_open
        with at(START + timedelta(days=21, minutes=5)):
            tick()  # the re-probe of 7 days after is stale: a fresh one first
            assert kinds_sent(case) == [LetterKind.INITIAL]
            tick()  # the fresh one saw it open: the reminder
            case.refresh_from_db()
            assert case.status == Case.Status.REMINDED
            assert kinds_sent(case) == [LetterKind.INITIAL, LetterKind.REMINDER]
            assert case.next_action_label == "hand to the partner on 30 Jan"
    assert any(
        note.startswith("reminder: still open at re-probe of 22 Dec, 21 days after the letter")
        for note in schedule_events(case)
    )
    # The owner fixes it: the same address now refuses to relay.
    with run_trap("closed", trap.host, port=trap.port):
        with at(START + timedelta(days=60, minutes=5)):
            tick()  # the re-probe before the escalation finds it closed: verified fixed
    case.refresh_from_db()
    assert case.status == Case.Status.FIXED
    assert case.next_action == "" and case.next_action_at is None
    assert kinds_sent(case) == [LetterKind.INITIAL, LetterKind.REMINDER, LetterKind.FIXED]
    assert len(mail.outbox) == 3
    assert not CaseEvent.objects.filter(case=case, to_status=Case.Status.ESCALATED).exists()


def test_an_opt_out_stops_the_reminder_to_every_contact(world, fast_scans) -> None:
    # Opting out stops the case, not just the one address: the next contact gets no reminder.
    with run_trap("open", "127.0.86.6") as trap:
        with at(START):
            case = send_letter(open_case(world, trap.host, trap.port))
            Contact.objects.create(
                server_owner=case.server_owner,
                position=1,
                kind=Contact.Kind.NETWORK,
                email="noc@owner.example",
            )
            services.case_opt_out(case=case, email="abuse0@owner.example")
        for days in (7, 21, 22, 60):
            with at(START + timedelta(days=days, minutes=5)):
                tick()
    assert not Letter.objects.filter(case=case, kind=LetterKind.REMINDER).exists()
    assert [m.to for m in mail.outbox] == [["abuse0@owner.example"]]
    assert schedule_events(case) == []
    case.refresh_from_db()
    assert case.status == Case.Status.SUPPRESSED


def test_it_escalates_a_case_that_never_changes_and_closes_it_as_unresponsive(
    world, fast_scans
) -> None:
    campaign = world["campaign"]
    assert isinstance(campaign, Campaign)
    Campaign.objects.filter(pk=campaign.pk).update(reminder_after_days=90)  # no reminder
    with run_trap("open", "127.0.86.2") as trap:
        with at(START):
            case = send_letter(open_case(world, trap.host, trap.port))
        with at(START + timedelta(days=7, minutes=1)):
            tick()
        case.refresh_from_db()
        assert case.next_action == NextAction.ESCALATE
        with at(START + timedelta(days=60, minutes=1)):
            tick()
            tick()
            case.refresh_from_db()
            assert case.status == Case.Status.ESCALATED
            assert case.attention == Attention.ESCALATED
            assert case.next_action_label == "close as unresponsive on 1 Mar if nothing changes"
        with at(START + timedelta(days=90, minutes=30)):
            tick()
            tick()
    case.refresh_from_db()
    assert case.status == Case.Status.UNRESPONSIVE
    assert case.attention == ""
    notes = schedule_events(case)
    assert any(n.startswith("escalated: still open at re-probe of 30 Jan, 60 days") for n in notes)
    assert any(
        n.startswith("unresponsive: no change in 30 days since the escalation") for n in notes
    )
    assert kinds_sent(case) == [LetterKind.INITIAL]  # no harsher letter, no reminder


def test_it_never_reminds_a_server_it_could_not_reach(world, fast_scans) -> None:
    with run_trap("open", "127.0.86.3") as trap:
        with at(START):
            case = send_letter(open_case(world, trap.host, trap.port))
    # The trap is gone: nothing listens there any more.
    with at(START + timedelta(days=21, minutes=1)):
        tick()
        tick()
        case.refresh_from_db()
        assert case.status == Case.Status.NOTIFIED
        assert case.next_action == NextAction.REMINDER
        assert case.next_action_at > timezone.now() + timedelta(hours=23)
    assert kinds_sent(case) == [LetterKind.INITIAL]
    assert any(
        n.startswith("no reminder: the re-probe of 22 Dec found it unreachable")
        for n in schedule_events(case)
    )


def test_it_never_reminds_a_server_found_closed(world, fast_scans) -> None:
    with run_trap("closed", "127.0.86.4") as trap:
        with at(START):
            case = send_letter(open_case(world, trap.host, trap.port))
        with at(START + timedelta(days=21, minutes=1)):
            tick()
            tick()
    case.refresh_from_db()
    assert case.status == Case.Status.FIXED
    assert kinds_sent(case) == [LetterKind.INITIAL, LetterKind.FIXED]


def fresh_open_reprobe(case: Case) -> None:
    """The case as a re-probe a moment ago left it: finished, the server still open."""
    run = ScanRun.objects.create(
        label="Re-check", status=ScanRun.Status.FINISHED, targets_total=1, targets_done=1
    )
    target = case.findings.get().target
    Finding.objects.create(
        target=target,
        scan_run=run,
        protocol="smtp",
        verdict="confirmed-open",
        evidence_level="strong",
        probed_at=timezone.now(),
    )
    Case.objects.filter(pk=case.pk).update(reprobe_run=run, reprobe_requested_at=timezone.now())


def test_it_sends_each_reminder_once_when_two_sweeps_run_at_once(world) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks (SKIP LOCKED) need PostgreSQL")
    with at(START):
        # Twelve cases in batches of four: each sweep claims several batches while the other is
        # claiming too, which is where a missing SKIP LOCKED sends a reminder twice.
        cases = [send_letter(open_case(world, f"127.0.87.{i}", 25, n=i)) for i in range(1, 13)]
    mail.outbox.clear()
    # An hour on: sending the letters on a loaded machine may take a while.
    with at(START + timedelta(days=21, hours=1)):
        for case in cases:
            fresh_open_reprobe(case)
        reports: list[services.SweepReport] = []
        barrier = threading.Barrier(2)

        def sweep() -> None:
            try:
                barrier.wait()
                reports.append(services.schedule_sweep(inline=True, batch_size=4))
            finally:
                connection.close()

        threads = [threading.Thread(target=sweep) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(reports) == 2
    assert sum(r.claimed for r in reports) == len(cases)  # none skipped, none taken twice
    for case in cases:
        case.refresh_from_db()
        said = [line for r in reports for line in r.lines if case.reference in line]
        assert case.status == Case.Status.REMINDED, (case.reference, said)
        assert Letter.objects.filter(case=case, kind=LetterKind.REMINDER).count() == 1
    assert len(mail.outbox) == len(cases)


def test_a_paused_campaign_or_partner_keeps_its_schedule_and_resumes(world) -> None:
    partner = world["partner"]
    assert isinstance(partner, Partner)
    with at(START):
        case = send_letter(open_case(world, "127.0.88.1", 25))
    due = case.next_action_at
    Campaign.objects.filter(pk=case.campaign_id).update(is_paused=True)
    with at(START + timedelta(days=21, minutes=1)):
        fresh_open_reprobe(case)
        assert "0 case(s) due" in tick()
        case.refresh_from_db()
        assert (case.status, case.next_action_at) == (Case.Status.NOTIFIED, due)
        Campaign.objects.filter(pk=case.campaign_id).update(is_paused=False)
        approver = User.objects.create_user("approver", is_staff=True)
        caseworker = User.objects.create_user("caseworker", is_staff=True)
        Membership.objects.create(user=approver, partner=partner, role="approver")
        Membership.objects.create(user=caseworker, partner=partner, role="caseworker")
        with pytest.raises(services.NotAllowed):
            services.partner_set_automation_paused(partner=partner, paused=True, actor=caseworker)
        services.partner_set_automation_paused(partner=partner, paused=True, actor=approver)
        assert "0 case(s) due" in tick()
        services.partner_set_automation_paused(partner=partner, paused=False, actor=approver)
        assert "1 case(s) due" in tick()
    case.refresh_from_db()
    assert case.status == Case.Status.REMINDED


def test_the_end_of_the_campaign_closes_what_is_still_open(world) -> None:
    with at(START):
        notified = send_letter(open_case(world, "127.0.89.1", 25, n=1))
        ready = open_case(world, "127.0.89.2", 25, n=2)
        lead = User.objects.create_superuser("lead", "lead@localhost", "pw")
        assert services.campaign_end(campaign=notified.campaign, actor=lead) == 2
        out = tick()
    notified.refresh_from_db()
    ready.refresh_from_db()
    assert notified.status == Case.Status.UNRESPONSIVE
    assert ready.status == Case.Status.WITHDRAWN
    assert "campaign ended" in out
    assert notified.campaign.cases.filter(next_action_at__isnull=False).count() == 0


def test_a_bounced_case_goes_to_the_partner(world) -> None:
    with at(START):
        case = send_letter(open_case(world, "127.0.90.1", 25))
        services.case_transition(
            case=case,
            to_status=Case.Status.NEEDS_REVIEW,
            actor_label="bounce",
            note="Every contact bounced.",
            attention=Attention.BOUNCED,
        )
        assert case.next_action == NextAction.ESCALATE
        tick()
    case.refresh_from_db()
    assert case.status == Case.Status.ESCALATED
    assert case.attention == Attention.BOUNCED  # the more telling reason stays for the partner
    assert schedule_events(case)[-1].startswith("escalated: every contact bounced")


def test_a_review_never_goes_without_a_reason(world) -> None:
    case = open_case(world, "127.0.91.1", 25)
    services.case_transition(case=case, to_status=Case.Status.NEEDS_REVIEW, actor_label="alpha")
    case.refresh_from_db()
    assert case.review_reason == "Sent to review by alpha."
    assert case.attention == Attention.REVIEW


def test_a_case_open_again_after_a_fix_is_looked_at_once_more(world, fast_scans) -> None:
    with run_trap("closed", "127.0.86.5") as trap:
        with at(START):
            case = send_letter(open_case(world, trap.host, trap.port))
        with at(START + timedelta(days=7, minutes=5)):
            tick()  # the first re-probe finds it closed
        case.refresh_from_db()
        assert case.status == Case.Status.FIXED
        with at(START + timedelta(days=10)):
            # A later campaign scan saw it open again (a restored old configuration, say).
            again = Finding.objects.create(
                target=case.findings.earliest("probed_at").target,
                protocol="smtp",
                verdict="confirmed-open",
                evidence_level="strong",
                probed_at=timezone.now(),
            )
            services.case_add_finding(
                campaign=case.campaign, owner=case.server_owner, finding=again
            )
            case.refresh_from_db()
            assert case.status == Case.Status.NEEDS_REVIEW
            assert (case.attention, case.next_action) == (Attention.REOPENED, NextAction.REPROBE)
            tick()  # looked at once more before a person decides: closed after all
    case.refresh_from_db()
    assert case.status == Case.Status.FIXED
    assert any(n.startswith("re-probe: open again after a fix") for n in schedule_events(case))
