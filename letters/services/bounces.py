"""Hard or soft: each ESP's own bounce vocabulary, one reader per ESP in a table.

anymail folds every ESP's bounce into BOUNCED or REJECTED; only the raw event says whether the
address is gone for good (hard: move to the next contact) or only for now (soft: recorded only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anymail.signals import AnymailTrackingEvent, EventType

POSTMARK_HARD_TYPES = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
POSTMARK_HARD_CODES = {1, 100000, 100002}


def _postmark(raw: dict[str, Any]) -> str:
    if raw.get("Type") in POSTMARK_HARD_TYPES or raw.get("TypeCode") in POSTMARK_HARD_CODES:
        return "hard"
    if raw.get("SuppressionReason") == "HardBounce":
        return "hard"
    return "soft" if raw.get("Type") or raw.get("TypeCode") else ""


def _mailgun(raw: dict[str, Any]) -> str:
    data = raw.get("event-data", raw)
    severity = data.get("severity")
    if severity:
        return "hard" if severity == "permanent" else "soft"
    return "hard" if data.get("event") in ("bounced", "failed") else ""


def _amazon_ses(raw: dict[str, Any]) -> str:
    kind = (raw.get("bounce") or {}).get("bounceType")
    if kind:
        return "hard" if kind == "Permanent" else "soft"
    return ""


def _sendgrid(raw: dict[str, Any]) -> str:
    if raw.get("event") == "bounce":
        return "soft" if raw.get("type") == "blocked" else "hard"
    if raw.get("event") == "dropped" and "bounce" in str(raw.get("reason", "")).lower():
        return "hard"
    return ""


# ESP slug (anymail's esp_name, lower case, spaces as underscores) -> reader of its raw event.
BOUNCE_READERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "postmark": _postmark,
    "mailgun": _mailgun,
    "amazon_ses": _amazon_ses,
    "sendgrid": _sendgrid,
}


def bounce_kind(esp: str, event: AnymailTrackingEvent, raw: Any) -> str:
    """'hard', 'soft' or '' (not a bounce), from the ESP's own event, not anymail's summary."""
    if event.event_type == EventType.DEFERRED:
        return "soft"
    if event.event_type not in (EventType.BOUNCED, EventType.REJECTED):
        return ""
    reader = BOUNCE_READERS.get(esp)
    if reader is None:  # an ESP without a reader: anymail's own word
        return "hard" if event.event_type == EventType.BOUNCED else ""
    return reader(raw if isinstance(raw, dict) else {})
