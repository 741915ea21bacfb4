"""`manage.py check --deploy`: tracking webhooks that anyone could post to."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=True)
def check_webhook_secrets(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    from letters.webhooks import TRACKING_VIEWS

    esp = getattr(settings, "MAIL_ESP", "local")
    if esp not in TRACKING_VIEWS:
        return []
    errors = []
    if not settings.ANYMAIL.get("WEBHOOK_SECRET"):
        errors.append(
            Error(
                f"MAIL_ESP={esp} but ANYMAIL_WEBHOOK_SECRET is not set: anyone could post "
                "forged delivery, bounce and complaint events.",
                hint="Set ANYMAIL_WEBHOOK_SECRET=user:password and put the same credentials "
                "in the ESP's tracking webhook URL.",
                id="letters.E001",
            )
        )
    if esp == "mailgun" and not settings.ANYMAIL.get("MAILGUN_WEBHOOK_SIGNING_KEY"):
        errors.append(
            Error(
                "MAIL_ESP=mailgun but MAILGUN_WEBHOOK_SIGNING_KEY is not set: Mailgun's "
                "webhook signatures cannot be verified.",
                hint="Copy the HTTP webhook signing key from Mailgun's dashboard.",
                id="letters.E002",
            )
        )
    return errors
