"""A whole life against a real Postfix on loopback: the letter, a re-probe that sees it still
open, the reminder, the owner's fix (the running server reconfigured closed), a re-probe that
sees it closed, verified fixed and the thank-you letter. Run under the peers lock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail

from campaign.models import Case, CaseEvent
from fakes.peers import require_peer, start_peer
from letters.models import LetterKind
from tests.campaign import test_schedule
from tests.campaign.test_schedule import (
    START,
    at,
    kinds_sent,
    open_case,
    schedule_events,
    send_letter,
    tick,
)

world = test_schedule.world
fast_scans = test_schedule.fast_scans

pytestmark = [pytest.mark.peers, pytest.mark.django_db(transaction=True)]


def test_it_reminds_a_real_open_postfix_and_thanks_the_owner_once_it_is_closed(
    world, fast_scans
) -> None:
    require_peer("postfix")
    # The closed Postfix trusts only its own address; the probe comes from another one.
    fast_scans.SCAN_SOURCE_ADDRESS = "127.0.73.2"
    with start_peer("postfix", "open", listen="127.0.73.1") as peer:
        with at(START):
            case = send_letter(open_case(world, peer.host, peer.port))
        with at(START + timedelta(days=21, minutes=5)):
            tick()  # a fresh re-probe first
            tick()  # it saw the relay accept: the reminder
        case.refresh_from_db()
        assert case.status == Case.Status.REMINDED
        assert kinds_sent(case) == [LetterKind.INITIAL, LetterKind.REMINDER]
        assert case.reprobe_run is not None
        seen = case.reprobe_run.findings.get()
        assert seen.is_open and "Postfix" in seen.software_family, (seen.verdict, seen.reasons)

        peer.reconfigure("closed")  # the owner applies the guide's change
        with at(START + timedelta(days=60, minutes=5)):
            tick()  # the re-probe before the escalation: closed, so verified fixed
    case.refresh_from_db()
    assert case.status == Case.Status.FIXED
    assert case.reprobe_run is not None
    assert case.reprobe_run.findings.get().verdict == "closed"
    assert kinds_sent(case) == [LetterKind.INITIAL, LetterKind.REMINDER, LetterKind.FIXED]
    assert len(mail.outbox) == 3
    assert any(
        n.startswith("reminder: still open at re-probe of 22 Dec") for n in schedule_events(case)
    )
    assert not CaseEvent.objects.filter(case=case, to_status=Case.Status.ESCALATED).exists()
