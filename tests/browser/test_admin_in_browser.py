"""The admin through a real browser: the login form posts (CSRF, Origin) and scoping holds."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from campaign import demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    with page.expect_navigation():
        page.click("input[type=submit]")


def test_the_demo_admin_logs_in_and_sees_every_partners_cases(page, live_server, screenshot_dir):
    call_command("load_demo", verbosity=0, stdout=open("/dev/null", "w"))
    log_in(page, live_server, demo.ADMIN_USERNAME, demo.ADMIN_PASSWORD)
    assert page.url.endswith("/admin/")
    page.goto(f"{live_server.url}/admin/campaign/case/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 13
    page.screenshot(path=str(screenshot_dir / "admin-cases.png"))


def test_a_partner_viewer_logs_in_and_sees_only_their_country(page, live_server):
    call_command("load_demo", verbosity=0, stdout=open("/dev/null", "w"))
    log_in(page, live_server, "de-viewer", demo.DEMO_PASSWORD)
    page.goto(f"{live_server.url}/admin/campaign/case/")
    text = page.locator("#result_list").inner_text()
    assert "Rheinland Datenzentrum GmbH" in text
    assert "Thames Valley Hosting" not in text
