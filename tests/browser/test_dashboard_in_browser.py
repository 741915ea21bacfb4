"""The dashboard and /results/ in headless Chromium, at desktop (1,366 px) and phone (390 px)
width, screenshotted into var/screenshots/ for people to look at."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from bench.dashboard_bench import populate
from campaign import demo
from reporting.services import figures_refresh
from tests.browser.test_admin_in_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = {"desktop": (1366, 900), "phone": (390, 844)}


@pytest.fixture
def campaign_data() -> None:
    call_command("load_demo", verbosity=0, stdout=open("/dev/null", "w"))
    populate(400)
    figures_refresh()


def _watch(page) -> list[str]:
    """Collects what went wrong: blocked by the CSP, or a failed request (bar the favicon)."""
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )
    page.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )
    return problems


def _too_wide(page) -> list[str]:
    """Elements sticking out of the viewport (those inside a scrolling table box may)."""
    return page.evaluate(
        """[...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
        .filter(e => !e.closest('.sys-scroll, .results-scroll, .visually-hidden'))
        .slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)"""
    )


def test_the_lead_sees_the_dashboard_at_desktop_and_phone_width(
    browser, live_server, screenshot_dir, campaign_data
):
    for name, (width, height) in WIDTHS.items():
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        blocked = _watch(page)
        log_in(page, live_server, demo.ADMIN_USERNAME, demo.ADMIN_PASSWORD)
        assert page.locator("h1").inner_text() == "Where the campaign stands"
        assert page.locator("svg.chart").count() == 5
        assert page.locator("table.sys-partners tbody tr").count() == 26
        assert _too_wide(page) == [], name
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth + 1"), name
        page.screenshot(path=str(screenshot_dir / f"dashboard-lead-{name}.png"), full_page=True)
        assert blocked == []
        context.close()


def test_a_partner_sees_its_own_dashboard(browser, live_server, screenshot_dir, campaign_data):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    log_in(page, live_server, "de-viewer", demo.DEMO_PASSWORD)
    rows = page.locator("table.sys-partners tbody tr")
    assert rows.count() == 1
    assert "Germany" in rows.inner_text()
    assert "United Kingdom" not in page.content()
    page.screenshot(path=str(screenshot_dir / "dashboard-partner-desktop.png"), full_page=True)
    context.close()


def test_the_public_results_page_at_desktop_and_phone_width(
    browser, live_server, screenshot_dir, campaign_data
):
    for name, (width, height) in WIDTHS.items():
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        violations = _watch(page)
        page.goto(f"{live_server.url}/results/")
        assert page.locator("h1").is_visible()
        assert page.locator("svg.chart").count() == 2
        assert _too_wide(page) == [], name
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth + 1"), name
        page.screenshot(path=str(screenshot_dir / f"results-{name}.png"), full_page=True)
        assert violations == []  # nothing the strict CSP had to block
        context.close()
