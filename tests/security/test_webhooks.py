"""Forged, malformed and misdirected posts to the ESP tracking webhooks (the real URLconf)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.test import Client, override_settings

from letters import services
from letters.models import DeliveryEvent, Letter
from tests.base import BaseTestCase
from tests.letters.helpers import approved_template
from tests.letters.test_tracking import AUTH, MAILGUN_KEY, SECRET, load, mailgun_sign
from tests.test_settings import start_django

ALL_ESPS = ["postmark", "mailgun", "amazon_ses", "sendgrid"]
SECURED = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}


def deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


class WebhookCase(BaseTestCase):
    def setUp(self) -> None:
        approved_template(self.alpha)
        with self.captureOnCommitCallbacks(execute=True):
            self.letter = services.letter_queue(case=self.alpha_case, fresh=True)
        self.letter.refresh_from_db()
        self.addCleanup(lambda: [x.pdf.delete(save=False) for x in Letter.objects.all()])
        # A 500 must show up as a status here, not as an exception in the test.
        self.web = Client(raise_request_exception=False)

    def post(
        self, url: str, body: str | bytes, *, content_type: str = "application/json", **extra: Any
    ):
        with self.captureOnCommitCallbacks(execute=True):
            return self.web.post(url, data=body, content_type=content_type, **extra)

    def postmark_bounce(self) -> str:
        payload = load("postmark_bounce")
        payload["Metadata"] = {"letter": str(self.letter.public_id)}
        payload["MessageID"] = self.letter.esp_message_id
        payload["Email"] = self.letter.recipient_email
        return json.dumps(payload)


class ForgedEventsTestCase(WebhookCase):
    def test_it_ignores_an_anonymous_forged_bounce_when_no_secret_is_set(self) -> None:
        # The shipped default: no ESP, no secret. The forged bounce must not touch the letter.
        for esp in ALL_ESPS:
            with self.subTest(esp=esp):
                response = self.post(f"/anymail/{esp}/tracking/", self.postmark_bounce())
                self.assertEqual(response.status_code, 404)
        self.letter.refresh_from_db()
        self.assertEqual(self.letter.status, Letter.Status.SENT)
        self.assertFalse(DeliveryEvent.objects.exists())

    @override_settings(ANYMAIL={**settings.ANYMAIL}, ANYMAIL_WEBHOOK_ESPS=["postmark"])
    def test_it_ignores_a_forged_bounce_for_a_configured_esp_without_a_secret(self) -> None:
        settings.ANYMAIL.pop("WEBHOOK_SECRET", None)
        response = self.post("/anymail/postmark/tracking/", self.postmark_bounce())
        self.assertEqual(response.status_code, 404)
        self.assertFalse(DeliveryEvent.objects.exists())

    @override_settings(ANYMAIL=SECURED, ANYMAIL_WEBHOOK_ESPS=["postmark"])
    def test_it_rejects_a_bounce_without_the_webhook_credentials(self) -> None:
        response = self.post("/anymail/postmark/tracking/", self.postmark_bounce())
        self.assertEqual(response.status_code, 400)
        self.letter.refresh_from_db()
        self.assertEqual(self.letter.status, Letter.Status.SENT)
        response = self.post("/anymail/postmark/tracking/", self.postmark_bounce(), **AUTH)
        self.assertEqual(response.status_code, 200)  # the real ESP still gets through
        self.letter.refresh_from_db()
        self.assertEqual(self.letter.status, Letter.Status.BOUNCED)

    @override_settings(ANYMAIL=SECURED, ANYMAIL_WEBHOOK_ESPS=["mailgun"])
    def test_it_rejects_a_mailgun_event_signed_with_the_wrong_key(self) -> None:
        payload = load("mailgun_failed_permanent")
        payload["event-data"]["user-variables"] = {"letter": str(self.letter.public_id)}
        forged = json.dumps(mailgun_sign(payload, key="an-attackers-guess"))
        response = self.post("/anymail/mailgun/tracking/", forged, **AUTH)
        self.assertEqual(response.status_code, 400)
        self.assertFalse(DeliveryEvent.objects.exists())
        genuine = json.dumps(mailgun_sign(payload))
        self.assertEqual(self.post("/anymail/mailgun/tracking/", genuine, **AUTH).status_code, 200)
        self.assertTrue(DeliveryEvent.objects.filter(esp="mailgun").exists())

    @override_settings(ANYMAIL=SECURED, ANYMAIL_WEBHOOK_ESPS=["postmark"])
    def test_it_hides_the_urls_of_esps_that_are_not_configured(self) -> None:
        for url in (
            "/anymail/mailgun/tracking/",
            "/anymail/amazon_ses/tracking/",
            "/anymail/sendgrid/tracking/",
            "/anymail/mandrill/",
            "/anymail/postmark/inbound/",
            "/anymail/sparkpost/tracking/",
        ):
            with self.subTest(url=url):
                self.assertEqual(self.post(url, self.postmark_bounce(), **AUTH).status_code, 404)
        self.assertFalse(DeliveryEvent.objects.exists())


@override_settings(ANYMAIL=SECURED, ANYMAIL_WEBHOOK_ESPS=ALL_ESPS)
class MalformedBodiesTestCase(WebhookCase):
    def post_to(self, esp: str, body: str | bytes) -> Any:
        extra: dict[str, Any] = dict(AUTH)
        content_type = "application/json"
        if esp == "amazon_ses":
            content_type = "text/plain; charset=utf-8"
            extra |= {
                "HTTP_X_AMZ_SNS_MESSAGE_TYPE": "Notification",
                "HTTP_X_AMZ_SNS_MESSAGE_ID": "m",
            }
        return self.post(f"/anymail/{esp}/tracking/", body, content_type=content_type, **extra)

    def assert_refused(self, body: str | bytes, esps: list[str] = ALL_ESPS) -> None:
        for esp in esps:
            with self.subTest(esp=esp, body=body[:40]):
                self.assertEqual(self.post_to(esp, body).status_code, 400)
        self.assertFalse(DeliveryEvent.objects.exists())

    def test_it_answers_malformed_json_with_400_not_500(self) -> None:
        self.assert_refused('{"RecordType": "Bounce", ')
        self.assert_refused(b"\xff\xfe\xfd not even UTF-8")

    def test_it_answers_a_json_list_with_400_not_500(self) -> None:
        self.assert_refused("[1, 2, 3]", ["postmark", "mailgun", "amazon_ses"])
        self.assert_refused('[{"event": "bounce"}]', ["postmark", "mailgun", "amazon_ses"])

    def test_it_answers_an_object_where_sendgrid_sends_a_list_with_400(self) -> None:
        self.assert_refused('{"event": "bounce"}', ["sendgrid"])
        self.assert_refused('["not an event"]', ["sendgrid"])

    def test_it_answers_deep_nesting_with_400_not_500(self) -> None:
        self.assert_refused(deep(100_000))  # past Python's recursion limit
        self.assert_refused(deep(200))  # parses, but no ESP nests like this

    def test_it_answers_a_deeply_nested_sns_message_with_400(self) -> None:
        sns = load("amazon_ses_bounce")
        sns["Message"] = deep(100_000)
        self.assert_refused(json.dumps(sns), ["amazon_ses"])

    def test_it_answers_a_postmark_object_with_wrong_types_with_400(self) -> None:
        self.assert_refused('{"RecordType": ["Bounce"], "Metadata": 7}', ["postmark"])
        self.assert_refused('{"signature": "x", "event-data": []}', ["mailgun"])


class StartUpAndDeployCheckTestCase(BaseTestCase):
    @override_settings(MAIL_ESP="postmark", ANYMAIL={**settings.ANYMAIL})
    def test_check_deploy_reports_a_real_esp_without_a_webhook_secret(self) -> None:
        settings.ANYMAIL.pop("WEBHOOK_SECRET", None)
        ids = {m.id for m in run_checks(include_deployment_checks=True)}
        self.assertIn("letters.E001", ids)

    @override_settings(MAIL_ESP="mailgun", ANYMAIL={**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET})
    def test_check_deploy_reports_mailgun_without_a_signing_key(self) -> None:
        settings.ANYMAIL.pop("MAILGUN_WEBHOOK_SIGNING_KEY", None)
        ids = {m.id for m in run_checks(include_deployment_checks=True)}
        self.assertIn("letters.E002", ids)
        self.assertNotIn("letters.E001", ids)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MAIL_ESP": "postmark", "MAIL_ESP_API_KEY": "k"}, "ANYMAIL_WEBHOOK_SECRET"),
        ({"MAIL_ESP": "amazon_ses"}, "ANYMAIL_WEBHOOK_SECRET"),
        ({"MAIL_ESP": "sendgrid", "MAIL_ESP_API_KEY": "k"}, "ANYMAIL_WEBHOOK_SECRET"),
        (
            {"MAIL_ESP": "mailgun", "MAIL_ESP_API_KEY": "k", "ANYMAIL_WEBHOOK_SECRET": "u:p"},
            "MAILGUN_WEBHOOK_SIGNING_KEY",
        ),
    ],
)
def test_it_refuses_to_start_a_real_esp_whose_webhooks_anyone_could_forge(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    result = start_django(tmp_path, **{"ANYMAIL_WEBHOOK_SECRET": "", **env})
    assert result.returncode != 0
    assert named in result.stderr.splitlines()[-1]


def test_it_starts_a_real_esp_with_its_webhook_secret(tmp_path: Path) -> None:
    result = start_django(
        tmp_path, MAIL_ESP="postmark", MAIL_ESP_API_KEY="k", ANYMAIL_WEBHOOK_SECRET="u:p"
    )
    assert result.returncode == 0, result.stderr


def test_it_accepts_exactly_the_esps_whose_recorded_webhooks_are_tested() -> None:
    import config.settings as project_settings
    from letters.webhooks import TRACKING_VIEWS

    accepted = set(project_settings._ESP_BACKENDS)
    assert accepted == set(TRACKING_VIEWS) == set(ALL_ESPS)
    recorded = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
    for esp in accepted:
        assert list(recorded.glob(f"{esp}_*.json")), f"no recorded {esp} webhook payload"
