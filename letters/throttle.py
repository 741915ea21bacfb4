"""Rate limits for the recipient's forms: per remediation link and per client address, counted in
the cache (Redis in production, so every web process shares the counts)."""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    # Behind our own TLS proxy every request comes from the proxy: the client is the last
    # address it appended. Earlier entries are whatever the client chose to send.
    if settings.SECURE_PROXY_SSL_HEADER:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return str(request.META.get("REMOTE_ADDR", ""))


def _hit(scope: str, key: str, limit: int, window: int) -> int:
    """Counts one request in the current window; the seconds until the window ends when this
    request is over the limit, else 0."""
    if limit <= 0:
        return 0
    now = int(time.time())
    start = now - now % window
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    name = f"throttle:{scope}:{digest}:{start}"
    cache.add(name, 0, timeout=window + 5)
    try:
        count = cache.incr(name)
    except ValueError:  # expired between add and incr: this request starts a new count
        cache.add(name, 1, timeout=window + 5)
        count = 1
    return (start + window - now) if count > limit else 0


def remediation_post_wait(request: HttpRequest, *, link_key: str) -> int:
    """Seconds the visitor must wait before the page accepts another form, or 0. Both counts go
    up on every post, so a flood from many links on one address stops as well as one link's."""
    window = settings.REMEDIATION_FORM_WINDOW
    per_link = _hit("remediation-link", link_key, settings.REMEDIATION_FORM_LIMIT_PER_LINK, window)
    per_address = _hit(
        "remediation-address",
        client_address(request),
        settings.REMEDIATION_FORM_LIMIT_PER_ADDRESS,
        window,
    )
    return max(per_link, per_address)
