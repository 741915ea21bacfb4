"""The work queue in headless Chromium: a partner's caseworker sees only their items, with the
count in the header, and clears one with a click."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from campaign import services
from campaign.models import Case, Membership
from tests.base import make_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class World:
    alpha_case: Case
    beta_case: Case
    alpha_staff: User


def test_a_partner_caseworker_sees_only_their_items_and_clears_one(
    page, live_server, screenshot_dir
) -> None:
    world = World()
    make_world(world)
    user = User.objects.get(username="alpha")
    user.set_password("caseworker-pw")
    user.save()
    assert Membership.objects.get(user=user).role == "caseworker"
    services.case_correction(case=world.alpha_case, kind="not_mine")
    services.case_opt_out(case=world.alpha_case, email="abuse@alpha.example")
    services.case_correction(case=world.beta_case, kind="not_mine")

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "alpha")
    page.fill("#id_password", "caseworker-pw")
    with page.expect_navigation():
        page.click("input[type=submit]")
    assert page.locator("#work-queue-count").inner_text() == "1"
    with page.expect_navigation():
        page.click("a.work-queue-link")
    items = page.locator("tr.work-item")
    assert items.count() == 1
    text = page.locator("#content-main").inner_text()
    assert world.alpha_case.reference in text
    assert world.beta_case.reference not in text
    assert "Opt-out by abuse@alpha.example" in text
    page.screenshot(path=str(screenshot_dir / "work-queue.png"), full_page=True)
    with page.expect_navigation():
        page.click(f'tr[data-case="{world.alpha_case.reference}"] button[value="done"]')
    assert "handled" in page.locator(".messagelist").inner_text()
    assert page.locator("tr.work-item").count() == 0
    assert page.locator("#work-queue-count").inner_text() == "0"
    world.alpha_case.refresh_from_db()
    assert world.alpha_case.attention == ""
    assert world.alpha_case.status == Case.Status.SUPPRESSED
