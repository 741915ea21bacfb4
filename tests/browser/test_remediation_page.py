"""The recipient's remediation page in headless Chromium: open the letter's link, read the finding,
switch language, fix the server and press "check again" until the case closes as verified fixed.

The re-probe is real: Celery runs it eagerly inside the live server's request thread, against a
real Postfix (started open, reconfigured closed) or, for a fast test, a closed SMTP trap.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from campaign import services as campaign_services
from campaign.models import Attribution, Campaign, Case, CaseEvent, Contact, Partner, ServerOwner
from fakes.peers import require_peer, start_peer
from fakes.smtp_traps import run_trap
from letters import guides
from letters.links import remediation_link_issue
from letters.models import Letter, LetterKind
from letters.rendering import bcp47
from scanning import services as scanning_services
from scanning.models import Finding, ScanRun, Target
from scanning.signals import finding_recorded
from tests.letters.helpers import PageText, approved_template

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
CLOSED = "Closed: your server refused our test. Thank you for fixing it."
QUEUED = (
    "Your check is in the queue. This page shows the result when it arrives; you can also "
    "reload it."
)

FAST_SCAN = {
    "SCAN_ALLOW_PRIVATE": True,
    "SCAN_REPLY_TIMEOUT": 3.0,
    "SCAN_CONNECT_TIMEOUT": 3.0,
    "SCAN_EXCHANGE_TIMEOUT": 10.0,
    "SCAN_NETWORK_RATE": 0.0,
    "SCAN_GREYLIST_RETRY_DELAYS": [0, 0],
    "RECHECK_MIN_INTERVAL": 600,
}


def two_languages() -> list[str]:
    shipped = guides.languages()
    preferred = [code for code in ("en", "de", "ja") if code in shipped]
    return (preferred + [code for code in shipped if code not in preferred])[:2]


def off_the_loop(fn: Callable[[], Any]) -> Any:
    """Playwright's sync API keeps an event loop in this thread; a scan needs its own."""

    def run() -> Any:
        try:
            return fn()
        finally:
            connection.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def make_owner(languages: list[str]) -> tuple[Campaign, ServerOwner]:
    User.objects.create_superuser("regulator", "regulator@localhost", "pw")  # approves templates
    partner = Partner.objects.create(
        country="DE",
        country_name="Germany",
        agency="Bundesamt für Serversicherheit",
        languages=languages,
    )
    Partner.objects.create(
        country="US",
        country_name="United States",
        agency="Lead Agency",
        languages=["en"],
        is_lead=True,
    )
    campaign = Campaign.objects.create(slug="wave-1", name="Secure Your Server 2026")
    owner = ServerOwner.objects.create(name="Rheinland Hosting", country="DE", partner=partner)
    Contact.objects.create(
        server_owner=owner, position=0, kind=Contact.Kind.ABUSE, email="abuse@rheinland.example"
    )
    return campaign, owner


def smtp_target(owner: ServerOwner, host: str, port: int) -> Target:
    now = timezone.now()
    target = Target.objects.create(
        ip=host, port=port, protocol="smtp", first_seen=now, last_seen=now
    )
    Attribution.objects.create(target=target, server_owner=owner)
    return target


def letter_link(case: Case) -> str:
    """The case as a sent letter left it: the letter, its link and an approved thank-you."""
    approved_template(case.partner, language=case.language, kind="fixed")
    letter = Letter.objects.create(
        case=case,
        kind=LetterKind.INITIAL,
        language=case.language,
        recipient_email="abuse@rheinland.example",
        status=Letter.Status.SENT,
        sent_at=timezone.now(),
    )
    url, _ = remediation_link_issue(case, letter)
    return url.rstrip("/").rsplit("/", 1)[-1]


def watch_csp(page: Any) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security" in m.text else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


@pytest.mark.peers  # a real Postfix on its fixed address: one test at a time
def test_check_again_against_a_real_postfix_fixed_in_the_meantime(
    page, live_server, screenshot_dir, settings
) -> None:
    require_peer("postfix")
    for name, value in FAST_SCAN.items():
        setattr(settings, name, value)
    # The fixed Postfix trusts only its own address; the probe comes from another one.
    settings.SCAN_SOURCE_ADDRESS = "127.0.72.2"
    langs = two_languages()
    first, second = PageText(langs[0]), PageText(langs[-1])
    campaign, owner = make_owner(langs)
    problems = watch_csp(page)
    with start_peer("postfix", "open", listen="127.0.72.1") as peer:
        target = smtp_target(owner, peer.host, peer.port)
        # The campaign scan that found it open opens the case (campaign's receiver).
        off_the_loop(
            lambda: scanning_services.scan_run_start(
                target_ids=[target.pk], label="wave 1", confirm_relays=True
            )
        )
        found = Finding.objects.get(target=target)
        assert found.is_open, (found.verdict, found.reasons)
        case = Case.objects.get(server_owner=owner)
        # With the canary's mail going nowhere the relay is not confirmed: weak evidence, which
        # a caseworker reviews before the letter goes out (and the letter went out).
        if case.status == Case.Status.NEEDS_REVIEW:
            campaign_services.case_transition(
                case=case, to_status=Case.Status.READY, actor_label="caseworker", note="Reviewed."
            )
        campaign_services.case_transition(
            case=case, to_status=Case.Status.NOTIFIED, actor_label="worker"
        )
        token = letter_link(case)

        page.goto(f"{live_server.url}/r/{token}/")
        assert page.locator("html").get_attribute("lang") == bcp47(langs[0])
        table = page.locator("table.findings").inner_text()
        assert "127.0.72.1" in table and "25" in table
        assert first("Open mail relay (SMTP)") in table
        page.locator("details.evidence-box summary").click()  # the owner opens the evidence
        assert "ESMTP Postfix" in page.locator("pre.evidence").inner_text()
        assert guides.guide_for("smtp_relay", "Postfix", langs[0]).title in page.content()
        page.screenshot(path=str(screenshot_dir / f"remediation-{langs[0]}.png"), full_page=True)

        page.select_option("#lang-select", langs[-1])
        with page.expect_navigation():
            page.click(".lang-switch button")
        assert page.locator("html").get_attribute("lang") == bcp47(langs[-1])
        assert page.locator("h1").inner_text() == second("Securing your server")
        page.screenshot(path=str(screenshot_dir / f"remediation-{langs[-1]}.png"), full_page=True)

        peer.reconfigure("closed")  # the owner applies the guide's change
        with page.expect_navigation(timeout=60_000):
            page.click("#check-button")
        assert page.locator("#case-status").inner_text() == second.status("fixed")
        assert second(CLOSED) in page.locator(".results").inner_text()

    case.refresh_from_db()
    assert case.status == Case.Status.FIXED
    run = ScanRun.objects.get(label__startswith="Re-check")
    assert list(run.targets.all()) == [target]
    assert Finding.objects.get(scan_run=run).verdict == "closed"
    assert CaseEvent.objects.filter(case=case, kind=CaseEvent.Kind.RECHECK_REQUESTED).exists()
    assert Letter.objects.filter(case=case, kind=LetterKind.FIXED).exists()
    assert problems == []


def test_without_javascript_on_a_phone_check_again_closes_the_case(
    browser, live_server, screenshot_dir, settings
) -> None:
    for name, value in FAST_SCAN.items():
        setattr(settings, name, value)
    langs = two_languages()
    strings = PageText(langs[0])
    campaign, owner = make_owner(langs)
    context = browser.new_context(viewport={"width": 390, "height": 844}, java_script_enabled=False)
    page = context.new_page()
    try:
        with run_trap("closed", "127.0.84.1") as trap:
            target = smtp_target(owner, trap.host, trap.port)
            finding = Finding.objects.create(
                target=target,
                protocol="smtp",
                verdict="confirmed-open",
                evidence_level="strong",
                software_family="Exim",
                probed_at=timezone.now() - timedelta(days=5),
                transcript=[{"t_ms": 0, "direction": "<", "text": "220 mx ESMTP Exim 4.96"}],
            )
            case = campaign_services.case_add_finding(
                campaign=campaign, owner=owner, finding=finding
            )
            token = letter_link(case)
            page.goto(f"{live_server.url}/r/{token}/")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, width  # nothing wider than the phone
            assert page.locator(".skip").get_attribute("href") == "#main"
            page.screenshot(
                path=str(screenshot_dir / f"remediation-{langs[0]}-phone.png"), full_page=True
            )
            with page.expect_navigation(timeout=60_000):
                page.click("#check-button")
            assert trap.state.connections > 0
        assert page.locator("#case-status").inner_text() == strings.status("fixed")
        page.goto(f"{live_server.url}/r/{token}/")  # a second try is not needed any more
        assert page.locator("#check-button").count() == 0
    finally:
        context.close()
    case.refresh_from_db()
    assert case.status == Case.Status.FIXED


def test_the_script_updates_the_progress_without_a_reload(page, live_server, settings) -> None:
    langs = two_languages()
    strings = PageText(langs[0])
    campaign, owner = make_owner(langs)
    target = smtp_target(owner, "127.0.85.1", 25)
    finding = Finding.objects.create(
        target=target,
        protocol="smtp",
        verdict="confirmed-open",
        evidence_level="strong",
        probed_at=timezone.now() - timedelta(days=5),
    )
    case = campaign_services.case_add_finding(campaign=campaign, owner=owner, finding=finding)
    token = letter_link(case)
    # A re-check waiting for a worker (queued, not run): what a real deployment shows first.
    run = ScanRun.objects.create(label="Re-check", targets_total=1)
    run.targets.set([target])
    campaign_services.case_record_event(
        case=case,
        kind=CaseEvent.Kind.RECHECK_REQUESTED,
        actor_label="recipient",
        data={"scan_run": run.pk},
    )
    problems = watch_csp(page)
    page.goto(f"{live_server.url}/r/{token}/")
    assert page.locator("#check-progress").inner_text() == strings(QUEUED)
    # The worker finishes: the finding is stored and announced, as scanning does.
    closed = Finding.objects.create(
        target=target,
        scan_run=run,
        protocol="smtp",
        verdict="closed",
        evidence_level="none",
        probed_at=timezone.now(),
    )
    ScanRun.objects.filter(pk=run.pk).update(
        status=ScanRun.Status.FINISHED, targets_done=1, finished_at=timezone.now()
    )
    finding_recorded.send(sender=Finding, finding=closed)
    page.wait_for_function(
        "text => document.getElementById('case-status').textContent === text",
        arg=strings.status("fixed"),
        timeout=15_000,
    )
    assert page.locator(f'[data-target-result="{target.pk}"]').inner_text() == strings(CLOSED)
    assert page.locator("#check-progress").count() == 0
    assert problems == []
