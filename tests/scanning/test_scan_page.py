from __future__ import annotations

import ipaddress
import re

from django.test import Client, override_settings

from campaign.models import Partner
from scanning import services
from scanning.models import Exclusion
from tests.base import BaseTestCase


class ScanPageTestCase(BaseTestCase):
    def test_it_explains_the_scanner_with_strict_headers(self) -> None:
        response = self.client.get("/scanning/")
        self.assertContains(response, "scanner.secure-your-server.invalid")
        self.assertContains(response, "never tries to log in")
        self.assertIn("default-src 'none'", response["Content-Security-Policy"])
        self.assertEqual(response["Referrer-Policy"], "same-origin")
        self.assertNotContains(response, "https://")  # no external assets

    def test_an_opt_out_files_an_exclusion_request(self) -> None:
        response = self.client.post(
            "/scanning/",
            {"network": "192.0.2.77/24", "email": "noc@owner.example", "reason": "lab"},
        )
        self.assertRedirects(response, "/scanning/opt-out/received/")
        exclusion = Exclusion.objects.get()
        self.assertEqual(
            (exclusion.network, exclusion.status, exclusion.requester_email),
            ("192.0.2.0/24", "requested", "noc@owner.example"),
        )
        self.assertEqual(services.excluded_networks(), [])  # not before staff approve it

    def test_bad_networks_are_refused_with_a_reason(self) -> None:
        for network, message in (
            ("not-an-ip", "is not an IP address"),
            ("10.0.0.0/8", "larger than /16"),
            ("2001:db8::/16", "larger than /32"),
        ):
            response = self.client.post(
                "/scanning/", {"network": network, "email": "noc@owner.example"}
            )
            self.assertContains(response, message)
        self.assertFalse(Exclusion.objects.exists())

    def test_the_form_needs_its_csrf_token(self) -> None:
        client = Client(enforce_csrf_checks=True)
        response = client.post("/scanning/", {"network": "192.0.2.1", "email": "a@b.example"})
        self.assertEqual(response.status_code, 403)
        self.assertFalse(Exclusion.objects.exists())

    def test_lead_staff_approve_and_the_network_is_excluded(self) -> None:
        exclusion = services.exclusion_request(
            network="198.51.100.0/25", requester_email="noc@owner.example"
        )
        self.client.force_login(self.lead_staff)
        self.client.post(
            "/admin/scanning/exclusion/", {"action": "approve", "_selected_action": [exclusion.pk]}
        )
        exclusion.refresh_from_db()
        self.assertEqual((exclusion.status, exclusion.decided_by), ("approved", self.lead_staff))
        self.assertEqual(services.excluded_networks(), [ipaddress.ip_network("198.51.100.0/25")])

    def test_partner_staff_cannot_approve(self) -> None:
        exclusion = services.exclusion_request(
            network="198.51.100.0/25", requester_email="noc@owner.example"
        )
        self.client.force_login(self.alpha_staff)
        self.client.post(
            "/admin/scanning/exclusion/", {"action": "approve", "_selected_action": [exclusion.pk]}
        )
        exclusion.refresh_from_db()
        self.assertEqual(exclusion.status, "requested")


class ScanPageWordingTestCase(BaseTestCase):
    def test_with_default_settings_it_names_the_lead_agency_once(self) -> None:
        Partner.objects.filter(is_lead=True).update(reply_to="scanner@lead.example")
        with override_settings(SCANNER_OPERATOR="", SCANNER_CONTACT_EMAIL=""):
            page = self.client.get("/scanning/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
        text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
        self.assertIn("This scanner is run by Lead Agency as part of Secure Your Server,", text)
        self.assertEqual(text.count("Secure Your Server campaign"), 0)
        self.assertNotIn("campaign for the", text)
        self.assertIn('href="mailto:scanner@lead.example"', page)
        self.assertNotIn("localhost", page)

    def test_without_any_operator_it_still_reads_as_one_sentence(self) -> None:
        Partner.objects.filter(is_lead=True).delete()
        with override_settings(SCANNER_OPERATOR="", SCANNER_CONTACT_EMAIL=""):
            r = self.client.get("/scanning/", HTTP_ACCEPT_LANGUAGE="en")
        self.assertContains(r, "This scanner is run for Secure Your Server, a voluntary")
        self.assertNotContains(r, "mailto:")

    def test_a_configured_operator_wins(self) -> None:
        with override_settings(
            SCANNER_OPERATOR="Example Regulator", SCANNER_CONTACT_EMAIL="a@b.example"
        ):
            r = self.client.get("/scanning/", HTTP_ACCEPT_LANGUAGE="en")
        self.assertContains(r, "run by Example Regulator as part of")
        self.assertContains(r, "mailto:a@b.example")

    def test_it_speaks_the_visitors_language_with_translated_errors(self) -> None:
        r = self.client.get("/scanning/", HTTP_ACCEPT_LANGUAGE="de")
        self.assertContains(r, '<html lang="de">')
        self.assertContains(r, "Warum hat sich unser Scanner mit Ihrem Server verbunden?")
        r = self.client.post(
            "/scanning/", {"network": "10.0.0.0/8", "email": "x"}, HTTP_ACCEPT_LANGUAGE="de"
        )
        self.assertContains(r, "Netze größer als /16 bearbeiten wir per E-Mail")
        r = self.client.get("/scanning/", HTTP_ACCEPT_LANGUAGE="zh-Hant-TW")
        self.assertContains(r, '<html lang="zh-Hant">')
