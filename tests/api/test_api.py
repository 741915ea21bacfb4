"""The read-only partner API: Bearer tokens, scoping, filters, cursor pages, schema, rate limit."""

from __future__ import annotations

import io
from datetime import timedelta

from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone

from api import services
from api.models import ApiToken
from campaign.models import Case, CaseEvent
from scanning.models import Finding
from tests.base import BaseTestCase
from tests.reporting import world

NOW = timezone.now().replace(microsecond=0)


class ApiTestCase(BaseTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        world.build(cls, NOW)
        cls.alpha_token = services.api_token_create(user=cls.alpha_staff, name="alpha tool")[1]
        cls.beta_token = services.api_token_create(user=cls.beta_staff, name="beta tool")[1]
        cls.lead_token = services.api_token_create(user=cls.lead_staff, name="lead tool")[1]

    def setUp(self) -> None:
        cache.clear()  # the rate limit's counters

    def get(self, url: str, token: str | None, **params: object) -> object:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        return self.client.get(url, params, **headers)

    def references(self, token: str, **params: object) -> list[str]:
        r = self.get("/api/v1/cases/", token, **params)
        self.assertEqual(r.status_code, 200, r.content)
        return [c["reference"] for c in r.json()["results"]]

    def test_it_lists_a_partners_own_cases_only(self) -> None:
        alpha_refs = set(
            Case.objects.filter(partner=self.alpha).values_list("reference", flat=True)
        )
        self.assertEqual(set(self.references(self.alpha_token)), alpha_refs)
        self.assertEqual(len(self.references(self.lead_token)), Case.objects.count())
        beta = self.references(self.beta_token)
        self.assertEqual(
            set(beta),
            set(Case.objects.filter(partner=self.beta).values_list("reference", flat=True)),
        )
        self.assertNotIn(self.alpha_case.reference, beta)

    def test_it_answers_another_partners_case_as_missing(self) -> None:
        mine = self.get(f"/api/v1/cases/{self.alpha_case.reference}/", self.alpha_token)
        self.assertEqual(mine.status_code, 200)
        body = mine.json()
        self.assertEqual(body["partner"], "GB")
        self.assertEqual(body["status"], "needs_review")
        self.assertEqual(body["findings"][0]["ip"], "192.0.2.10")
        self.assertEqual(body["letters"][0]["status"], "failed")
        theirs = self.get(f"/api/v1/cases/{self.alpha_case.reference}/", self.beta_token)
        missing = self.get("/api/v1/cases/SYS-2000-000001/", self.beta_token)
        self.assertEqual((theirs.status_code, theirs.json()), (missing.status_code, missing.json()))
        self.assertEqual(theirs.status_code, 404)

    def test_it_lists_findings_on_a_partners_servers_only(self) -> None:
        r = self.get("/api/v1/findings/", self.beta_token)
        ips = {f["ip"] for f in r.json()["results"]}
        self.assertEqual(ips, {"198.51.100.10", "198.51.100.20"})
        alpha_finding = self.alpha_case.findings.get()
        theirs = self.get(f"/api/v1/findings/{alpha_finding.pk}/", self.beta_token)
        self.assertEqual(theirs.status_code, 404)
        mine = self.get(f"/api/v1/findings/{alpha_finding.pk}/", self.alpha_token).json()
        self.assertEqual(mine["cases"], [self.alpha_case.reference])
        self.assertEqual(mine["kind"], "relay")
        self.assertEqual(mine["software"], {"family": "postfix", "version": ""})
        unattributed = Finding.objects.get(target__ip="203.0.113.5")
        self.assertEqual(
            self.get(f"/api/v1/findings/{unattributed.pk}/", self.alpha_token).status_code, 404
        )
        self.assertEqual(
            self.get(f"/api/v1/findings/{unattributed.pk}/", self.lead_token).status_code, 200
        )

    def test_a_finding_names_only_the_cases_its_reader_may_see(self) -> None:
        # After a re-attribution a finding can sit in another partner's older case too.
        alpha_finding = self.alpha_case.findings.get()
        self.beta_case.findings.add(alpha_finding)
        url = f"/api/v1/findings/{alpha_finding.pk}/"
        self.assertEqual(
            self.get(url, self.alpha_token).json()["cases"], [self.alpha_case.reference]
        )
        listed = self.get("/api/v1/findings/", self.alpha_token).json()["results"]
        self.assertNotIn(self.beta_case.reference, {ref for f in listed for ref in f["cases"]})
        self.assertEqual(
            set(self.get(url, self.lead_token).json()["cases"]),
            {self.alpha_case.reference, self.beta_case.reference},
        )

    def test_it_filters_cases_by_status_kind_and_update_time(self) -> None:
        fixed = self.references(self.alpha_token, status="fixed")
        self.assertEqual(
            set(fixed),
            set(
                Case.objects.filter(partner=self.alpha, status="fixed").values_list(
                    "reference", flat=True
                )
            ),
        )
        self.assertEqual(len(fixed), 2)
        self.assertEqual(len(self.references(self.alpha_token, status="fixed,notified")), 3)
        socks = self.references(self.lead_token, kind="socks-proxy")
        self.assertEqual(socks, [Case.objects.get(server_owner__name="Alpha Three").reference])
        self.assertEqual(len(self.references(self.lead_token, kind="relay,socks-proxy")), 5)
        # Updated since: a status change or any event at or after the moment.
        since = NOW - timedelta(days=12)
        recent = set(self.references(self.lead_token, updated_since=since.isoformat()))
        expected = {
            c.reference
            for c in Case.objects.all()
            if c.status_changed_at >= since or c.events.filter(at__gte=since).exists()
        }
        self.assertEqual(recent, expected)
        self.assertNotIn(Case.objects.get(server_owner__name="Alpha Two").reference, recent)
        old = Case.objects.get(server_owner__name="Alpha Two")
        CaseEvent.objects.create(case=old, kind=CaseEvent.Kind.NOTE, note="call back")
        self.assertIn(
            old.reference, self.references(self.lead_token, updated_since=since.date().isoformat())
        )

    def test_it_filters_findings_by_kind_verdict_and_time(self) -> None:
        r = self.get("/api/v1/findings/", self.alpha_token, kind="socks-proxy", verdict="closed")
        self.assertEqual(
            [(f["ip"], f["verdict"]) for f in r.json()["results"]], [("192.0.2.30", "closed")]
        )
        since = (NOW - timedelta(days=21)).isoformat()
        r = self.get("/api/v1/findings/", self.alpha_token, updated_since=since)
        self.assertEqual(
            sorted(f["ip"] for f in r.json()["results"]), ["192.0.2.20", "192.0.2.30", "192.0.2.40"]
        )

    def test_a_bad_filter_is_a_400_naming_it(self) -> None:
        for params, name in (
            ({"status": "open"}, "status"),
            ({"kind": "smtp"}, "kind"),
            ({"updated_since": "yesterday"}, "updated_since"),
            ({"updated_since": "2026-13-45"}, "updated_since"),
        ):
            r = self.get("/api/v1/cases/", self.alpha_token, **params)
            self.assertEqual(r.status_code, 400, params)
            self.assertIn(name, r.json())
        r = self.get("/api/v1/findings/", self.alpha_token, verdict="open")
        self.assertEqual(r.status_code, 400)
        self.assertIn("verdict", r.json())

    def test_it_pages_with_a_cursor_without_skipping_or_repeating(self) -> None:
        seen: list[str] = []
        url: str | None = "/api/v1/cases/?page_size=2"
        pages = 0
        while url:
            r = self.client.get(url, HTTP_AUTHORIZATION=f"Bearer {self.lead_token}")
            body = r.json()
            self.assertNotIn("count", body)
            seen += [c["reference"] for c in body["results"]]
            url = body["next"]
            pages += 1
        self.assertEqual(pages, 4)
        self.assertEqual(sorted(seen), sorted(Case.objects.values_list("reference", flat=True)))
        self.assertEqual(len(seen), len(set(seen)))


class ApiAuthTestCase(BaseTestCase):
    def setUp(self) -> None:
        cache.clear()

    def test_it_refuses_requests_without_a_valid_bearer_token(self) -> None:
        r = self.client.get("/api/v1/cases/")
        self.assertEqual(r.status_code, 401)
        self.assertEqual(r["WWW-Authenticate"], 'Bearer realm="api"')
        for header in (
            "Bearer sys_nope",
            "Bearer",
            "Bearer a b",
            "Token abc",
            "Basic YWxwaGE6cHc=",
        ):
            r = self.client.get("/api/v1/cases/", HTTP_AUTHORIZATION=header)
            self.assertEqual(r.status_code, 401, header)
        # A logged-in admin session is not an API credential.
        self.client.force_login(self.alpha_staff)
        self.assertEqual(self.client.get("/api/v1/cases/").status_code, 401)

    def test_it_stores_only_a_digest_and_a_revoked_token_stops_working(self) -> None:
        token, raw = services.api_token_create(user=self.alpha_staff, name="x")
        token.refresh_from_db()
        self.assertNotIn(raw, [token.key_hash, token.prefix, token.name])
        self.assertEqual(token.key_hash, services.token_digest(raw))
        ok = self.client.get("/api/v1/cases/", HTTP_AUTHORIZATION=f"Bearer {raw}")
        self.assertEqual(ok.status_code, 200)
        token.refresh_from_db()
        self.assertIsNotNone(token.last_used_at)
        services.api_token_revoke(tokens=ApiToken.objects.filter(pk=token.pk))
        r = self.client.get("/api/v1/cases/", HTTP_AUTHORIZATION=f"Bearer {raw}")
        self.assertEqual(r.status_code, 401)

    def test_a_deactivated_user_or_a_staff_user_without_a_partner_gets_nothing(self) -> None:
        _, raw = services.api_token_create(user=self.alpha_staff, name="x")
        User.objects.filter(pk=self.alpha_staff.pk).update(is_active=False)
        self.assertEqual(
            self.client.get("/api/v1/cases/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code, 401
        )
        loner = User.objects.create_user("loner", "l@localhost", "pw", is_staff=True)
        _, raw = services.api_token_create(user=loner, name="x")
        self.assertEqual(
            self.client.get("/api/v1/cases/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code, 403
        )
        outsider = User.objects.create_user("outsider", "o@localhost", "pw")
        with self.assertRaises(ValueError):
            services.api_token_create(user=outsider, name="x")

    @override_settings(API_RATE_LIMIT="3/minute")
    def test_it_limits_each_token_on_its_own(self) -> None:
        _, first = services.api_token_create(user=self.alpha_staff, name="one")
        _, second = services.api_token_create(user=self.alpha_staff, name="two")
        codes = [
            self.client.get("/api/v1/cases/", HTTP_AUTHORIZATION=f"Bearer {first}").status_code
            for _ in range(4)
        ]
        self.assertEqual(codes, [200, 200, 200, 429])
        r = self.client.get("/api/v1/cases/", HTTP_AUTHORIZATION=f"Bearer {first}")
        self.assertIn("Retry-After", r)
        self.assertEqual(
            self.client.get("/api/v1/cases/", HTTP_AUTHORIZATION=f"Bearer {second}").status_code,
            200,
        )

    def test_it_is_read_only(self) -> None:
        _, raw = services.api_token_create(user=self.regulator, name="x")
        for method in ("post", "put", "patch", "delete"):
            r = getattr(self.client, method)(
                f"/api/v1/cases/{self.alpha_case.reference}/",
                {},
                HTTP_AUTHORIZATION=f"Bearer {raw}",
                content_type="application/json",
            )
            self.assertEqual(r.status_code, 405, method)
        self.assertTrue(Case.objects.filter(pk=self.alpha_case.pk).exists())

    def test_the_schema_describes_both_endpoints_and_the_bearer_scheme(self) -> None:
        r = self.client.get("/api/v1/openapi.json")
        self.assertEqual(r.status_code, 200)
        schema = r.json()
        self.assertTrue(schema["openapi"].startswith("3."))
        self.assertIn("/api/v1/cases/", schema["paths"])
        self.assertIn("/api/v1/findings/{id}/", schema["paths"])
        self.assertEqual(schema["components"]["securitySchemes"]["bearerAuth"]["scheme"], "bearer")
        params = {p["name"] for p in schema["paths"]["/api/v1/cases/"]["get"]["parameters"]}
        self.assertLessEqual({"status", "kind", "updated_since", "cursor", "page_size"}, params)


class CreateApiTokenCommandTestCase(BaseTestCase):
    def test_it_prints_a_working_token_once(self) -> None:
        out = io.StringIO()
        call_command("create_api_token", "alpha", "--name", "CERT IntelMQ", stdout=out)
        raw = out.getvalue().strip()
        token = ApiToken.objects.get(user=self.alpha_staff)
        self.assertEqual((token.name, token.key_hash), ("CERT IntelMQ", services.token_digest(raw)))
        r = self.client.get("/api/v1/cases/", HTTP_AUTHORIZATION=f"Bearer {raw}")
        self.assertEqual([c["reference"] for c in r.json()["results"]], [self.alpha_case.reference])

    def test_it_names_an_unknown_user(self) -> None:
        with self.assertRaisesMessage(CommandError, "No user named 'ghost'"):
            call_command("create_api_token", "ghost")


class ApiTokenAdminTestCase(BaseTestCase):
    def test_it_shows_a_new_token_once_and_keeps_only_its_digest(self) -> None:
        self.client.force_login(self.alpha_staff)
        r = self.client.post("/admin/api/apitoken/add/", {"name": "Alpha CERT"})
        self.assertEqual(r.status_code, 200)
        self.assertIn("no-store", r["Cache-Control"])
        raw = r.context["raw"]
        self.assertContains(r, raw)
        token = ApiToken.objects.get(name="Alpha CERT")
        self.assertEqual(
            (token.user, token.key_hash), (self.alpha_staff, services.token_digest(raw))
        )
        listing = self.client.get("/admin/api/apitoken/")
        self.assertNotContains(listing, raw)
        self.assertNotContains(self.client.get(f"/admin/api/apitoken/{token.pk}/change/"), raw)
        self.client.post(
            "/admin/api/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}
        )
        token.refresh_from_db()
        self.assertIsNotNone(token.revoked_at)

    def test_a_user_sees_and_revokes_only_their_own_tokens(self) -> None:
        theirs, _ = services.api_token_create(user=self.alpha_staff, name="alpha")
        self.client.force_login(self.beta_staff)
        r = self.client.get("/admin/api/apitoken/")
        self.assertEqual(list(r.context["cl"].result_list), [])
        self.client.post(
            "/admin/api/apitoken/", {"action": "revoke", "_selected_action": [theirs.pk]}
        )
        theirs.refresh_from_db()
        self.assertIsNone(theirs.revoked_at)
