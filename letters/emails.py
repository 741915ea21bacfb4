"""The advisory message. The only module that sets anymail attributes (tags, metadata, tracking)."""

from __future__ import annotations

from anymail.message import AnymailMessage
from django.conf import settings

from letters.models import Letter
from letters.rendering import RenderedLetter


def advisory_message(letter: Letter, *, rendered: RenderedLetter, pdf: bytes) -> AnymailMessage:
    partner = letter.case.partner
    message = AnymailMessage(
        subject=rendered.subject,
        body=rendered.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[letter.recipient_email],
        reply_to=[partner.reply_to] if partner.reply_to else None,
        headers={"Content-Language": rendered.language},
    )
    message.attach_alternative(rendered.html, "text/html")
    message.attach(f"{rendered.reference}.pdf", pdf, "application/pdf")
    # ESPs may show metadata in headers: an opaque id only, never names or addresses.
    message.tags = ["advisory-letter"]
    message.metadata = {"letter": str(letter.public_id)}
    message.track_opens = False
    message.track_clicks = False
    return message
