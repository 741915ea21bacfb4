"""The owner's page as a server owner reads it, in headless Chromium at a laptop's 1,366 px and a
phone's 390 px: a summary with the primary action first, labelled values on the phone, guides
folded until opened, each guide with its own server's address, and English beside a partner's
only language. Screenshots go to var/screenshots/ for a person to look at."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from campaign import services as campaign_services
from campaign.models import Attribution, Campaign, Case, Contact, Partner, ServerOwner
from letters.links import remediation_link_issue
from letters.models import Letter, LetterKind
from scanning.models import Finding, Target

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDTHS = {"laptop": (1366, 768), "phone": (390, 844)}


def owner_case(language: str = "en", languages: list[str] | None = None) -> tuple[Case, str]:
    """A mail server on .10 (Postfix, confirmed open) and a Squid proxy on .11 (likely open)."""
    partner = Partner.objects.create(
        country="GB",
        country_name="United Kingdom",
        agency="Office for Server Security",
        languages=languages or [language],
    )
    campaign = Campaign.objects.create(slug="wave-1", name="Secure Your Server 2026")
    owner = ServerOwner.objects.create(
        name="Thames Valley Hosting Ltd", country="GB", partner=partner
    )
    Contact.objects.create(
        server_owner=owner, position=0, kind=Contact.Kind.ABUSE, email="abuse@thames.example"
    )
    seen = timezone.now() - timedelta(days=2)
    case = None
    for ip, port, protocol, verdict, software, banner in (
        ("192.0.2.10", 25, "smtp", "confirmed-open", "Postfix", "220 mx.thames.example ESMTP"),
        ("192.0.2.11", 3128, "http", "likely-open", "Squid", "HTTP/1.1 200 OK"),
    ):  # fmt: skip
        target = Target.objects.create(
            ip=ip, port=port, protocol=protocol, first_seen=seen, last_seen=seen
        )
        Attribution.objects.create(target=target, server_owner=owner)
        finding = Finding.objects.create(
            target=target,
            protocol=protocol,
            verdict=verdict,
            evidence_level="strong" if verdict == "confirmed-open" else "medium",
            software_family=software,
            probed_at=seen,
            transcript=[{"t_ms": 0, "direction": "<", "text": banner}],
        )
        case = campaign_services.case_add_finding(campaign=campaign, owner=owner, finding=finding)
    assert case is not None
    Case.objects.filter(pk=case.pk).update(
        status=Case.Status.NOTIFIED, language=language, next_action_at=seen + timedelta(days=14)
    )
    case.refresh_from_db()
    letter = Letter.objects.create(
        case=case,
        kind=LetterKind.INITIAL,
        language=language,
        recipient_email="abuse@thames.example",
        status=Letter.Status.SENT,
        sent_at=seen,
    )
    url, _ = remediation_link_issue(case, letter)
    return case, url.rstrip("/").rsplit("/", 1)[-1]


def open_page(browser: Any, live_server: Any, token: str, size: str, **query: str) -> Any:
    width, height = WIDTHS[size]
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    suffix = "".join(f"&{k}={v}" for k, v in query.items())
    page.goto(f"{live_server.url}/r/{token}/?{suffix.lstrip('&')}")
    return context, page


@pytest.mark.parametrize("size", list(WIDTHS))
def test_the_summary_and_its_action_come_first_and_guides_are_folded(
    browser, live_server, screenshot_dir, size
) -> None:
    case, token = owner_case()
    context, page = open_page(browser, live_server, token, size)
    try:
        width, height = WIDTHS[size]
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        button = page.locator("#check-button").bounding_box()
        assert button is not None and button["y"] + button["height"] <= height  # no scrolling
        assert "Open when we checked on" in page.locator("table.findings").inner_text()
        assert "Probably open when we checked on" in page.locator("table.findings").inner_text()
        guides = page.locator("details.guide")
        assert guides.count() == 2
        assert not page.locator("details.guide pre").first.is_visible()  # folded until opened
        page.screenshot(path=str(screenshot_dir / f"owner-page-{size}.png"), full_page=True)
        total = page.evaluate("document.documentElement.scrollHeight")
        assert total < 4 * height, total  # the guides no longer make it ~7,700 px tall
        squid = page.locator("details.guide", has_text="192.0.2.11:3128")
        squid.locator("summary").click()
        text = squid.inner_text()
        assert "curl -x http://192.0.2.11:3128" in text and "192.0.2.10" not in text
        page.screenshot(path=str(screenshot_dir / f"owner-page-{size}-guide.png"), full_page=True)
    finally:
        context.close()


def test_on_a_phone_every_value_has_its_label(browser, live_server) -> None:
    case, token = owner_case()
    context, page = open_page(browser, live_server, token, "phone")
    try:
        labels = page.evaluate(
            """() => Array.from(document.querySelectorAll('table.findings td')).map(td =>
                [getComputedStyle(td, '::before').content, getComputedStyle(td).display])"""
        )
        assert labels and all(content not in ("none", '""', "normal") for content, _ in labels)
        assert {content.strip('"') for content, _ in labels} == {
            "Address", "Port", "What it is", "Status"
        }  # fmt: skip
        assert not page.locator("table.findings thead").is_visible() or page.evaluate(
            "document.querySelector('table.findings thead').getBoundingClientRect().left < 0"
        )
    finally:
        context.close()


def test_a_japanese_page_offers_english_and_switches_to_it(
    browser, live_server, screenshot_dir
) -> None:
    case, token = owner_case("ja", ["ja"])
    context, page = open_page(browser, live_server, token, "phone")
    try:
        assert page.locator("html").get_attribute("lang") == "ja"
        options = page.locator("#lang-select option").evaluate_all("os => os.map(o => o.value)")
        assert options == ["ja", "en"]
        page.screenshot(path=str(screenshot_dir / "owner-page-ja-phone.png"), full_page=True)
        page.select_option("#lang-select", "en")
        with page.expect_navigation():
            page.click(".lang-switch button")
        assert page.locator("html").get_attribute("lang") == "en"
        assert page.locator("#check-button").inner_text() == "I fixed it — check again"
    finally:
        context.close()


def test_after_an_opt_out_the_page_offers_no_check_and_no_reminder(
    browser, live_server, screenshot_dir
) -> None:
    case, token = owner_case()
    context, page = open_page(browser, live_server, token, "phone")
    try:
        page.locator("#optout summary").click()
        with page.expect_navigation():
            page.click("button[value=optout]")
        assert page.locator("#check-button").count() == 0
        summary = page.locator("#summary").inner_text()
        assert "reminder" not in summary.replace("no reminders", "")
        assert "abuse@thames.example" in page.locator("#optout").inner_text()
        page.screenshot(path=str(screenshot_dir / "owner-page-opted-out-phone.png"), full_page=True)
    finally:
        context.close()


@pytest.mark.parametrize("language", ["de", "el", "pl"])
def test_long_words_fit_a_phone_in_every_alphabet(
    browser, live_server, screenshot_dir, language
) -> None:
    case, token = owner_case(language, [language])
    context, page = open_page(browser, live_server, token, "phone")
    try:
        for summary in page.locator("details summary").all():
            summary.click()  # everything unfolded: the widest the page gets
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        button = page.locator("#check-button").bounding_box()
        assert button is not None and button["y"] + button["height"] <= 844
        page.screenshot(
            path=str(screenshot_dir / f"owner-page-{language}-phone-open.png"), full_page=True
        )
    finally:
        context.close()
