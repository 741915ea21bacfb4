"""Headers for the public pages (scan page, remediation pages): no external assets, no leaks."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse

# Everything is served by us; inline styles are not needed and scripts come only from /static/.
PUBLIC_CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'"
)


def public_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = PUBLIC_CSP
        # Never "no-referrer": it makes browsers send `Origin: null`, failing CSRF on our forms.
        response["Referrer-Policy"] = "same-origin"  # the remediation token never leaves us
        response["X-Content-Type-Options"] = "nosniff"
        response["Cross-Origin-Opener-Policy"] = "same-origin"
        response["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        response.setdefault("Cache-Control", "no-store")  # unless the view says it may be cached
        return response

    return wrapped
