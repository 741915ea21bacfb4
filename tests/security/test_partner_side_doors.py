"""Side doors between partners: each test is named for the attack it stops.

The admin's own routes are swept in tests/campaign/test_partner_isolation.py; these are the
ways one partner's staff could still reach into another's cases through data that feeds
attribution, scanning or sending.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.models import User
from django.core import mail
from django.test import RequestFactory
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from campaign import services
from campaign.attribution.services import targets_attribute
from campaign.models import Case, Contact, Membership, ServerOwner, Suppression
from letters import services as letter_services
from letters.models import Letter
from letters.tasks import send_letter
from scanning.models import Target
from tests.base import BaseTestCase
from tests.campaign.attribution.base import AttributionTestCase
from tests.letters.helpers import approved_template
from tests.security.forms import admin_form_data

GERMAN_HANDLE = "ORG-EH1-RIPE"  # the registrant of 198.51.100.0/24 in the RIPE fixture


def _url(model: type, suffix: str = "") -> str:
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/{suffix}"


class HandleAcrossPartnersTestCase(AttributionTestCase):
    def test_it_stops_a_partner_pulling_another_partners_target_by_rdap_handle(self) -> None:
        # The poisoned owner is older, so "the oldest owner with the handle" would pick it.
        poisoned = ServerOwner.objects.create(
            name="Alpha Decoy",
            rdap_handle=GERMAN_HANDLE,
            country="GB",
            partner=self.alpha,
            corrections={"country": "GB"},
        )
        Contact.objects.create(
            server_owner=poisoned, position=0, kind="abuse", email="abuse@decoy.example"
        )
        target = self.make_target("198.51.100.20")
        targets_attribute(targets=[target])
        case = Case.objects.get(findings__target=target)
        self.assertEqual(case.partner, self.beta)
        self.assertNotEqual(case.server_owner, poisoned)
        self.assertEqual(case.server_owner.rdap_handle, GERMAN_HANDLE)
        self.assertEqual(
            list(poisoned.contacts.values_list("email", flat=True)), ["abuse@decoy.example"]
        )
        self.assertFalse(Case.objects.filter(server_owner=poisoned).exists())

    def test_a_target_keeps_the_owner_the_lead_moved_to_another_partner(self) -> None:
        # The lead corrects the owner's country: its targets stay with it on re-attribution.
        target = self.make_target("198.51.100.20")
        targets_attribute(targets=[target])
        owner = Case.objects.get(findings__target=target).server_owner
        owner.corrections = {"country": "GB"}
        owner.save()
        targets_attribute(targets=[target])
        target.attribution.refresh_from_db()
        self.assertEqual(target.attribution.server_owner, owner)
        owner.refresh_from_db()
        self.assertEqual(owner.partner, self.alpha)


class OwnerFieldsTestCase(BaseTestCase):
    def test_it_stops_a_partner_caseworker_setting_an_rdap_handle_or_corrections(self) -> None:
        owner = self.alpha_case.server_owner
        self.client.force_login(self.alpha_staff)
        url = _url(ServerOwner, f"{owner.pk}/change/")
        page = self.client.get(url)
        for field in ("rdap_handle", "country", "corrections"):
            self.assertNotIn(field, page.context["adminform"].form.fields)
        data = admin_form_data(page)
        data.update(
            rdap_handle=GERMAN_HANDLE, country="DE", corrections='{"country": "DE"}', notes="x"
        )
        response = self.client.post(url, data)
        self.assertEqual(response.status_code, 302)
        owner.refresh_from_db()
        self.assertEqual(owner.notes, "x")  # the post went through; the steering fields did not
        self.assertEqual((owner.rdap_handle, owner.country, owner.corrections), ("", "GB", {}))

    def test_the_lead_still_corrects_an_owners_country_and_handle(self) -> None:
        owner = self.alpha_case.server_owner
        self.client.force_login(self.lead_staff)
        url = _url(ServerOwner, f"{owner.pk}/change/")
        data = admin_form_data(self.client.get(url))
        data.update(rdap_handle="ALPHA-HANDLE", country="IE")
        self.assertEqual(self.client.post(url, data).status_code, 302)
        owner.refresh_from_db()
        self.assertEqual((owner.rdap_handle, owner.country), ("ALPHA-HANDLE", "IE"))
        self.assertEqual(owner.corrections.get("country"), "IE")


class SuppressionScopeTestCase(BaseTestCase):
    def setUp(self) -> None:
        self.beta_email = "abuse@beta.example"
        self.alpha_email = "abuse@alpha.example"

    def test_it_stops_one_partners_suppression_silencing_another_partners_letters(self) -> None:
        Suppression.objects.create(partner=self.alpha, email=self.beta_email, reason="other")
        Suppression.objects.create(
            partner=self.alpha, server_owner=self.beta_case.server_owner, reason="legal_hold"
        )
        self.assertFalse(letter_services.email_is_suppressed(self.beta_email, partner=self.beta))
        self.assertEqual(letter_services.letter_next_contact(self.beta_case).email, self.beta_email)
        self.assertFalse(
            services.owner_is_suppressed(self.beta_case.server_owner, partner=self.beta)
        )
        services.case_settle(case=self.beta_case)
        self.beta_case.refresh_from_db()
        self.assertNotEqual(self.beta_case.status, Case.Status.SUPPRESSED)

    def test_a_partners_own_suppression_still_stops_its_letters(self) -> None:
        Suppression.objects.create(partner=self.alpha, email=self.alpha_email, reason="other")
        self.assertTrue(letter_services.email_is_suppressed(self.alpha_email, partner=self.alpha))
        self.assertIsNone(letter_services.letter_next_contact(self.alpha_case))

    def test_a_lead_global_suppression_stops_every_partners_letters(self) -> None:
        Suppression.objects.create(partner=None, email=self.beta_email, reason="legal_hold")
        self.assertTrue(letter_services.email_is_suppressed(self.beta_email, partner=self.beta))
        self.assertIsNone(letter_services.letter_next_contact(self.beta_case))
        self.assertTrue(
            services.owner_is_suppressed(self.beta_case.server_owner, partner=self.beta)
        )

    def send_alpha_letter_after(self, *suppressions: Suppression) -> Letter:
        """Queue Alpha's letter, let `suppressions` be added while it waits, then send it."""
        approved_template(self.alpha)
        with self.captureOnCommitCallbacks(execute=False):
            letter = letter_services.letter_queue(case=self.alpha_case, fresh=True)
        for suppression in suppressions:
            suppression.save()
        send_letter(letter.id)
        letter.refresh_from_db()
        return letter

    def test_another_partners_suppression_added_after_queueing_does_not_stop_the_send(
        self,
    ) -> None:
        letter = self.send_alpha_letter_after(
            Suppression(partner=self.beta, email=self.alpha_email, reason="opt_out"),
            Suppression(
                partner=self.beta, server_owner=self.alpha_case.server_owner, reason="legal_hold"
            ),
        )
        self.assertEqual(letter.status, Letter.Status.SENT)
        self.addCleanup(letter.pdf.delete, save=False)
        self.assertEqual([m.to for m in mail.outbox], [[self.alpha_email]])

    def test_a_global_suppression_added_after_queueing_stops_the_send(self) -> None:
        for suppression in (
            Suppression(partner=None, email=self.alpha_email, reason="legal_hold"),
            Suppression(
                partner=None, server_owner=self.alpha_case.server_owner, reason="legal_hold"
            ),
        ):
            Letter.objects.all().delete()
            Suppression.objects.all().delete()
            letter = self.send_alpha_letter_after(suppression)
            self.assertEqual(letter.status, Letter.Status.FAILED)
            self.assertIn("suppressed", letter.error)
        self.assertEqual(mail.outbox, [])

    def test_it_stops_a_partner_adding_a_global_or_another_partners_suppression(self) -> None:
        self.client.force_login(self.alpha_staff)
        base = {"email": self.beta_email, "reason": "other", "note": ""}
        for partner in ("", str(self.beta.pk)):
            response = self.client.post(_url(Suppression, "add/"), {**base, "partner": partner})
            self.assertEqual(response.status_code, 200)  # the form again, with the error
            self.assertTrue(response.context["adminform"].form.errors.get("partner"))
        self.assertFalse(Suppression.objects.exists())
        response = self.client.post(
            _url(Suppression, "add/"), {**base, "partner": str(self.alpha.pk)}
        )
        self.assertEqual(response.status_code, 302)
        self.assertEqual(Suppression.objects.get().partner, self.alpha)

    def test_the_lead_adds_a_global_suppression(self) -> None:
        self.client.force_login(self.lead_staff)
        response = self.client.post(
            _url(Suppression, "add/"),
            {"email": self.beta_email, "reason": "legal_hold", "note": "", "partner": ""},
        )
        self.assertEqual(response.status_code, 302)
        self.assertTrue(Suppression.objects.get().is_global)

    def test_a_partner_sees_the_global_suppressions_that_touch_it_read_only(self) -> None:
        everyone = Suppression.objects.create(email="x@example.net", reason="legal_hold")
        their_owner = Suppression.objects.create(
            server_owner=self.alpha_case.server_owner, reason="legal_hold"
        )
        other_owner = Suppression.objects.create(
            server_owner=self.beta_case.server_owner, reason="legal_hold"
        )
        betas = Suppression.objects.create(partner=self.beta, email="y@example.net", reason="other")
        self.client.force_login(self.alpha_staff)
        listed = {o.pk for o in self.client.get(_url(Suppression)).context["cl"].result_list}
        self.assertEqual(listed, {everyone.pk, their_owner.pk})
        self.assertNotIn(other_owner.pk, listed)
        self.assertNotIn(betas.pk, listed)
        url = _url(Suppression, f"{everyone.pk}/change/")
        page = self.client.get(url)
        self.assertEqual(page.status_code, 200)
        self.assertFalse(page.context["has_change_permission"])
        self.client.post(url, {"email": "changed@example.net", "reason": "other", "partner": ""})
        everyone.refresh_from_db()
        self.assertEqual(everyone.email, "x@example.net")

    def test_another_partners_suppression_does_not_mark_the_remediation_page_opted_out(
        self,
    ) -> None:
        from letters.selectors import has_opted_out

        Suppression.objects.create(partner=self.alpha, email=self.beta_email, reason="opt_out")
        link = type("Link", (), {"case": self.beta_case})()
        self.assertFalse(has_opted_out(link, self.beta_email))
        Suppression.objects.create(partner=self.beta, email=self.beta_email, reason="opt_out")
        self.assertTrue(has_opted_out(link, self.beta_email))


class TargetFieldsTestCase(BaseTestCase):
    def test_it_stops_a_partner_caseworker_repointing_a_target_the_recheck_probes(self) -> None:
        target = self.alpha_case.findings.get().target
        self.client.force_login(self.alpha_staff)
        url = _url(Target, f"{target.pk}/change/")
        page = self.client.get(url)
        self.assertEqual(page.status_code, 200)
        form_fields = page.context["adminform"].form.fields
        for field in ("ip", "port", "protocol"):
            self.assertNotIn(field, form_fields)
        data = admin_form_data(page)
        data.update(ip="203.0.113.5", port="8080", protocol="http")
        self.client.post(url, data)
        target.refresh_from_db()
        self.assertEqual((target.ip, target.port, target.protocol), ("192.0.2.10", 25, "smtp"))
        self.assertEqual(services.case_target_ids(self.alpha_case), [target.pk])

    def test_adding_another_partners_target_does_not_confirm_it_exists(self) -> None:
        self.client.force_login(self.alpha_staff)
        now = timezone.now()
        answers = []
        for ip in ("198.51.100.10", "198.51.100.11"):  # Beta's target, and one nobody has
            data = {
                "ip": ip,
                "port": "25",
                "protocol": "smtp",
                "first_seen_0": now.date().isoformat(),
                "first_seen_1": "00:00:00",
                "last_seen_0": now.date().isoformat(),
                "last_seen_1": "00:00:00",
            }
            response = self.client.post(_url(Target, "add/"), data)
            answers.append((response.status_code, response.content))
            self.assertNotContains(response, "already exists", status_code=response.status_code)
        self.assertEqual(answers[0], answers[1])
        self.assertEqual(Target.objects.count(), 2)

    def test_the_lead_still_corrects_a_target_address(self) -> None:
        target = self.alpha_case.findings.get().target
        self.client.force_login(self.regulator)
        url = _url(Target, f"{target.pk}/change/")
        data = admin_form_data(self.client.get(url))
        data.update(port="2525")
        self.assertEqual(self.client.post(url, data).status_code, 302)
        target.refresh_from_db()
        self.assertEqual(target.port, 2525)


class BeatScheduleTestCase(BaseTestCase):
    def _viewer(self) -> User:
        viewer = User.objects.create_user("lead-viewer", "lv@localhost", "pw", is_staff=True)
        Membership.objects.create(user=viewer, partner=self.lead, role=Membership.Role.VIEWER)
        return viewer

    def test_it_stops_a_lead_viewer_scheduling_attribution_on_chosen_ids(self) -> None:
        interval = IntervalSchedule.objects.create(every=10, period="seconds")
        for user in (self._viewer(), self.lead_staff):
            self.client.force_login(user)
            response = self.client.post(
                _url(PeriodicTask, "add/"),
                {
                    "name": "pull",
                    "regtask": "campaign.attribute_targets",
                    "task": "campaign.attribute_targets",
                    "interval": str(interval.pk),
                    "args": "[[1, 2, 3]]",
                    "kwargs": "{}",
                    "enabled": "on",
                },
            )
            self.assertEqual(response.status_code, 403, user.username)
            self.assertEqual(self.client.get(_url(PeriodicTask)).status_code, 403)
        self.assertFalse(PeriodicTask.objects.filter(name="pull").exists())
        self.client.force_login(self.regulator)
        self.assertEqual(self.client.get(_url(PeriodicTask, "add/")).status_code, 200)

    def test_it_stops_any_viewer_adding_changing_or_deleting_through_any_admin(self) -> None:
        alpha_viewer = User.objects.create_user("alpha-v", "av@localhost", "pw", is_staff=True)
        Membership.objects.create(user=alpha_viewer, partner=self.alpha, role="viewer")
        for user in (self._viewer(), alpha_viewer):
            request = RequestFactory().get("/admin/")
            request.user = user
            for model, model_admin in admin.site._registry.items():
                obj = model_admin.get_queryset(request).first()
                with self.subTest(user=user.username, model=model.__name__):
                    self.assertFalse(model_admin.has_add_permission(request))
                    self.assertFalse(model_admin.has_change_permission(request, obj))
                    self.assertFalse(model_admin.has_delete_permission(request, obj))
