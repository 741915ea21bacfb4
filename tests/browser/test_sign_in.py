"""Two-factor sign-in through a real browser: password, enrolment from the page's key, code."""

from __future__ import annotations

from base64 import b32decode

import pytest
from django.contrib.auth.models import User
from django_otp.oath import totp

from campaign.models import Membership, Partner

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_caseworker_enrols_an_authenticator_and_then_reaches_the_cases(
    page, live_server, settings, screenshot_dir
):
    settings.MFA_REQUIRED = True
    partner = Partner.objects.create(
        country="GB", country_name="United Kingdom", agency="UK Agency", languages=["en"]
    )
    user = User.objects.create_user("gb-cw", password="long enough passphrase", is_staff=True)
    Membership.objects.create(user=user, partner=partner, role=Membership.Role.CASEWORKER)

    page.goto(f"{live_server.url}/admin/login/?next=/admin/campaign/case/")
    page.fill("#id_username", "gb-cw")
    page.fill("#id_password", "long enough passphrase")
    with page.expect_navigation():
        page.click("input[type=submit]")
    assert "/admin/mfa/" in page.url
    assert page.locator("#mfa-qr svg").count() == 1
    page.screenshot(path=str(screenshot_dir / "mfa-enrol.png"))
    key = page.locator("#mfa-secret").inner_text().replace(" ", "")
    secret = b32decode(key + "=" * (-len(key) % 8))
    page.fill("#id_token", f"{totp(secret):06d}")
    with page.expect_navigation():
        page.click("#mfa-enrol-form input[type=submit]")
    assert page.url.endswith("/admin/campaign/case/")
    assert user.totpdevice_set.get().confirmed
