"""Letter state changes, by job: templates, queueing, sending, tracking (bounces: per-ESP table).

Every public name stays importable from `letters.services`.
"""

from __future__ import annotations

# Names the single module used to expose, kept for callers written against it.
from campaign.services import (
    IllegalTransition,
    case_record_event,
    case_transition,
    owner_is_suppressed,
)
from letters import emails, links, rendering
from letters.services.bounces import BOUNCE_READERS, bounce_kind
from letters.services.queueing import (
    IN_FLIGHT,
    LIVE,
    QUEUEABLE,
    STUCK_AFTER,
    LetterNotQueued,
    email_is_suppressed,
    letter_next_contact,
    letter_queue,
    letter_queue_refusal,
    letter_retry,
    letters_stuck,
)
from letters.services.sending import _is_transient, letter_mark_sent, letter_send
from letters.services.templates import (
    ApprovalRefused,
    LoadReport,
    template_approval_refusal,
    template_approve,
    template_new_version,
    template_tone_problems,
    templates_load_shipped,
)
from letters.services.tracking import delivery_event_record, esp_slug, stable_event_id
from letters.tasks import TransientSendError, send_letter_task

__all__ = [
    "BOUNCE_READERS",
    "IN_FLIGHT",
    "LIVE",
    "QUEUEABLE",
    "STUCK_AFTER",
    "ApprovalRefused",
    "IllegalTransition",
    "LetterNotQueued",
    "LoadReport",
    "TransientSendError",
    "_is_transient",
    "bounce_kind",
    "case_record_event",
    "case_transition",
    "emails",
    "links",
    "owner_is_suppressed",
    "rendering",
    "delivery_event_record",
    "email_is_suppressed",
    "esp_slug",
    "letter_mark_sent",
    "letter_next_contact",
    "letter_queue",
    "letter_queue_refusal",
    "letter_retry",
    "letter_send",
    "letters_stuck",
    "send_letter_task",
    "stable_event_id",
    "template_approval_refusal",
    "template_approve",
    "template_new_version",
    "template_tone_problems",
    "templates_load_shipped",
]
