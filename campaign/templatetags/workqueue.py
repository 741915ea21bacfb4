"""The work queue's link and count in every admin page's header."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext

from campaign import selectors
from campaign.workqueue import work_count

register = template.Library()

BADGE_CAP = 1000


@register.simple_tag(takes_context=True)
def work_queue_link(context: dict[str, Any]) -> SafeString | str:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not selectors.is_member(user):
        return ""
    count = work_count(user, cap=BADGE_CAP)
    return format_html(
        '<a class="work-queue-link" href="{}">{} <span class="work-queue-count{}" '
        'id="work-queue-count">{}</span></a>',
        reverse("admin:campaign_case_work_queue"),
        gettext("Work queue"),
        " has-items" if count else "",
        f"{count}+" if count >= BADGE_CAP else count,
    )
