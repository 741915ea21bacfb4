from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from campaign import services
from campaign.attribution.services import owner_merge, targets_attribute
from campaign.models import (
    Attribution,
    Campaign,
    Case,
    CaseEvent,
    Contact,
    RdapNetworkCache,
    ServerOwner,
    Suppression,
)
from scanning.models import Target
from scanning.signals import finding_recorded
from tests.campaign.attribution.base import AttributionTestCase


class RoutingTestCase(AttributionTestCase):
    def test_a_partner_country_routes_to_that_partner_in_its_language(self) -> None:
        target = self.make_target("198.51.100.20")
        targets_attribute(targets=[target])
        case = Case.objects.get(findings__target=target)
        self.assertEqual((case.partner, case.language, case.status), (self.beta, "de", "ready"))

    def test_an_unknown_country_goes_to_the_lead_agencys_triage(self) -> None:
        target = self.make_target("203.0.113.30")
        targets_attribute(targets=[target])
        case = Case.objects.get(findings__target=target)
        self.assertEqual(case.partner, self.lead)
        self.assertEqual(case.status, Case.Status.NEEDS_REVIEW)
        self.assertEqual(case.review_reason, "No partner agency for JP: lead agency triage.")

    def test_the_lead_agencys_own_country_is_not_triage(self) -> None:
        target = self.make_target("192.0.2.77")
        targets_attribute(targets=[target])
        case = Case.objects.get(findings__target=target)
        self.assertEqual((case.partner, case.status), (self.lead, Case.Status.READY))

    def test_an_owners_preferred_language_wins_when_the_partner_has_it(self) -> None:
        owner = ServerOwner.objects.create(
            name="x",
            rdap_handle="EXNET",
            partner=self.lead,
            corrections={"country": "CH", "preferred_language": "fr"},
        )
        target = self.make_target("192.0.2.77")
        targets_attribute(targets=[target])
        case = Case.objects.get(findings__target=target)
        self.assertEqual((case.server_owner, case.partner), (owner, self.switzerland))
        self.assertEqual(case.language, "fr")

    def test_a_preferred_language_the_partner_lacks_gives_its_first(self) -> None:
        ServerOwner.objects.create(
            name="x",
            rdap_handle="EXNET",
            partner=self.lead,
            corrections={"country": "CH", "preferred_language": "ja"},
        )
        target = self.make_target("192.0.2.77")
        targets_attribute(targets=[target])
        self.assertEqual(Case.objects.get(findings__target=target).language, "de")


class CaseGroupingTestCase(AttributionTestCase):
    def test_two_targets_of_one_owner_make_one_case(self) -> None:
        smtp = self.make_target("192.0.2.77")
        proxy = self.make_target("192.0.2.78", port=3128, protocol="http", verdict="likely-open")
        targets_attribute(targets=[smtp, proxy])
        self.assertEqual(ServerOwner.objects.filter(rdap_handle="EXNET").count(), 1)
        case = Case.objects.get(server_owner__rdap_handle="EXNET")
        self.assertEqual(case.findings.count(), 2)
        self.assertEqual(case.events.filter(kind=CaseEvent.Kind.FINDING_ADDED).count(), 2)

    def test_reattribution_adds_no_finding_twice(self) -> None:
        target = self.make_target("192.0.2.77")
        targets_attribute(targets=[target])
        targets_attribute(targets=[target])
        case = Case.objects.get(server_owner__rdap_handle="EXNET")
        self.assertEqual(case.events.filter(kind=CaseEvent.Kind.FINDING_ADDED).count(), 1)

    def test_a_finding_closed_since_joins_no_case(self) -> None:
        target = self.make_target("192.0.2.77")
        self.add_finding(target, verdict="closed")
        targets_attribute(targets=[target])
        self.assertFalse(Case.objects.filter(server_owner__rdap_handle="EXNET").exists())

    def test_a_new_open_finding_reopens_a_fixed_case(self) -> None:
        target = self.make_target("192.0.2.77")
        targets_attribute(targets=[target])
        case = Case.objects.get(server_owner__rdap_handle="EXNET")
        services.case_transition(case=case, to_status=Case.Status.NOTIFIED)
        services.case_transition(case=case, to_status=Case.Status.FIXED)
        self.add_finding(target, verdict="closed")
        finding = self.add_finding(target, verdict="confirmed-open")
        finding_recorded.send(sender=Target, finding=finding)
        case.refresh_from_db()
        self.assertEqual(case.status, Case.Status.NEEDS_REVIEW)
        self.assertTrue(case.events.filter(kind=CaseEvent.Kind.REOPENED).exists())
        self.assertEqual(case.findings.count(), 2)

    def test_an_active_suppression_suppresses_the_case(self) -> None:
        owner = ServerOwner.objects.create(name="x", rdap_handle="EXNET", partner=self.lead)
        Suppression.objects.create(
            partner=self.lead,
            server_owner=owner,
            reason=Suppression.Reason.OPT_OUT,
            expires_at=timezone.now() + timedelta(days=30),
        )
        targets_attribute(targets=[self.make_target("192.0.2.77")])
        self.assertEqual(Case.objects.get(server_owner=owner).status, Case.Status.SUPPRESSED)

    def test_an_expired_suppression_does_not(self) -> None:
        Suppression.objects.create(
            partner=self.lead,
            email="abuse@example.net",
            reason=Suppression.Reason.LEGAL_HOLD,
            expires_at=timezone.now() - timedelta(days=1),
        )
        targets_attribute(targets=[self.make_target("192.0.2.77")])
        case = Case.objects.get(server_owner__rdap_handle="EXNET")
        self.assertEqual(case.status, Case.Status.READY)

    def test_a_suppressed_address_alone_is_not_the_whole_chain(self) -> None:
        Suppression.objects.create(
            partner=self.lead, email="abuse@example.net", reason=Suppression.Reason.OPT_OUT
        )
        targets_attribute(targets=[self.make_target("192.0.2.77")])
        case = Case.objects.get(server_owner__rdap_handle="EXNET")
        self.assertEqual(case.status, Case.Status.READY)  # noc@ and the partner remain


class CorrectionTestCase(AttributionTestCase):
    def test_a_manual_correction_survives_reattribution(self) -> None:
        target = self.make_target("192.0.2.77")
        targets_attribute(targets=[target])
        owner = ServerOwner.objects.get(rdap_handle="EXNET")
        case = Case.objects.get(server_owner=owner)
        self.assertEqual((case.partner, case.language), (self.lead, "en"))
        owner.corrections = {
            "name": "Example Networks (Zurich office)",
            "country": "CH",
            "abuse_email": "security@example.net",
            "preferred_language": "fr",
        }
        owner.save()
        bounced = owner.contacts.get(email="noc@example.net")
        bounced.bounced_at = timezone.now()
        bounced.save()
        RdapNetworkCache.objects.all().delete()  # a fresh RDAP answer, not the cached one
        targets_attribute(targets=[target])
        self.assertEqual(self.arin.hits["/registry/ip/192.0.2.77"], 2)
        owner.refresh_from_db()
        self.assertEqual(owner.name, "Example Networks (Zurich office)")
        self.assertEqual((owner.country, owner.partner), ("CH", self.switzerland))
        self.assertEqual(owner.preferred_language, "fr")
        chain = list(owner.contacts.values_list("email", "source", "bounced_at"))
        self.assertEqual(
            [(e, s) for e, s, _ in chain],
            [
                ("security@example.net", "manual"),
                ("abuse@example.net", "rdap"),
                ("noc@example.net", "rdap"),
            ],  # the lead's triage address left with the routing; CH has no reply-to
        )
        self.assertIsNotNone(chain[2][2])  # the bounce is remembered
        case.refresh_from_db()
        self.assertEqual((case.partner, case.language), (self.switzerland, "fr"))
        note = case.events.filter(kind=CaseEvent.Kind.NOTE).latest("id")
        self.assertEqual(note.note, "Routed from US/en to CH/fr.")
        self.assertEqual(Attribution.objects.get(target=target).server_owner, owner)

    def test_staff_added_contacts_stay_ahead_of_rdap_ones(self) -> None:
        owner = ServerOwner.objects.create(name="x", rdap_handle="EXNET", partner=self.lead)
        Contact.objects.create(
            server_owner=owner, position=0, kind="abuse", email="cert@example.net"
        )
        targets_attribute(targets=[self.make_target("192.0.2.77")])
        self.assertEqual(
            list(owner.contacts.values_list("email", flat=True)),
            ["cert@example.net", "abuse@example.net", "noc@example.net", "triage@lead.example"],
        )


class MergeTestCase(AttributionTestCase):
    def test_merging_moves_targets_contacts_and_cases_with_events(self) -> None:
        targets_attribute(targets=[self.make_target("192.0.2.77")])
        survivor = ServerOwner.objects.get(rdap_handle="EXNET")
        wave2 = Campaign.objects.create(slug="wave-2", name="Wave 2")
        merged = ServerOwner.objects.create(name="Old name", rdap_handle="OLD-1", partner=self.lead)
        Contact.objects.create(
            server_owner=merged, position=0, kind="abuse", email="o@ex.net", source="rdap"
        )
        other = self.make_target("192.0.2.90")
        Attribution.objects.create(target=other, server_owner=merged)
        moved = services.case_add_finding(
            campaign=wave2, owner=merged, finding=other.findings.get()
        )
        self.client.force_login(self.regulator)
        r = self.client.post(
            "/admin/campaign/serverowner/",
            {"action": "merge_owners", "_selected_action": [survivor.pk, merged.pk]},
        )
        self.assertEqual(r.status_code, 302)
        self.assertFalse(ServerOwner.objects.filter(pk=merged.pk).exists())
        moved.refresh_from_db()
        self.assertEqual(moved.server_owner, survivor)
        self.assertTrue(moved.events.filter(kind=CaseEvent.Kind.NOTE, actor=self.regulator))
        self.assertEqual(Attribution.objects.get(target=other).server_owner, survivor)
        self.assertEqual(
            list(survivor.contacts.values_list("email", flat=True)),
            ["abuse@example.net", "o@ex.net", "noc@example.net", "triage@lead.example"],
        )  # abuse contacts first, the partner last
        survivor.refresh_from_db()
        self.assertEqual(survivor.corrections["merged_handles"], ["OLD-1"])

    def test_owners_with_cases_in_the_same_campaign_are_not_merged(self) -> None:
        targets_attribute(targets=[self.make_target("192.0.2.77")])
        survivor = ServerOwner.objects.get(rdap_handle="EXNET")
        report = owner_merge(into=survivor, others=[self.alpha_case.server_owner])
        self.assertEqual(report.merged, [])
        self.assertIn("Wave 1", report.refused[0])
        self.assertTrue(ServerOwner.objects.filter(pk=self.alpha_case.server_owner_id).exists())

    def test_a_merged_handle_leads_to_the_survivor_on_reattribution(self) -> None:
        survivor = ServerOwner.objects.create(name="Survivor", partner=self.lead)
        stale = ServerOwner.objects.create(name="x", rdap_handle="EXNET", partner=self.lead)
        owner_merge(into=survivor, others=[stale])
        target = self.make_target("192.0.2.77")
        targets_attribute(targets=[target])
        self.assertEqual(Attribution.objects.get(target=target).server_owner, survivor)
        self.assertFalse(ServerOwner.objects.filter(rdap_handle="EXNET").exists())


class TargetAdminTestCase(AttributionTestCase):
    def test_run_attribution_from_the_target_changelist(self) -> None:
        target = self.make_target("198.51.100.20")
        self.client.force_login(self.regulator)
        with self.captureOnCommitCallbacks(execute=True):
            r = self.client.post(
                "/admin/scanning/target/",
                {"action": "run_attribution", "_selected_action": [target.pk]},
            )
        self.assertEqual(r.status_code, 302)
        a = Attribution.objects.get(target=target)
        self.assertEqual(a.server_owner.name, "Example Hosting GmbH")
        self.assertTrue(Case.objects.filter(findings__target=target, partner=self.beta).exists())
