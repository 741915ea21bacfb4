"""Staff sign-in: each test is named for the attack it stops.

These sign in through the real login form (the rest of the suite uses force_login with
MFA_REQUIRED off, see tests/conftest.py), with MFA_REQUIRED on as in production.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.models import User
from django.test import override_settings
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from config import accounts
from tests.base import BaseTestCase

PASSWORD = "correct horse battery staple"


def code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


class AccountsTestCase(BaseTestCase):
    def setUp(self) -> None:
        self.enterContext(override_settings(MFA_REQUIRED=True))
        for user in (self.alpha_staff, self.lead_staff, self.regulator):
            user.set_password(PASSWORD)
            user.save()

    def sign_in(self, username: str, password: str = PASSWORD, **extra: Any) -> Any:
        return self.client.post(
            "/admin/login/",
            {"username": username, "password": password, "next": "/admin/"},
            **extra,
        )

    def signed_in(self) -> bool:
        return "_auth_user_id" in self.client.session

    def device(self, user: User) -> TOTPDevice:
        return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


class LockoutTestCase(AccountsTestCase):
    def test_it_locks_out_a_password_guesser_before_the_right_password(self) -> None:
        for attempt in range(5):
            self.sign_in("alpha", f"guess-{attempt}", REMOTE_ADDR=f"192.0.2.{attempt + 1}")
        response = self.sign_in("alpha", REMOTE_ADDR="192.0.2.99")  # the right one, too late
        self.assertEqual(response.status_code, 429)
        self.assertContains(response, "Try again in 15 minutes", status_code=429)
        self.assertFalse(self.signed_in())
        # Another account is not locked by Alpha's attacker (a different address).
        self.sign_in("lead", REMOTE_ADDR="198.51.100.7")
        self.assertTrue(self.signed_in())

    def test_it_locks_out_an_address_spraying_one_password_over_many_accounts(self) -> None:
        for name in ("a", "b", "c", "d", "e"):
            self.sign_in(name, "Summer2026!", REMOTE_ADDR="203.0.113.9")
        self.assertEqual(self.sign_in("lead", REMOTE_ADDR="203.0.113.9").status_code, 429)
        self.assertFalse(self.signed_in())

    def test_behind_the_proxy_it_counts_the_forwarded_address_not_the_proxys(self) -> None:
        request: Any = type("R", (), {})()
        request.META = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 192.0.2.5"}
        with override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")):
            self.assertEqual(accounts.client_ip(request), "192.0.2.5")  # not the forged first
        self.assertEqual(accounts.client_ip(request), "10.0.0.2")  # no proxy: the peer


class PasswordTestCase(AccountsTestCase):
    def test_it_refuses_a_weak_new_password(self) -> None:
        self.client.force_login(self.regulator)
        session = self.client.session  # verified, as after a code
        session.update({"otp_device_id": self.device(self.regulator).persistent_id})
        session.save()
        for weak in ("password1", "12345678901234", "regulator-regulator"[:12], "short"):
            response = self.client.post(
                "/admin/password_change/",
                {"old_password": PASSWORD, "new_password1": weak, "new_password2": weak},
            )
            self.assertEqual(response.status_code, 200, weak)
            self.assertTrue(response.context["form"].errors, weak)
        self.regulator.refresh_from_db()
        self.assertTrue(self.regulator.check_password(PASSWORD))


class SecondFactorTestCase(AccountsTestCase):
    def test_a_stolen_password_alone_does_not_open_the_admin(self) -> None:
        self.sign_in("alpha")
        self.assertTrue(self.signed_in())
        response = self.client.get("/admin/campaign/case/")
        self.assertEqual(response.status_code, 302)
        self.assertTrue(response["Location"].startswith("/admin/mfa/?next="))

    def test_it_keeps_a_half_signed_in_session_out_of_every_admin_page(self) -> None:
        self.sign_in("regulator")  # a superuser: every page would be open to them otherwise
        urls = ["/admin/", "/admin/password_change/", "/admin/autocomplete/", "/admin/r/1/1/"]
        for model in admin.site._registry:
            base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
            urls += [base, f"{base}add/", f"{base}1/change/"]
        for url in urls:
            with self.subTest(url=url):
                for method in (self.client.get, self.client.post):
                    response = method(url)
                    self.assertEqual(response.status_code, 302)
                    self.assertTrue(response["Location"].startswith("/admin/mfa/"))

    def test_it_asks_an_enrolled_user_for_a_code_and_refuses_a_wrong_one(self) -> None:
        device = self.device(self.lead_staff)
        self.sign_in("lead")
        response = self.client.get("/admin/")
        self.assertEqual(response["Location"], "/admin/mfa/verify/?next=%2Fadmin%2F")
        wrong = f"{(int(code(device)) + 1) % 1_000_000:06d}"
        response = self.client.post("/admin/mfa/verify/", {"token": wrong, "next": "/admin/"})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(self.client.get("/admin/").status_code, 302)
        device.refresh_from_db()
        device.throttle_reset()  # django-otp makes the next try wait after a wrong code
        response = self.client.post(
            "/admin/mfa/verify/", {"token": code(device), "next": "/admin/"}
        )
        self.assertEqual(response["Location"], "/admin/")
        self.assertEqual(self.client.get("/admin/").status_code, 200)

    @override_settings(OTP_TOTP_THROTTLE_FACTOR=600)
    def test_it_throttles_guessing_the_code(self) -> None:
        device = self.device(self.lead_staff)
        self.sign_in("lead")
        self.client.post("/admin/mfa/verify/", {"token": "000000"})
        response = self.client.post("/admin/mfa/verify/", {"token": code(device)})
        self.assertContains(response, "Too many wrong codes")
        self.assertEqual(self.client.get("/admin/").status_code, 302)

    def test_it_never_redirects_off_site_after_the_code(self) -> None:
        device = self.device(self.lead_staff)
        self.sign_in("lead")
        response = self.client.post(
            "/admin/mfa/verify/", {"token": code(device), "next": "https://evil.example/"}
        )
        self.assertEqual(response["Location"], "/admin/")

    def test_a_user_enrols_with_the_qr_code_then_gets_in(self) -> None:
        self.sign_in("alpha")
        page = self.client.get("/admin/mfa/?next=/admin/campaign/case/")
        self.assertContains(page, "<svg")
        self.assertContains(page, 'id="mfa-secret"')
        device = TOTPDevice.objects.get(user=self.alpha_staff)
        self.assertFalse(device.confirmed)
        self.client.post("/admin/mfa/", {"token": "000000", "next": "/admin/campaign/case/"})
        device.refresh_from_db()
        self.assertFalse(device.confirmed)
        device.throttle_reset()
        response = self.client.post(
            "/admin/mfa/", {"token": code(device), "next": "/admin/campaign/case/"}
        )
        self.assertEqual(response["Location"], "/admin/campaign/case/")
        device.refresh_from_db()
        self.assertTrue(device.confirmed)
        self.assertEqual(self.client.get("/admin/campaign/case/").status_code, 200)
        # Enrolled: the page no longer shows the secret, and the next sign-in asks for a code.
        self.assertNotContains(self.client.get("/admin/mfa/"), 'id="mfa-secret"')
        self.client.logout()
        self.sign_in("alpha")
        self.assertTrue(self.client.get("/admin/")["Location"].startswith("/admin/mfa/verify/"))

    def test_with_mfa_optional_an_enrolled_user_still_gives_a_code(self) -> None:
        self.device(self.alpha_staff)
        with override_settings(MFA_REQUIRED=False):
            self.sign_in("alpha")
            self.assertTrue(self.client.get("/admin/")["Location"].startswith("/admin/mfa/verify/"))
            self.client.logout()
            self.sign_in("lead")  # not enrolled: a password is enough while MFA is optional
            self.assertEqual(self.client.get("/admin/").status_code, 200)

    def test_the_deploy_check_warns_when_mfa_is_off(self) -> None:
        self.assertEqual(accounts.check_mfa_required(None), [])
        with override_settings(MFA_REQUIRED=False):
            self.assertEqual([m.id for m in accounts.check_mfa_required(None)], ["accounts.W001"])
