"""Hard or soft, per ESP: every branch of each reader in letters/services/bounces.py.

A hard bounce marks the contact bounced and writes to the next one; a soft one is only recorded.
The recorded webhooks in test_tracking.py cover one payload per ESP; these cover the rest of
each ESP's vocabulary, so that a reader that loses a branch fails here.
"""

from __future__ import annotations

from typing import Any

import pytest
from anymail.signals import AnymailTrackingEvent, EventType

from letters.services.bounces import bounce_kind

BOUNCED, REJECTED = EventType.BOUNCED, EventType.REJECTED

CASES: list[tuple[str, str, dict[str, Any], str]] = [
    # Postmark: by Type, by TypeCode, or by the suppression it put on the address.
    ("postmark", BOUNCED, {"Type": "HardBounce", "TypeCode": 1}, "hard"),
    ("postmark", BOUNCED, {"Type": "BadEmailAddress"}, "hard"),
    ("postmark", BOUNCED, {"TypeCode": 100000}, "hard"),
    ("postmark", BOUNCED, {"Type": "Transient", "SuppressionReason": "HardBounce"}, "hard"),
    ("postmark", BOUNCED, {"Type": "SoftBounce", "TypeCode": 4096}, "soft"),
    ("postmark", BOUNCED, {}, ""),
    # Mailgun: the severity decides; without one, a bounce or failure is final.
    ("mailgun", BOUNCED, {"event-data": {"event": "failed", "severity": "permanent"}}, "hard"),
    ("mailgun", BOUNCED, {"event-data": {"event": "failed", "severity": "temporary"}}, "soft"),
    ("mailgun", BOUNCED, {"event-data": {"event": "failed"}}, "hard"),
    ("mailgun", BOUNCED, {"event": "bounced"}, "hard"),  # legacy webhooks: no event-data
    ("mailgun", BOUNCED, {"event-data": {"event": "accepted"}}, ""),
    # Amazon SES: only a Permanent bounce is hard.
    ("amazon_ses", BOUNCED, {"bounce": {"bounceType": "Permanent"}}, "hard"),
    ("amazon_ses", BOUNCED, {"bounce": {"bounceType": "Transient"}}, "soft"),
    ("amazon_ses", BOUNCED, {"bounce": {"bounceType": "Undetermined"}}, "soft"),
    ("amazon_ses", BOUNCED, {}, ""),
    # SendGrid: "blocked" is temporary; a drop because the address bounced before is final.
    ("sendgrid", BOUNCED, {"event": "bounce", "type": "bounce"}, "hard"),
    ("sendgrid", BOUNCED, {"event": "bounce", "type": "blocked"}, "soft"),
    ("sendgrid", REJECTED, {"event": "dropped", "reason": "Bounced Address"}, "hard"),
    ("sendgrid", REJECTED, {"event": "dropped", "reason": "Unsubscribed Address"}, ""),
    # An ESP without a reader: anymail's own summary.
    ("elsewhere", BOUNCED, {}, "hard"),
    ("elsewhere", REJECTED, {}, ""),
]


@pytest.mark.parametrize(("esp", "event_type", "raw", "expected"), CASES)
def test_each_esps_bounce_is_read_as_hard_or_soft(
    esp: str, event_type: str, raw: dict[str, Any], expected: str
) -> None:
    event = AnymailTrackingEvent(event_type=event_type, esp_event=raw)
    assert bounce_kind(esp, event, raw) == expected


@pytest.mark.parametrize("esp", ["postmark", "mailgun", "amazon_ses", "sendgrid", "elsewhere"])
def test_a_deferral_is_soft_and_a_delivery_is_no_bounce_whatever_the_payload(esp: str) -> None:
    hard_looking = {"Type": "HardBounce", "bounce": {"bounceType": "Permanent"}, "event": "bounce"}
    deferred = AnymailTrackingEvent(event_type=EventType.DEFERRED, esp_event=hard_looking)
    delivered = AnymailTrackingEvent(event_type=EventType.DELIVERED, esp_event=hard_looking)
    assert bounce_kind(esp, deferred, hard_looking) == "soft"
    assert bounce_kind(esp, delivered, hard_looking) == ""
