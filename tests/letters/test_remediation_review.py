"""Review findings on the remediation page and the services behind it."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from campaign import services as campaign_services
from campaign.models import Attribution, Case, Contact, ServerOwner, Suppression
from letters.links import remediation_link_issue
from scanning.models import Finding, ScanRun, Target
from scanning.signals import finding_recorded
from tests.letters.test_remediation import RemediationTestCase, token_of


class MultiProtocolTestCase(RemediationTestCase):
    """One port may speak SOCKS5, SOCKS4 and HTTP at once: a finding per protocol spoken."""

    def setUp(self) -> None:
        super().setUp()
        owner = ServerOwner.objects.create(name="Socks Hosting", country="GB", partner=self.alpha)
        Contact.objects.create(
            server_owner=owner, position=0, kind=Contact.Kind.ABUSE, email="abuse@socks.example"
        )
        now = timezone.now()
        self.target = Target.objects.create(
            ip="192.0.2.50", port=1080, protocol="unknown", first_seen=now, last_seen=now
        )
        Attribution.objects.create(target=self.target, server_owner=owner)
        opened = self.finding("socks5", "confirmed-open", now - timedelta(days=2))
        self.socks_case = campaign_services.case_add_finding(
            campaign=self.campaign, owner=owner, finding=opened
        )
        url, _ = remediation_link_issue(self.socks_case, None)
        self.socks_url = f"/r/{token_of(url)}/"

    def finding(
        self, protocol: str, verdict: str, at: object, run: ScanRun | None = None
    ) -> Finding:
        return Finding.objects.create(
            target=self.target,
            scan_run=run,
            protocol=protocol,
            verdict=verdict,
            evidence_level="strong" if verdict != "closed" else "none",
            probed_at=at,
            transcript=[{"t_ms": 0, "direction": "<", "text": "reply"}],
        )

    def test_a_closed_http_proxy_does_not_fix_an_open_socks5_on_the_same_port(self) -> None:
        self.assertNotEqual(self.socks_case.status, Case.Status.FIXED)
        # The same scan: SOCKS5 still open, the HTTP proxy on that port refuses (closed).
        now = timezone.now()
        still_open = self.finding("socks5", "confirmed-open", now)
        closed = self.finding("http", "closed", now)
        with self.captureOnCommitCallbacks(execute=True):
            finding_recorded.send(sender=Finding, finding=still_open)
            finding_recorded.send(sender=Finding, finding=closed)
        self.socks_case.refresh_from_db()
        self.assertNotEqual(self.socks_case.status, Case.Status.FIXED)
        # The SOCKS5 service itself closing does fix it.
        with self.captureOnCommitCallbacks(execute=True):
            finding_recorded.send(
                sender=Finding,
                finding=self.finding("socks5", "closed", now + timedelta(seconds=1)),
            )
        self.socks_case.refresh_from_db()
        self.assertEqual(self.socks_case.status, Case.Status.FIXED)

    def test_the_page_shows_the_recheck_result_of_the_findings_own_protocol(self) -> None:
        with self.captureOnCommitCallbacks():
            self.client.post(self.socks_url, {"action": "recheck"})
        run = ScanRun.objects.get()
        ScanRun.objects.filter(pk=run.pk).update(status=ScanRun.Status.FINISHED)
        now = timezone.now()
        self.finding("socks5", "confirmed-open", now, run)
        self.finding("http", "closed", now, run)  # newest for the target, another protocol
        data = self.client.get(f"{self.socks_url}status.json").json()
        self.assertEqual([(f["status"], f["result"]) for f in data["findings"]], [("open", "open")])
        page = self.client.get(self.socks_url).content.decode()
        self.assertNotIn(
            self.t("Closed: your server refused our test. Thank you for fixing it."), page
        )


class OptOutStateTestCase(RemediationTestCase):
    def test_an_expired_opt_out_is_not_shown_as_in_force(self) -> None:
        Suppression.objects.create(
            partner=self.alpha,
            email="abuse@alpha.example",
            reason=Suppression.Reason.OPT_OUT,
            expires_at=timezone.now() - timedelta(days=1),
        )
        r = self.client.get(self.url)
        self.assertNotContains(
            r,
            self.t(
                "Done. We will not write to %(email)s again about this server.",
                email="abuse@alpha.example",
            ),
        )
        self.assertContains(r, 'value="optout"')


class RecheckRefusedTestCase(RemediationTestCase):
    def test_a_withdrawn_case_cannot_be_rechecked_by_a_crafted_post(self) -> None:
        campaign_services.case_transition(case=self.case, to_status=Case.Status.WITHDRAWN)
        self.assertNotContains(self.client.get(self.url), 'value="recheck"')  # no button...
        r = self.post({"action": "recheck", "lang": self.lang})
        self.assertEqual(r.status_code, 400)  # ...and no way round it
        self.assertFalse(ScanRun.objects.exists())


class MangledLinkTestCase(RemediationTestCase):
    def test_a_link_with_extra_path_segments_gets_the_neutral_page(self) -> None:
        neutral = self.client.get("/r/no-such-token/", HTTP_ACCEPT_LANGUAGE="en")
        for path in (
            f"/r/{self.token}/extra/",
            f"/r/{self.token[:8]}/{self.token[8:]}/",
            "/r/%C3%A9/%00/",
        ):
            r = self.client.get(path, HTTP_ACCEPT_LANGUAGE="en")
            self.assertEqual(r.status_code, 404)
            self.assertEqual(r.content, neutral.content)
            self.assertIn("default-src 'none'", r["Content-Security-Policy"])
        r = self.client.get(f"/r/{self.token}")  # a lost trailing slash still leads to the page
        self.assertEqual((r.status_code, r["Location"]), (301, self.url))
