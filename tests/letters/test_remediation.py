"""The recipient's remediation page: tokens, the page, "check again", corrections and opt-out."""

from __future__ import annotations

import re
from datetime import timedelta

from django.test import Client, override_settings
from django.utils import timezone

from campaign import services as campaign_services
from campaign.models import Attribution, Case, CaseEvent, Contact, ServerOwner, Suppression
from fakes.smtp_traps import run_trap
from letters import guides
from letters.links import remediation_link_issue
from letters.models import Letter, LetterKind
from letters.owner_page import next_text
from letters.rendering import bcp47, local_date
from letters.services import letter_next_contact
from scanning.models import Finding, ScanRun, Target
from scanning.signals import finding_recorded
from tests.base import BaseTestCase
from tests.letters.helpers import PageText, approved_template

FAST_SCAN = {
    "SCAN_ALLOW_PRIVATE": True,
    "SCAN_REPLY_TIMEOUT": 2.0,
    "SCAN_CONNECT_TIMEOUT": 2.0,
    "SCAN_EXCHANGE_TIMEOUT": 8.0,
    "SCAN_NETWORK_RATE": 0.0,
    "SCAN_GREYLIST_RETRY_DELAYS": [0, 0],
}
TOKEN_HEX = "0123456789abcdef0123456789abcdef"


def page_languages() -> list[str]:
    """Two shipped guide languages, English and German when they are there."""
    shipped = guides.languages()
    preferred = [code for code in ("en", "de") if code in shipped]
    return (preferred + [code for code in shipped if code not in preferred])[:2]


def token_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def add_target(
    case: Case,
    ip: str,
    port: int,
    *,
    verdict: str = "confirmed-open",
    software: str = "",
    transcript: list[dict] | None = None,
) -> Target:
    now = timezone.now()
    target = Target.objects.create(ip=ip, port=port, protocol="smtp", first_seen=now, last_seen=now)
    Attribution.objects.create(target=target, server_owner=case.server_owner)
    finding = Finding.objects.create(
        target=target,
        protocol="smtp",
        verdict=verdict,
        evidence_level="strong",
        software_family=software,
        probed_at=now,
        transcript=transcript or [{"t_ms": 0, "direction": "<", "text": "220 mx ESMTP"}],
    )
    campaign_services.case_add_finding(
        campaign=case.campaign, owner=case.server_owner, finding=finding
    )
    return target


def closed_finding(target: Target, run: ScanRun | None = None) -> Finding:
    return Finding.objects.create(
        target=target,
        scan_run=run,
        protocol="smtp",
        verdict="closed",
        evidence_level="none",
        probed_at=timezone.now() + timedelta(seconds=1),
        transcript=[{"t_ms": 0, "direction": "<", "text": "554 5.7.1 Relay access denied"}],
    )


class RemediationTestCase(BaseTestCase):
    def setUp(self) -> None:
        self.langs = page_languages()
        self.lang = self.langs[0]
        self.t = PageText(self.lang)
        self.alpha.languages = self.langs
        self.alpha.save()
        Case.objects.filter(pk=self.alpha_case.pk).update(language=self.lang)
        self.case = Case.objects.get(pk=self.alpha_case.pk)
        self.letter = Letter.objects.create(
            case=self.case,
            kind=LetterKind.INITIAL,
            language=self.lang,
            recipient_email="abuse@alpha.example",
            status=Letter.Status.SENT,
        )
        url, self.link = remediation_link_issue(self.case, self.letter)
        self.token = token_of(url)
        self.url = f"/r/{self.token}/"

    def post(self, data: dict[str, str], url: str | None = None):
        return self.client.post(url or self.url, data)


class TokenTestCase(RemediationTestCase):
    def test_a_valid_token_opens_its_case_with_security_headers(self) -> None:
        r = self.client.get(self.url)
        self.assertEqual(r.status_code, 200)
        self.assertContains(r, self.case.reference)
        self.assertContains(r, "Alpha Agency")
        self.assertContains(r, "Wave 1")
        self.assertContains(r, f'<html lang="{bcp47(self.lang)}">')
        self.assertIn("script-src 'self'", r["Content-Security-Policy"])
        self.assertEqual(r["Referrer-Policy"], "same-origin")
        self.assertEqual(r["Cache-Control"], "no-store")
        self.assertEqual(r.content.decode().count("csrfmiddlewaretoken"), 5)  # every form

    def test_an_altered_unknown_or_expired_token_gets_one_neutral_page(self) -> None:
        altered = self.token[:-1] + ("A" if self.token[-1] != "A" else "B")
        expired_url, expired = remediation_link_issue(self.case, None)
        expired.expires_at = timezone.now() - timedelta(seconds=1)
        expired.save()
        bodies = []
        for url in (
            f"/r/{altered}/",
            "/r/no-such-token/",
            f"/r/{token_of(expired_url)}/",
            f"/r/{'x' * 300}/",
        ):
            r = self.client.get(url, HTTP_ACCEPT_LANGUAGE="en")
            self.assertEqual(r.status_code, 404)
            self.assertNotContains(r, self.case.reference, status_code=404)
            self.assertNotContains(r, "Alpha", status_code=404)
            self.assertIn("default-src 'none'", r["Content-Security-Policy"])
            bodies.append(r.content)
        self.assertEqual(len(set(bodies)), 1)  # nothing tells the three apart
        self.assertIn(PageText("en")("Link not valid"), bodies[0].decode())
        status = self.client.get(f"/r/{altered}/status.json")
        self.assertEqual((status.status_code, status.json()), (404, {"error": "not found"}))

    def test_the_invalid_page_speaks_the_browsers_language(self) -> None:
        other = self.langs[-1]
        r = self.client.get("/r/nothing-here/", HTTP_ACCEPT_LANGUAGE=f"{other};q=1.0")
        self.assertContains(r, PageText(other)("Link not valid"), status_code=404)
        self.assertContains(r, f'lang="{bcp47(other)}"', status_code=404)

    def test_a_token_shows_its_own_case_and_never_another(self) -> None:
        beta_url, _ = remediation_link_issue(self.beta_case, None)
        r = self.client.get(f"/r/{token_of(beta_url)}/")
        self.assertContains(r, self.beta_case.reference)
        self.assertContains(r, "198.51.100.10")
        self.assertNotContains(r, self.case.reference)
        self.assertNotContains(r, "<code>192.0.2.10")  # guides use 192.0.2.10 as a placeholder
        self.assertNotContains(r, "Alpha")
        r = self.client.get(self.url)
        self.assertNotContains(r, self.beta_case.reference)
        self.assertNotContains(r, "198.51.100.10")
        self.assertNotContains(r, "Beta")


class PageTestCase(RemediationTestCase):
    def test_it_shows_each_finding_in_plain_words_with_redacted_evidence(self) -> None:
        target = add_target(
            self.case,
            "192.0.2.11",
            587,
            software="Postfix",
            transcript=[
                {"t_ms": 0, "direction": "<", "text": "220 mx.alpha.example ESMTP Postfix"},
                {"t_ms": 5, "direction": ">", "text": "EHLO scanner.secure-your-server.invalid"},
                {"t_ms": 9, "direction": ">", "text": f"MAIL FROM:<probe-{TOKEN_HEX}@canary.test>"},
                {"t_ms": 9, "direction": "!", "text": "internal note: confirm wait"},
                {"t_ms": 12, "direction": "<", "text": "250 2.1.0 Ok"},
            ],
        )
        r = self.client.get(self.url)
        page = r.content.decode()
        for text in (
            "192.0.2.10",
            "192.0.2.11",
            "587",
            "220 mx.alpha.example ESMTP Postfix",
            "EHLO scanner.secure-your-server.invalid",
            "[REDACTED]",
        ):
            self.assertIn(text, page)
        self.assertNotIn(TOKEN_HEX, page)
        self.assertNotIn("internal note", page)
        self.assertIn(self.t("Open mail relay (SMTP)"), page)
        self.assertIn(self.t("What we found"), page)
        self.assertIn(self.t.status(self.case.status), page)
        self.assertIn(next_text(self.case, self.lang)[:40], page)
        postfix = guides.guide_for("smtp_relay", "Postfix", self.lang)
        generic = guides.guide_for("smtp_relay", "", self.lang)
        self.assertIn(postfix.title, page)
        self.assertIn(generic.title, page)  # the first server's software is unknown
        self.assertIn("<pre", page)
        self.assertIn("smtpd_relay_restrictions", page)
        self.assertIn(postfix.checklist[0], page)
        self.assertEqual(target.findings.count(), 1)

    def test_the_language_switcher_offers_the_partners_languages_only(self) -> None:
        other = self.langs[-1]
        r = self.client.get(self.url, {"lang": other})
        self.assertContains(r, f'<html lang="{bcp47(other)}">')
        self.assertContains(r, PageText(other)("I fixed it — check again"))
        options = re.findall(r'<option value="([^"]+)"', r.content.decode())
        self.assertEqual(sorted(options), sorted(self.langs))
        outside = next((c for c in guides.languages() if c not in self.langs), "xx")
        r = self.client.get(self.url, {"lang": outside})
        self.assertContains(r, f'<html lang="{bcp47(self.lang)}">')  # the case language

    def test_every_form_needs_csrf(self) -> None:
        client = Client(enforce_csrf_checks=True)
        r = client.post(self.url, {"action": "recheck"})
        self.assertEqual(r.status_code, 403)
        self.assertFalse(ScanRun.objects.exists())

    def test_the_status_endpoint_reports_no_check_yet(self) -> None:
        data = self.client.get(f"{self.url}status.json").json()
        self.assertEqual(data["state"], "none")
        self.assertEqual(data["case_status"], self.case.status)


class RecheckTestCase(RemediationTestCase):
    def test_a_recheck_probes_only_the_targets_on_record(self) -> None:
        second = add_target(self.case, "192.0.2.12", 25)
        with self.captureOnCommitCallbacks() as callbacks:
            r = self.post(
                {
                    "action": "recheck",
                    "lang": self.lang,
                    "ip": "1.2.3.4",
                    "port": "25",
                    "target": "203.0.113.9:25",
                    "target_ids": "999",
                }
            )
        self.assertEqual(r.status_code, 302)
        run = ScanRun.objects.get()
        expected = {self.case.findings.first().target_id, second.pk}
        self.assertEqual(set(run.targets.values_list("pk", flat=True)), expected)
        self.assertTrue(run.confirm_relays)
        self.assertEqual(len(callbacks), 1)  # one batch, queued on the scans queue on commit
        self.assertFalse(Target.objects.filter(ip__in=("1.2.3.4", "203.0.113.9")).exists())
        event = CaseEvent.objects.get(case=self.case, kind=CaseEvent.Kind.RECHECK_REQUESTED)
        self.assertEqual(event.data["scan_run"], run.pk)
        self.assertEqual(event.actor_label, "recipient")
        page = self.client.get(self.url)
        self.assertContains(
            page,
            self.t(
                "Your check is in the queue. This page shows the result when it arrives; you can "
                "also reload it."
            ),
        )
        self.assertContains(page, 'http-equiv="refresh"')  # reloads itself without JavaScript
        self.assertEqual(self.client.get(f"{self.url}status.json").json()["state"], "queued")

    @override_settings(RECHECK_MIN_INTERVAL=600)
    def test_rechecks_are_rate_limited_per_case(self) -> None:
        self.post({"action": "recheck", "lang": self.lang})
        r = self.post({"action": "recheck", "lang": self.lang})
        self.assertEqual(r.status_code, 429)
        self.assertContains(
            r,
            self.t.plural(
                "You can ask for another check in %(minutes)s minute.",
                "You can ask for another check in %(minutes)s minutes.",
                10,
                minutes=10,
            ),
            status_code=429,
        )
        self.assertEqual(ScanRun.objects.count(), 1)
        beta_url, _ = remediation_link_issue(self.beta_case, None)  # another case is not limited
        self.assertEqual(
            self.post({"action": "recheck"}, f"/r/{token_of(beta_url)}/").status_code, 302
        )
        CaseEvent.objects.filter(case=self.case, kind=CaseEvent.Kind.RECHECK_REQUESTED).update(
            at=timezone.now() - timedelta(minutes=11)
        )
        self.assertEqual(self.post({"action": "recheck"}).status_code, 302)
        self.assertEqual(ScanRun.objects.count(), 3)

    def test_a_closed_result_on_every_target_closes_the_case_and_queues_the_fixed_letter(
        self,
    ) -> None:
        approved_template(self.alpha, language=self.lang, kind="fixed")
        second = add_target(self.case, "192.0.2.13", 25)
        with self.captureOnCommitCallbacks():
            self.post({"action": "recheck", "lang": self.lang})
        run = ScanRun.objects.get()
        first = self.case.findings.order_by("id").first().target
        with self.captureOnCommitCallbacks(execute=True):
            finding_recorded.send(sender=Finding, finding=closed_finding(first, run))
        self.case.refresh_from_db()
        self.assertEqual(self.case.status, Case.Status.READY)  # one server is still open
        page = self.client.get(self.url)
        self.assertContains(
            page, self.t("Closed: your server refused our test. Thank you for fixing it.")
        )
        self.assertContains(page, self.t("Waiting for the result."))
        with self.captureOnCommitCallbacks(execute=True):
            finding_recorded.send(sender=Finding, finding=closed_finding(second, run))
        self.case.refresh_from_db()
        self.assertEqual(self.case.status, Case.Status.FIXED)
        fixed = CaseEvent.objects.get(
            case=self.case, to_status=Case.Status.FIXED, kind=CaseEvent.Kind.STATUS_CHANGED
        )
        self.assertEqual(fixed.from_status, Case.Status.READY)
        self.assertIn("Verified fixed", fixed.note)
        self.assertEqual(
            CaseEvent.objects.filter(case=self.case, kind=CaseEvent.Kind.RECHECK_RESULT).count(), 2
        )
        letter = Letter.objects.get(case=self.case, kind=LetterKind.FIXED)
        self.assertEqual(letter.recipient_email, "abuse@alpha.example")
        page = self.client.get(self.url)
        self.assertContains(page, self.t.status("fixed"))
        self.assertContains(
            page,
            self.t(
                "Nothing more is needed. We will only write to you again about this server if a "
                "later check finds it open."
            )[:30],
        )
        self.assertNotContains(page, self.t("I fixed it — check again"))

    def test_a_closed_finding_never_touches_a_withdrawn_case(self) -> None:
        campaign_services.case_transition(case=self.case, to_status=Case.Status.WITHDRAWN)
        target = self.case.findings.first().target
        with self.captureOnCommitCallbacks(execute=True):
            finding_recorded.send(sender=Finding, finding=closed_finding(target))
        self.case.refresh_from_db()
        self.assertEqual(self.case.status, Case.Status.WITHDRAWN)
        self.assertFalse(Letter.objects.filter(kind=LetterKind.FIXED).exists())

    @override_settings(**FAST_SCAN)
    def test_check_again_against_a_fixed_server_closes_the_case(self) -> None:
        owner = ServerOwner.objects.create(name="Trap Hosting", country="GB", partner=self.alpha)
        Contact.objects.create(
            server_owner=owner, position=0, kind=Contact.Kind.ABUSE, email="abuse@trap.example"
        )
        with run_trap("closed", "127.0.83.1") as trap:
            now = timezone.now()
            target = Target.objects.create(
                ip=trap.host, port=trap.port, protocol="smtp", first_seen=now, last_seen=now
            )
            Attribution.objects.create(target=target, server_owner=owner)
            finding = Finding.objects.create(
                target=target,
                protocol="smtp",
                verdict="confirmed-open",
                evidence_level="strong",
                probed_at=now - timedelta(days=3),
            )
            case = campaign_services.case_add_finding(
                campaign=self.campaign, owner=owner, finding=finding
            )
            url, _ = remediation_link_issue(case, None)
            with self.captureOnCommitCallbacks(execute=True):
                r = self.post({"action": "recheck"}, f"/r/{token_of(url)}/")
            self.assertEqual(r.status_code, 302)
            self.assertGreater(trap.state.connections, 0)
        case.refresh_from_db()
        self.assertEqual(case.status, Case.Status.FIXED)
        run = ScanRun.objects.get()
        self.assertEqual(run.status, ScanRun.Status.FINISHED)
        self.assertEqual(list(run.targets.all()), [target])
        data = self.client.get(f"/r/{token_of(url)}/status.json").json()
        self.assertEqual((data["state"], data["case_status"]), ("done", "fixed"))
        self.assertEqual(data["findings"][0]["result"], "closed")


class CorrectionTestCase(RemediationTestCase):
    def test_not_my_server_goes_to_the_partners_review_queue(self) -> None:
        contacts = list(self.case.server_owner.contacts.values_list("email", flat=True))
        r = self.post({"action": "not_mine", "lang": self.lang, "note": "We sold it in May."})
        self.assertEqual(r.status_code, 302)
        self.case.refresh_from_db()
        self.assertEqual(self.case.status, Case.Status.NEEDS_REVIEW)
        self.assertIn("not their server", self.case.review_reason)
        event = CaseEvent.objects.get(case=self.case, kind=CaseEvent.Kind.CORRECTION)
        self.assertEqual(event.data["correction"], "not_mine")
        self.assertEqual(event.data["note"], "We sold it in May.")
        self.assertEqual(
            list(self.case.server_owner.contacts.values_list("email", flat=True)), contacts
        )  # nothing changes by itself
        self.assertEqual(self.case.server_owner_id, self.alpha_case.server_owner_id)
        self.assertContains(
            self.client.get(self.url),
            self.t(
                "On %(date)s you told us that this is not your server. Our staff will look at it "
                "before we write about it again.",
                date=local_date(timezone.localdate(), self.lang, self.case.partner.country),
            ),
        )
        self.client.force_login(self.alpha_staff)
        queue = self.client.get("/admin/campaign/case/", {"status__exact": "needs_review"})
        self.assertContains(queue, self.case.reference)

    def test_another_contact_is_recorded_not_added(self) -> None:
        r = self.post({"action": "other_contact", "lang": self.lang, "email": "noc@alpha.example"})
        self.assertEqual(r.status_code, 302)
        event = CaseEvent.objects.get(case=self.case, kind=CaseEvent.Kind.CORRECTION)
        self.assertEqual(event.data["email"], "noc@alpha.example")
        self.assertFalse(Contact.objects.filter(email="noc@alpha.example").exists())
        self.case.refresh_from_db()
        self.assertEqual(self.case.status, Case.Status.NEEDS_REVIEW)
        self.assertIn("noc@alpha.example", self.case.review_reason)

    def test_a_bad_address_is_refused_with_a_message(self) -> None:
        r = self.post({"action": "other_contact", "lang": self.lang, "email": "not-an-address"})
        self.assertEqual(r.status_code, 400)
        self.assertContains(r, 'class="errorlist"', status_code=400)
        self.assertFalse(CaseEvent.objects.filter(kind=CaseEvent.Kind.CORRECTION).exists())


class OptOutTestCase(RemediationTestCase):
    def test_opting_out_suppresses_the_letters_recipient_and_the_case(self) -> None:
        r = self.post({"action": "optout", "lang": self.lang, "reason": "Handled by our NOC."})
        self.assertEqual(r.status_code, 302)
        suppression = Suppression.objects.get()
        self.assertEqual(
            (suppression.partner, suppression.email, suppression.reason),
            (self.alpha, "abuse@alpha.example", Suppression.Reason.OPT_OUT),
        )
        self.assertIn("Handled by our NOC.", suppression.note)
        event = CaseEvent.objects.get(case=self.case, kind=CaseEvent.Kind.OPT_OUT)
        self.assertEqual(event.data["email"], "abuse@alpha.example")
        self.case.refresh_from_db()
        self.assertEqual(self.case.status, Case.Status.SUPPRESSED)
        self.assertTrue(  # through the transition service, with its audit row
            self.case.events.filter(
                kind=CaseEvent.Kind.STATUS_CHANGED, to_status=Case.Status.SUPPRESSED
            ).exists()
        )
        self.assertIsNone(letter_next_contact(self.case))
        self.assertContains(
            self.client.get(self.url),
            self.t(
                "Done. We will not write to %(email)s again about this server.",
                email="abuse@alpha.example",
            ),
        )
        self.post({"action": "optout", "lang": self.lang})  # twice: still one suppression
        self.assertEqual(Suppression.objects.count(), 1)
        self.client.force_login(self.alpha_staff)
        admin = self.client.get("/admin/campaign/suppression/")
        self.assertContains(admin, "abuse@alpha.example")

    def test_a_link_without_a_letter_opts_out_the_first_contact(self) -> None:
        url, _ = remediation_link_issue(self.case, None)
        self.post({"action": "optout"}, f"/r/{token_of(url)}/")
        self.assertEqual(Suppression.objects.get().email, "abuse@alpha.example")
