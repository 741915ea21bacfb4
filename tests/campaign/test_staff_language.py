"""Staff read the admin in their own language: their partner's first language by default, or the
one they choose on the admin's language page; owners' pages keep the case's language."""

from __future__ import annotations

from campaign.models import Partner, StaffPreference
from tests.base import BaseTestCase


class StaffLanguageTestCase(BaseTestCase):
    def test_partner_staff_get_their_partners_first_language(self) -> None:
        self.client.force_login(self.beta_staff)  # Betaland's partner writes in German
        r = self.client.get("/admin/", HTTP_ACCEPT_LANGUAGE="en")
        self.assertContains(r, "Kampagnenverwaltung")  # our index title, translated
        self.assertContains(r, "Abmelden")  # Django's own "Log out"
        self.assertEqual(r["Content-Language"], "de")
        self.client.force_login(self.alpha_staff)
        r = self.client.get("/admin/", HTTP_ACCEPT_LANGUAGE="de")
        self.assertContains(r, "Campaign administration")  # the browser does not decide

    def test_a_listed_language_the_site_does_not_speak_is_skipped(self) -> None:
        Partner.objects.filter(pk=self.beta.pk).update(languages=["ga", "fr"])
        self.client.force_login(self.beta_staff)
        self.assertContains(self.client.get("/admin/"), "Administration de la campagne")

    def test_a_user_chooses_their_own_language_and_keeps_it(self) -> None:
        self.client.force_login(self.alpha_staff)
        page = self.client.get("/admin/language/")
        self.assertContains(page, "Your partner&#x27;s language (English)")
        r = self.client.post("/admin/language/", {"language": "ja"}, follow=True)
        self.assertContains(r, "キャンペーン管理")
        self.assertContains(r, "管理画面の言語を 日本語 に変更しました。")
        self.assertEqual(StaffPreference.objects.get(user=self.alpha_staff).language, "ja")
        self.client.logout()
        self.client.force_login(self.alpha_staff)  # a new session reads the stored choice
        self.assertContains(self.client.get("/admin/"), "キャンペーン管理")
        self.client.force_login(self.beta_staff)  # nobody else's admin changes
        self.assertContains(self.client.get("/admin/"), "Kampagnenverwaltung")

    def test_going_back_to_the_partners_language(self) -> None:
        StaffPreference.objects.create(user=self.beta_staff, language="fr")
        self.client.force_login(self.beta_staff)
        self.assertContains(self.client.get("/admin/"), "Administration de la campagne")
        self.client.post("/admin/language/", {"language": ""})
        self.assertContains(self.client.get("/admin/"), "Kampagnenverwaltung")

    def test_an_unknown_language_is_refused(self) -> None:
        self.client.force_login(self.alpha_staff)
        r = self.client.post("/admin/language/", {"language": "tlh"})
        self.assertEqual(r.status_code, 200)
        self.assertContains(r, "errorlist")
        self.assertFalse(StaffPreference.objects.exists())

    def test_the_language_page_needs_a_login(self) -> None:
        r = self.client.get("/admin/language/")
        self.assertEqual(r.status_code, 302)
        self.assertIn("/admin/login/", r["Location"])

    def test_outside_the_admin_the_staff_language_does_not_apply(self) -> None:
        StaffPreference.objects.create(user=self.alpha_staff, language="ja")
        self.client.force_login(self.alpha_staff)
        r = self.client.get("/scanning/", HTTP_ACCEPT_LANGUAGE="en")
        self.assertContains(r, '<html lang="en">')
