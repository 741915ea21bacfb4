"""The owner's page never misleads: what we saw and when, in every state of the case, guides for
each server's own address, forms that say what they did, English always offered, and the forms
rate limited without losing a suggestion."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django.test import override_settings
from django.utils import timezone

from campaign import services as campaign_services
from campaign.models import Attribution, Case, CaseEvent
from letters import guides
from letters.links import remediation_link_issue
from letters.rendering import local_date
from scanning.models import Finding, ScanRun, Target
from tests.letters.helpers import PageText
from tests.letters.test_remediation import RemediationTestCase, add_target, token_of

DAY = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
CHECK_BUTTON = "I fixed it — check again"
REMINDER = "we will send you a reminder"


class StateTestCase(RemediationTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.t = PageText("en")
        self.case.findings.update(probed_at=DAY)

    def page(self, **params: str) -> str:
        r = self.client.get(self.url, {"lang": "en", **params})
        self.assertEqual(r.status_code, 200)
        return r.content.decode()

    def set_status(self, status: str, **fields: object) -> None:
        Case.objects.filter(pk=self.case.pk).update(status=status, **fields)


class WhatWeSawTestCase(StateTestCase):
    def test_it_says_what_we_saw_and_when_before_any_recheck(self) -> None:
        page = self.page()
        self.assertIn("Open when we checked on " + local_date(DAY.date(), "en", "GB"), page)
        self.assertIn("5 December 2026", page)  # a UK owner reads the date the UK way
        self.assertNotIn("Still open", page)  # only after a check the owner asked for
        self.assertNotIn("accepted our test again", page)

    def test_a_likely_open_finding_reads_differently_from_a_confirmed_one(self) -> None:
        add_target(self.case, "192.0.2.20", 25, verdict="likely-open")
        Finding.objects.filter(target__ip="192.0.2.20").update(probed_at=DAY)
        page = self.page()
        self.assertIn("Probably open when we checked on", page)
        self.assertIn("Open when we checked on", page)  # the confirmed one still reads as such
        self.assertIn("we cannot be certain", page)
        self.assertEqual(page.count("we cannot be certain"), 1)

    def test_still_open_only_after_the_owners_own_recheck(self) -> None:
        target = self.case.findings.first().target
        self.post({"action": "recheck", "lang": "en"})
        run = ScanRun.objects.get()
        ScanRun.objects.filter(pk=run.pk).update(status=ScanRun.Status.FINISHED)
        Finding.objects.create(
            target=target,
            scan_run=run,
            protocol="smtp",
            verdict="confirmed-open",
            evidence_level="strong",
            probed_at=timezone.now(),
        )
        page = self.page()
        today = local_date(timezone.localdate(), "en", "GB")
        self.assertIn(f"Still open when we checked again on {today}", page)
        self.assertIn(f"You asked us to check again on {today}", page)

    def test_a_scheduled_recheck_that_found_it_closed_says_closed_not_still_open(self) -> None:
        target = self.case.findings.first().target
        closed = Finding.objects.create(
            target=target,
            protocol="smtp",
            verdict="closed",
            evidence_level="none",
            probed_at=DAY + timedelta(days=1),
        )
        self.case.findings.add(closed)
        page = self.page()
        self.assertIn(
            "Closed when we checked on " + local_date((DAY + timedelta(days=1)).date(), "en", "GB"),
            page,
        )
        self.assertNotIn("Still open", page)


class StatesTestCase(StateTestCase):
    """Each state: its status, what happens next, and only the actions it allows."""

    def assert_state(self, page: str, *, status: str, check: bool, reminder: bool) -> None:
        self.assertIn(self.t.status(status), page)
        self.assertEqual(CHECK_BUTTON in page, check, status)
        self.assertEqual(REMINDER in page, reminder, status)

    def test_new(self) -> None:
        self.set_status(Case.Status.NEW)
        page = self.page()
        self.assert_state(page, status="new", check=True, reminder=False)
        self.assertIn("We will tell you the result on this page.", page)

    def test_ready(self) -> None:
        self.set_status(Case.Status.READY)
        page = self.page()
        self.assert_state(page, status="ready", check=True, reminder=False)

    def test_notified_without_a_deadline_says_a_reminder_may_come(self) -> None:
        self.set_status(Case.Status.NOTIFIED, next_action_at=None)
        page = self.page()
        self.assert_state(page, status="notified", check=True, reminder=False)
        self.assertIn("may send you a reminder while the server is still open", page)

    def test_notified_with_a_deadline_names_the_date_of_the_reminder(self) -> None:
        when = DAY + timedelta(days=14)
        self.set_status(Case.Status.NOTIFIED, next_action_at=when, next_action="reminder")
        page = self.page()
        self.assert_state(page, status="notified", check=True, reminder=True)
        self.assertIn(f"If our check on {local_date(when.date(), 'en', 'GB')} still finds", page)

    def test_notified_before_the_first_recheck_names_no_reminder_date(self) -> None:
        when = DAY + timedelta(days=7)  # the schedule's first re-probe, not the reminder
        self.set_status(Case.Status.NOTIFIED, next_action_at=when, next_action="reprobe")
        page = self.page()
        self.assertNotIn(local_date(when.date(), "en", "GB"), page)
        self.assertIn("may send you a reminder while the server is still open", page)

    def test_reminded_says_who_follows_up_and_no_second_reminder(self) -> None:
        when = DAY + timedelta(days=28)
        self.set_status(Case.Status.REMINDED, next_action_at=when)
        page = self.page()
        self.assert_state(page, status="reminded", check=True, reminder=False)
        self.assertIn(
            f"still open on {local_date(when.date(), 'en', 'GB')}, staff of Alpha Agency", page
        )

    def test_escalated(self) -> None:
        self.set_status(Case.Status.ESCALATED)
        page = self.page()
        self.assert_state(page, status="escalated", check=True, reminder=False)
        self.assertIn("Staff of Alpha Agency are following up on this case.", page)

    def test_fixed(self) -> None:
        self.set_status(Case.Status.FIXED)
        page = self.page()
        self.assert_state(page, status="fixed", check=False, reminder=False)
        self.assertIn("Nothing more is needed.", page)
        self.assertNotIn("were open, or probably open", page)

    def test_opted_out_offers_no_check_and_warns_of_no_reminder(self) -> None:
        self.post({"action": "optout", "lang": "en"})
        self.case.refresh_from_db()
        self.assertEqual(self.case.status, Case.Status.SUPPRESSED)
        page = self.page()
        self.assert_state(page, status="suppressed", check=False, reminder=False)
        self.assertIn("will send no reminders", page)
        self.assertIn("Done. We will not write to abuse@alpha.example again", page)
        r = self.post({"action": "recheck", "lang": "en"})  # nor a crafted post
        self.assertEqual(r.status_code, 400)
        self.assertFalse(ScanRun.objects.exists())

    def test_withdrawn(self) -> None:
        self.set_status(Case.Status.WITHDRAWN)
        page = self.page()
        self.assert_state(page, status="withdrawn", check=False, reminder=False)

    def test_unresponsive_can_still_be_checked(self) -> None:
        self.set_status(Case.Status.UNRESPONSIVE)
        page = self.page()
        self.assert_state(page, status="unresponsive", check=True, reminder=False)

    def test_in_review_promises_nothing_and_threatens_nothing(self) -> None:
        self.set_status(Case.Status.NEEDS_REVIEW, review_reason="Weak evidence only.")
        page = self.page()
        self.assert_state(page, status="needs_review", check=True, reminder=False)
        self.assertIn("We send nothing more about it until they have.", page)

    def test_an_expired_link_gets_the_neutral_page(self) -> None:
        self.link.expires_at = timezone.now() - timedelta(minutes=1)
        self.link.save()
        r = self.client.get(self.url, HTTP_ACCEPT_LANGUAGE="en")
        self.assertEqual(r.status_code, 404)
        self.assertContains(r, "This link is not valid or has expired.", status_code=404)
        self.assertNotContains(r, CHECK_BUTTON, status_code=404)

    def test_the_status_endpoint_agrees_with_the_page(self) -> None:
        self.post({"action": "optout", "lang": "en"})
        data = self.client.get(f"{self.url}status.json", {"lang": "en"}).json()
        self.assertFalse(data["can_recheck"])
        self.assertNotIn(REMINDER, data["next_text"])


class GuidesPerServerTestCase(StateTestCase):
    def test_each_guide_uses_the_address_and_port_of_its_own_finding(self) -> None:
        # A mail server on .10 (the case's own) and a Squid proxy on .11.
        now = timezone.now()
        proxy = Target.objects.create(
            ip="192.0.2.11", port=8080, protocol="http", first_seen=now, last_seen=now
        )
        Attribution.objects.create(target=proxy, server_owner=self.case.server_owner)
        finding = Finding.objects.create(
            target=proxy,
            protocol="http",
            verdict="confirmed-open",
            evidence_level="strong",
            software_family="Squid",
            probed_at=now,
        )
        campaign_services.case_add_finding(
            campaign=self.case.campaign, owner=self.case.server_owner, finding=finding
        )
        Finding.objects.filter(target__ip="192.0.2.10").update(software_family="Postfix")
        page = self.page()
        squid = page[page.index('id="guide-' + str(proxy.pk)) :]
        squid = squid[: squid.index("</details>")]
        self.assertIn("curl -x http://192.0.2.11:8080", squid)
        self.assertIn("acl own_clients src 192.0.2.11/32", squid)
        self.assertNotIn("192.0.2.10", squid)
        mail_id = self.case.findings.get(target__ip="192.0.2.10").target_id
        postfix = page[page.index(f'id="guide-{mail_id}"') :]
        postfix = postfix[: postfix.index("</details>")]
        self.assertIn("mynetworks = 192.0.2.10/32", postfix)
        self.assertNotIn("192.0.2.11", postfix)
        self.assertEqual(len(re.findall(r'<details class="guide"', page)), 2)  # folded by default
        self.assertNotIn('<details class="guide" id="guide-1" open', page)

    def test_an_ipv6_server_gets_a_host_route_and_a_bracketed_proxy_address(self) -> None:
        text = guides.for_server(
            "acl own_clients src 192.0.2.10/32\ncurl -x http://192.0.2.10:3128 -sI x",
            "2001:db8::5",
            8080,
        )
        self.assertEqual(
            text, "acl own_clients src 2001:db8::5/128\ncurl -x http://[2001:db8::5]:8080 -sI x"
        )
        self.assertEqual(
            guides.for_server("telnet 192.0.2.10 25", "198.51.100.100", 2525),
            "telnet 198.51.100.100 2525",
        )
        self.assertEqual(
            guides.for_server("allow 192.0.2.100", "203.0.113.1", 1), "allow 192.0.2.100"
        )


class FormsConfirmTestCase(StateTestCase):
    def test_another_contact_has_a_name_and_an_address_and_confirms_both(self) -> None:
        page = self.page()
        self.assertIn('name="name"', page)
        self.assertIn('name="email"', page)
        self.assertIn("Name or organisation", page)
        self.post(
            {
                "action": "other_contact",
                "lang": "en",
                "name": "NOC Team",
                "email": "noc@alpha.example",
            }
        )
        page = self.page()
        self.assertIn("you asked us to write to NOC Team &lt;noc@alpha.example&gt; instead", page)
        self.assertNotIn("this is not your server", page)
        event = CaseEvent.objects.get(kind=CaseEvent.Kind.CORRECTION)
        self.assertEqual(
            (event.data["name"], event.data["email"]), ("NOC Team", "noc@alpha.example")
        )

    def test_not_mine_confirms_not_mine(self) -> None:
        self.post({"action": "not_mine", "lang": "en"})
        page = self.page()
        self.assertIn("you told us that this is not your server", page)
        self.assertNotIn("you asked us to write to", page)

    def test_every_suggestion_is_kept_and_the_first_review_reason_stands(self) -> None:
        for i in range(3):
            self.post({"action": "other_contact", "lang": "en", "email": f"noc{i}@alpha.example"})
        events = CaseEvent.objects.filter(kind=CaseEvent.Kind.CORRECTION).order_by("id")
        self.assertEqual(
            [e.data["email"] for e in events], [f"noc{i}@alpha.example" for i in range(3)]
        )
        self.case.refresh_from_db()
        self.assertIn("noc0@alpha.example", self.case.review_reason)
        page = self.page()
        for i in range(3):
            self.assertIn(f"noc{i}@alpha.example", page)


class LanguagesTestCase(StateTestCase):
    def test_english_is_offered_beside_a_partner_with_one_language(self) -> None:
        self.alpha.languages = ["ja"]
        self.alpha.save()
        Case.objects.filter(pk=self.case.pk).update(language="ja")
        r = self.client.get(self.url)
        options = re.findall(r'<option value="([^"]+)"', r.content.decode())
        self.assertEqual(options, ["ja", "en"])
        self.assertContains(r, '<html lang="ja">')
        self.assertContains(r, PageText("ja")(CHECK_BUTTON))
        r = self.client.get(self.url, {"lang": "en"})
        self.assertContains(r, CHECK_BUTTON)

    def test_rate_limited_minutes_use_the_right_plural(self) -> None:
        with override_settings(RECHECK_MIN_INTERVAL=60):
            self.post({"action": "recheck", "lang": "en"})
            r = self.post({"action": "recheck", "lang": "en"})
        self.assertContains(r, "You can ask for another check in 1 minute.", status_code=429)
        self.assertNotContains(r, "1 minutes", status_code=429)


@override_settings(REMEDIATION_FORM_LIMIT_PER_LINK=3, REMEDIATION_FORM_LIMIT_PER_ADDRESS=5)
class RateLimitTestCase(StateTestCase):
    def test_a_link_is_limited_with_a_clear_page_and_nothing_recorded(self) -> None:
        for i in range(3):
            r = self.post({"action": "other_contact", "lang": "en", "email": f"n{i}@alpha.example"})
            self.assertEqual(r.status_code, 302)
        r = self.post({"action": "other_contact", "lang": "en", "email": "n9@alpha.example"})
        self.assertEqual(r.status_code, 429)
        self.assertContains(r, "Please wait a moment", status_code=429)
        self.assertContains(r, "we did not record this one", status_code=429)
        self.assertIn("Retry-After", r)
        self.assertEqual(CaseEvent.objects.filter(kind=CaseEvent.Kind.CORRECTION).count(), 3)
        # Every form counts, "check again" and opt-out included.
        self.assertEqual(self.post({"action": "optout", "lang": "en"}).status_code, 429)
        self.assertEqual(self.post({"action": "recheck", "lang": "en"}).status_code, 429)
        self.assertFalse(ScanRun.objects.exists())

    def test_one_address_is_limited_across_links(self) -> None:
        urls = []
        for _ in range(3):
            url, _link = remediation_link_issue(self.case, None)
            urls.append(f"/r/{token_of(url)}/")
        codes = [
            self.post({"action": "not_mine", "lang": "en"}, urls[i % 3]).status_code
            for i in range(6)
        ]
        self.assertEqual(codes, [302] * 5 + [429])
        other = self.client.post(urls[0], {"action": "not_mine"}, REMOTE_ADDR="198.51.100.77")
        self.assertEqual(other.status_code, 302)  # another address still gets through

    @override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
    def test_behind_the_proxy_a_forged_forwarded_address_does_not_escape_the_limit(self) -> None:
        urls = []
        for _ in range(3):
            url, _link = remediation_link_issue(self.case, None)
            urls.append(f"/r/{token_of(url)}/")
        codes = [
            self.client.post(
                urls[i % 3],
                {"action": "not_mine", "lang": "en"},
                # The client's own first entry changes each time; the proxy appends the real one.
                HTTP_X_FORWARDED_FOR=f"6.6.6.{i}, 192.0.2.5",
                HTTP_X_FORWARDED_PROTO="https",
                secure=True,
            ).status_code
            for i in range(6)
        ]
        self.assertEqual(codes, [302] * 5 + [429])

    def test_a_page_view_is_never_limited(self) -> None:
        for _ in range(4):
            self.post({"action": "not_mine", "lang": "en"})
        self.assertEqual(self.client.get(self.url).status_code, 200)
