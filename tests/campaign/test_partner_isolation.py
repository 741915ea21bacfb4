"""Beta's staff never see or change Alpha's objects, through any admin door.

Table-driven over every registered model: a model added to the admin without an entry in
ALPHA_OBJECTS fails `test_every_registered_model_is_covered`, so nothing slips through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.db import models
from django.forms import ModelChoiceField
from django.forms.models import model_to_dict
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from django_otp.plugins.otp_totp.models import TOTPDevice

from api.models import ApiToken
from api.services import api_token_create
from api.urls import router
from campaign.models import (
    Attribution,
    AttributionJob,
    Campaign,
    Case,
    CaseEvent,
    Contact,
    ImportBatch,
    Membership,
    Partner,
    ServerOwner,
    Suppression,
)
from letters.models import DeliveryEvent, Letter, LetterTemplate, RemediationLink
from reporting.models import PartnerFigures
from reporting.selectors import merge, stuck_counts
from reporting.services import figures_refresh
from scanning.models import CanaryHit, Exclusion, Finding, ScanRun, Target
from tests.base import BaseTestCase
from tests.reporting import world

Factory = Callable[[BaseTestCase], models.Model]


def _letter(t: BaseTestCase) -> Letter:
    return Letter.objects.get_or_create(
        case=t.alpha_case, kind="initial", language="en", recipient_email="abuse@alpha.example"
    )[0]


ALPHA_OBJECTS: dict[type[models.Model], tuple[str, Factory]] = {
    # model: (who may see it: "alpha" = Alpha's staff, "lead" = lead staff, "super" = superuser)
    Partner: ("alpha", lambda t: t.alpha),
    Membership: ("alpha", lambda t: Membership.objects.get(user=t.alpha_staff)),
    ServerOwner: ("alpha", lambda t: t.alpha_case.server_owner),
    Contact: ("alpha", lambda t: t.alpha_case.server_owner.contacts.first()),
    Attribution: (
        "alpha",
        lambda t: Attribution.objects.get(server_owner=t.alpha_case.server_owner),
    ),
    Case: ("alpha", lambda t: t.alpha_case),
    CaseEvent: ("alpha", lambda t: t.alpha_case.events.first()),
    Suppression: (
        "alpha",
        lambda t: Suppression.objects.create(
            partner=t.alpha, email="optout@alpha.example", reason="opt_out"
        ),
    ),
    Target: ("alpha", lambda t: t.alpha_case.findings.first().target),
    Finding: ("alpha", lambda t: t.alpha_case.findings.first()),
    LetterTemplate: (
        "alpha",
        lambda t: LetterTemplate.objects.create(
            partner=t.alpha,
            kind="initial",
            language="en",
            subject="Alpha advisory",
            body_html="<p>x</p>",
        ),
    ),
    Letter: ("alpha", _letter),
    RemediationLink: (
        "alpha",
        lambda t: RemediationLink.objects.create(
            case=t.alpha_case, token_hash="a" * 64, expires_at=timezone.now()
        ),
    ),
    DeliveryEvent: (
        "alpha",
        lambda t: DeliveryEvent.objects.create(
            esp="postmark",
            event_id="alpha-1",
            event_type="delivered",
            letter=_letter(t),
            recipient="abuse@alpha.example",
        ),
    ),
    Campaign: ("shared", lambda t: t.campaign),
    ImportBatch: (
        "lead",
        lambda t: ImportBatch.objects.create(file_name="alpha.csv", format="csv"),
    ),
    AttributionJob: (
        "alpha",
        lambda t: AttributionJob.objects.create(
            target_ids=[1], targets_total=1, started_by=t.alpha_staff
        ),
    ),
    ScanRun: ("lead", lambda t: ScanRun.objects.create(label="alpha scan")),
    Exclusion: ("lead", lambda t: Exclusion.objects.create(network="192.0.2.0/24")),
    CanaryHit: (
        "lead",
        lambda t: CanaryHit.objects.create(
            token="a" * 32, kind="http", peer_ip="192.0.2.1", at=timezone.now()
        ),
    ),
    ApiToken: ("alpha", lambda t: api_token_create(user=t.alpha_staff, name="alpha tool")[0]),
    User: ("super", lambda t: t.alpha_staff),
    Group: ("super", lambda t: Group.objects.create(name="alpha-group")),
    PeriodicTask: (
        "super",
        lambda t: PeriodicTask.objects.create(
            name="alpha-task",
            task="sweeps.report_stuck_letters",
            interval=IntervalSchedule.objects.create(every=10, period="seconds"),
        ),
    ),
    IntervalSchedule: ("super", lambda t: IntervalSchedule.objects.create(every=7, period="days")),
    # Unconfirmed: a confirmed device would make force_login sessions owe a code.
    TOTPDevice: (
        "super",
        lambda t: TOTPDevice.objects.create(user=t.alpha_staff, name="phone", confirmed=False),
    ),
    AccessAttempt: (
        "super",
        lambda t: AccessAttempt.objects.create(
            username="mallory", ip_address="192.0.2.1", failures_since_start=1
        ),
    ),
    AccessLog: (
        "super",
        lambda t: AccessLog.objects.create(username="mallory", ip_address="192.0.2.1"),
    ),
    AccessFailureLog: (
        "super",
        lambda t: AccessFailureLog.objects.create(username="mallory", ip_address="192.0.2.1"),
    ),
    CrontabSchedule: ("super", lambda t: CrontabSchedule.objects.create(minute="5")),
    SolarSchedule: (
        "super",
        lambda t: SolarSchedule.objects.create(event="sunrise", latitude=1, longitude=1),
    ),
    ClockedSchedule: (
        "super",
        lambda t: ClockedSchedule.objects.create(clocked_time=timezone.now()),
    ),
}

MISSING_PK = "987654321"


def _url(model: type[models.Model], suffix: str = "") -> str:
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/{suffix}"


class PartnerIsolationTestCase(BaseTestCase):
    def setUp(self) -> None:
        self.objects = {
            model: (who, factory(self)) for model, (who, factory) in ALPHA_OBJECTS.items()
        }

    def test_every_registered_model_is_covered(self) -> None:
        self.assertEqual(set(admin.site._registry), set(ALPHA_OBJECTS))

    def _viewer_for(self, who: str) -> User:
        return {
            "alpha": self.alpha_staff,
            "lead": self.lead_staff,
            "super": self.regulator,
            "shared": self.alpha_staff,
        }[who]

    def _ids_in_changelist(self, response: Any) -> set[str]:
        if response.status_code != 200:
            return set()
        return {str(o.pk) for o in response.context["cl"].result_list}

    def test_the_rightful_viewer_sees_each_object(self) -> None:
        # Without this the sweep below could pass on an admin that shows nothing to anyone.
        for model, (who, obj) in self.objects.items():
            with self.subTest(model=model.__name__):
                self.client.force_login(self._viewer_for(who))
                response = self.client.get(_url(model), {"q": ""})
                self.assertIn(str(obj.pk), self._ids_in_changelist(response))
                response = self.client.get(_url(model, f"{obj.pk}/change/"))
                self.assertEqual(response.status_code, 200)

    def test_beta_cannot_see_alpha_objects_anywhere(self) -> None:
        self.client.force_login(self.beta_staff)
        for model, (who, obj) in self.objects.items():
            if who == "shared":
                continue
            with self.subTest(model=model.__name__):
                self._assert_hidden(model, obj)

    def _assert_hidden(self, model: type[models.Model], obj: models.Model) -> None:
        pk = str(obj.pk)
        for params in ({}, {"_to_field": "id", "_popup": "1"}, {"q": str(obj)[:20]}):
            response = self.client.get(_url(model), params)
            self.assertNotIn(pk, self._ids_in_changelist(response), params)
        # Detail, history and delete pages answer exactly as for an id that does not exist.
        for suffix in ("change/", "history/", "delete/"):
            theirs = self.client.get(_url(model, f"{pk}/{suffix}"))
            missing = self.client.get(_url(model, f"{MISSING_PK}/{suffix}"))
            self.assertEqual(theirs.status_code, missing.status_code, suffix)
            self.assertEqual(theirs.get("Location"), missing.get("Location"), suffix)
            self.assertNotContains(theirs, str(obj), status_code=theirs.status_code)
        ct = ContentType.objects.get_for_model(model)
        theirs = self.client.get(f"/admin/r/{ct.pk}/{pk}/")
        missing = self.client.get(f"/admin/r/{ct.pk}/{MISSING_PK}/")
        self.assertEqual(
            (theirs.status_code, theirs.content), (missing.status_code, missing.content)
        )
        # A POSTed change or action must not touch it.
        before = model_to_dict(obj)
        self.client.post(_url(model, f"{pk}/change/"), {})
        model_admin = admin.site._registry[model]
        for action_name in list(model_admin.get_actions(self._request_as(self.regulator)))[:3]:
            self.client.post(
                _url(model), {"action": action_name, "_selected_action": [pk], "post": "yes"}
            )
        refreshed = model.objects.filter(pk=obj.pk).first()
        self.assertIsNotNone(refreshed, "an action deleted another partner's object")
        self.assertEqual(model_to_dict(refreshed), before)

    def _request_as(self, user: User) -> Any:
        from django.test import RequestFactory

        request = RequestFactory().get("/admin/")
        request.user = user
        return request

    def test_autocompletes_never_offer_alpha_objects(self) -> None:
        self.client.force_login(self.beta_staff)
        checked = 0
        for source_model, model_admin in admin.site._registry.items():
            for field_name in model_admin.autocomplete_fields:
                remote = source_model._meta.get_field(field_name).remote_field.model
                if remote not in self.objects:
                    continue
                _, obj = self.objects[remote]
                response = self.client.get(
                    "/admin/autocomplete/",
                    {
                        "app_label": source_model._meta.app_label,
                        "model_name": source_model._meta.model_name,
                        "field_name": field_name,
                        "term": "",
                    },
                )
                ids = (
                    {r["id"] for r in response.json()["results"]}
                    if response.status_code == 200
                    else set()
                )
                self.assertNotIn(str(obj.pk), ids, f"{source_model.__name__}.{field_name}")
                checked += 1
        self.assertGreater(checked, 3)

    def test_form_choices_never_offer_alpha_objects(self) -> None:
        alpha_objects = {
            model: obj for model, (who, obj) in self.objects.items() if who != "shared"
        }
        self.client.force_login(self.beta_staff)
        checked = 0
        for model in self.objects:
            response = self.client.get(_url(model, "add/"))
            if response.status_code != 200:
                continue
            for name, field in response.context["adminform"].form.fields.items():
                if isinstance(field, ModelChoiceField) and field.queryset.model in alpha_objects:
                    obj = alpha_objects[field.queryset.model]
                    self.assertFalse(
                        field.queryset.filter(pk=obj.pk).exists(), f"{model.__name__}.{name}"
                    )
                    checked += 1
        self.assertGreater(checked, 3)

    def test_recent_actions_show_only_ones_own(self) -> None:
        self.client.force_login(self.alpha_staff)
        url = _url(Case, f"{self.alpha_case.pk}/change/")
        page = self.client.get(url)
        # Every inline on the page posts an empty management form: nothing in them changes.
        data = {
            "language": "en",
            "review_reason": "checked by alpha",
            "next_action_at_0": "",
            "next_action_at_1": "",
        }
        for inline in page.context["inline_admin_formsets"]:
            prefix = inline.formset.prefix
            data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
        response = self.client.post(url, data)
        self.assertEqual(
            response.status_code,
            302,
            getattr(response, "context", None) and response.context["adminform"].form.errors,
        )
        self.assertContains(self.client.get("/admin/"), self.alpha_case.reference)
        self.client.force_login(self.beta_staff)
        self.assertNotContains(self.client.get("/admin/"), self.alpha_case.reference)

    def test_a_partner_caseworker_changes_own_cases_but_a_viewer_cannot(self) -> None:
        viewer = User.objects.create_user("alpha-viewer", "v@localhost", "pw", is_staff=True)
        Membership.objects.create(user=viewer, partner=self.alpha, role=Membership.Role.VIEWER)
        self.client.force_login(viewer)
        response = self.client.get(_url(Case, f"{self.alpha_case.pk}/change/"))
        self.assertEqual(response.status_code, 200)
        self.assertFalse(response.context["has_change_permission"])
        self.client.force_login(self.alpha_staff)
        response = self.client.get(_url(Case, f"{self.alpha_case.pk}/change/"))
        self.assertTrue(response.context["has_change_permission"])

    def test_lead_staff_see_every_partners_cases(self) -> None:
        self.client.force_login(self.lead_staff)
        response = self.client.get(_url(Case))
        self.assertEqual(
            self._ids_in_changelist(response), {str(self.alpha_case.pk), str(self.beta_case.pk)}
        )

    def test_partner_filter_lists_only_own_partner(self) -> None:
        self.client.force_login(self.beta_staff)
        response = self.client.get(_url(Case))
        self.assertNotContains(response, "Alphaland")

    def test_changelist_query_count_is_flat(self) -> None:
        self.client.force_login(self.lead_staff)
        self.client.get(_url(Case))  # warm caches (content types, sessions)
        owner = ServerOwner.objects.create(name="Extra", partner=self.alpha)
        for i in range(5):
            Case.objects.create(
                reference=f"SYS-2026-9000{i:02d}",
                campaign=Campaign.objects.create(slug=f"c{i}", name=f"C{i}"),
                server_owner=owner,
                partner=self.alpha,
                language="en",
            )
        with self.assertNumQueries(9):  # none per row (one is the work queue count in the header)
            self.client.get(_url(Case))


class CustomAdminViewsIsolationTestCase(BaseTestCase):
    """The admin's own extra pages (template preview and approval, the import page) answer
    another partner's staff as if the object did not exist."""

    def test_beta_cannot_preview_or_approve_alpha_templates(self) -> None:
        template = LetterTemplate.objects.create(
            partner=self.alpha,
            kind="initial",
            language="en",
            subject="Alpha advisory",
            body_html="<p>{{ owner_name }}</p>",
        )
        self.client.force_login(self.beta_staff)
        base = f"/admin/letters/lettertemplate/{template.pk}"
        for fmt in ("html", "pdf"):
            self.assertEqual(self.client.get(f"{base}/preview/{fmt}/").status_code, 404)
        self.assertEqual(self.client.post(f"{base}/approve/").status_code, 404)
        template.refresh_from_db()
        self.assertEqual(template.status, "draft")
        self.client.force_login(self.alpha_staff)
        self.assertEqual(self.client.get(f"{base}/preview/html/").status_code, 200)

    def test_partner_staff_cannot_open_the_import_page(self) -> None:
        self.client.force_login(self.beta_staff)
        self.assertEqual(self.client.get("/admin/campaign/importbatch/import/").status_code, 403)


class DashboardIsolationTestCase(BaseTestCase):
    """The admin's front page adds up only the viewer's partners: no other partner's numbers."""

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        world.build(cls, timezone.now())
        figures_refresh()

    def test_beta_sees_only_betas_numbers_on_the_dashboard(self) -> None:
        self.client.force_login(self.beta_staff)
        r = self.client.get("/admin/")
        board = r.context["board"]
        beta_only = PartnerFigures.objects.get(partner=self.beta).figures
        self.assertEqual(board.total.figures, merge([beta_only]))
        self.assertEqual([row.partner for row in board.partners], [self.beta])
        self.assertEqual(board.stuck, stuck_counts(self.beta_staff))
        self.assertEqual(board.stuck["failed_letters"], 0)  # Alpha has one
        self.assertNotIn("triage", board.stuck)
        for alpha_text in (
            "Alphaland",
            f"partner__id__exact={self.alpha.id}",
            "Not yet attributed",
            "postfix",
            "squid",
            "dante",
            "exim",
        ):
            self.assertNotContains(r, alpha_text)
        # And the lead's page does show them, so the check above has teeth.
        self.client.force_login(self.lead_staff)
        r = self.client.get("/admin/")
        for alpha_text in ("Alphaland", f"partner__id__exact={self.alpha.id}", "squid"):
            self.assertContains(r, alpha_text)


# basename -> (Alpha's object as the API names it, how the list shows it)
ALPHA_API_OBJECTS: dict[str, tuple[Callable[[BaseTestCase], str], str]] = {
    "case": (lambda t: t.alpha_case.reference, "reference"),
    "finding": (lambda t: str(t.alpha_case.findings.first().pk), "id"),
}


class ApiIsolationTestCase(BaseTestCase):
    """Every API endpoint answers Beta's token as if Alpha's objects did not exist."""

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        world.build(cls, timezone.now())

    def setUp(self) -> None:
        cache.clear()
        self.tokens = {
            who: api_token_create(user=user, name=who)[1]
            for who, user in (("alpha", self.alpha_staff), ("beta", self.beta_staff))
        }

    def test_every_endpoint_is_covered(self) -> None:
        self.assertEqual({basename for _, _, basename in router.registry}, set(ALPHA_API_OBJECTS))

    def _get(self, who: str, url: str, **params: str) -> Any:
        return self.client.get(url, params, HTTP_AUTHORIZATION=f"Bearer {self.tokens[who]}")

    def test_beta_cannot_list_or_open_alpha_objects_through_the_api(self) -> None:
        for prefix, _, basename in router.registry:
            lookup, key = ALPHA_API_OBJECTS[basename]
            alpha_id = lookup(self)
            with self.subTest(endpoint=prefix):
                url = f"/api/v1/{prefix}/"
                mine = self._get("alpha", url)
                self.assertIn(alpha_id, {str(o[key]) for o in mine.json()["results"]})
                for params in ({}, {"page_size": "1000"}, {"updated_since": "2000-01-01"}):
                    listed = self._get("beta", url, **params)
                    self.assertEqual(listed.status_code, 200)
                    self.assertNotIn(alpha_id, {str(o[key]) for o in listed.json()["results"]})
                    self.assertNotIn("Alpha", listed.content.decode())
                    self.assertNotIn("192.0.2.", listed.content.decode())
                theirs = self._get("beta", f"{url}{alpha_id}/")
                missing = self._get("beta", f"{url}987654321/")
                self.assertEqual(
                    (theirs.status_code, theirs.json()), (missing.status_code, missing.json())
                )
                self.assertEqual(self._get("alpha", f"{url}{alpha_id}/").status_code, 200)
