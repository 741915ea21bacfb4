"""anymail's tracking webhooks, mounted only for the ESP this deployment sends through.

anymail's own URLconf mounts every ESP it knows, inbound and tracking, and answers a body it
cannot parse with a 500 (which an ESP retries for days). Here only the configured ESP's tracking
URL exists, it exists only while a webhook secret is set, and a body that is not the JSON shape
that ESP sends is refused with a 400 before anymail reads it.
"""

from __future__ import annotations

import json
from typing import Any

from anymail.exceptions import AnymailError, AnymailWebhookValidationFailure
from anymail.webhooks.amazon_ses import AmazonSESTrackingWebhookView
from anymail.webhooks.base import AnymailCoreWebhookView
from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from anymail.webhooks.postmark import PostmarkTrackingWebhookView
from anymail.webhooks.sendgrid import SendGridTrackingWebhookView
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

# No ESP's tracking payload comes near this; a deeper one is an attack on the parser.
MAX_NESTING = 32

# The ESPs whose tracking payloads the test suite replays (tests/letters/test_tracking.py).
TRACKING_VIEWS: dict[str, type[AnymailCoreWebhookView]] = {
    "postmark": PostmarkTrackingWebhookView,
    "mailgun": MailgunTrackingWebhookView,
    "amazon_ses": AmazonSESTrackingWebhookView,
    "sendgrid": SendGridTrackingWebhookView,
}
# SendGrid posts a JSON list of events; the others one JSON object (Mailgun's legacy
# form-encoded webhooks are left to anymail's own parser).
_TOP_LEVEL: dict[str, type] = {"sendgrid": list}


class MalformedWebhook(SuspiciousOperation):
    """A webhook body that is not what the ESP sends: Django answers 400."""


def nesting_depth(value: Any, limit: int) -> int:
    """Depth of nested lists/objects, counted without recursion; stops once past `limit`."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_body(esp: str, request: HttpRequest) -> None:
    if esp == "mailgun" and request.content_type != "application/json":
        return
    try:
        payload = json.loads(request.body)
    except (ValueError, RecursionError) as exc:
        raise MalformedWebhook(f"{esp} webhook: the body is not JSON") from exc
    expected = _TOP_LEVEL.get(esp, dict)
    if not isinstance(payload, expected):
        raise MalformedWebhook(f"{esp} webhook: the body is not a JSON {expected.__name__}")
    if nesting_depth(payload, MAX_NESTING) > MAX_NESTING:
        raise MalformedWebhook(f"{esp} webhook: the body is nested over {MAX_NESTING} levels")
    message = payload.get("Message") if isinstance(payload, dict) else None
    if esp == "amazon_ses" and isinstance(message, str):
        # SNS wraps the SES event as a JSON string that anymail decodes again.
        try:
            inner = json.loads(message)
        except (ValueError, RecursionError) as exc:
            raise MalformedWebhook("amazon_ses webhook: the SNS Message is not JSON") from exc
        if nesting_depth(inner, MAX_NESTING) > MAX_NESTING:
            raise MalformedWebhook("amazon_ses webhook: the SNS Message is nested too deeply")


def _guarded(esp: str, view_class: type[AnymailCoreWebhookView]) -> type[AnymailCoreWebhookView]:
    parsing_errors = (AnymailError, KeyError, TypeError, ValueError, AttributeError, IndexError)

    class Guarded(view_class):
        def run_validators(self, request: HttpRequest) -> None:
            check_body(esp, request)
            try:
                super().run_validators(request)
            except AnymailWebhookValidationFailure:
                raise
            except parsing_errors as exc:
                raise MalformedWebhook(f"{esp} webhook: {exc}") from exc

        def parse_events(self, request: HttpRequest) -> list[Any]:
            # Only parsing is guarded: an error while recording the events (say, the database
            # is down) stays a 500 so that the ESP retries later.
            try:
                return list(super().parse_events(request))
            except (*parsing_errors, RecursionError) as exc:
                raise MalformedWebhook(f"{esp} webhook: {exc!r}") from exc

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{view_class.__name__}"
    return Guarded


def enabled_esps() -> list[str]:
    """ESPs whose tracking webhook is mounted: none without a webhook secret."""
    if not settings.ANYMAIL.get("WEBHOOK_SECRET"):
        return []
    return [esp for esp in settings.ANYMAIL_WEBHOOK_ESPS if esp in TRACKING_VIEWS]


def _tracking_view(esp: str) -> Any:
    view = _guarded(esp, TRACKING_VIEWS[esp]).as_view()

    @csrf_exempt
    def tracking(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if esp not in enabled_esps():
            raise Http404(f"No {esp} webhook here")
        return view(request, *args, **kwargs)

    return tracking


app_name = "anymail"
urlpatterns = [
    path(f"{esp}/tracking/", _tracking_view(esp), name=f"{esp}_tracking_webhook")
    for esp in TRACKING_VIEWS
]
