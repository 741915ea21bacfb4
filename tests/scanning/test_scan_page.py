from __future__ import annotations

import ipaddress

from django.test import Client

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
