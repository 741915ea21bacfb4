"""`Authorization: Bearer <token>`, a rate limit per token, and who may use the API at all."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from api import services
from api.models import ApiToken
from campaign import selectors


class BearerTokenAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Authorization header: expected 'Bearer <token>' with one token and no spaces."
            )
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The token must be ASCII.") from None
        token = services.api_token_authenticate(raw=raw)
        if token is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked token.")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class IsPartnerMember(BasePermission):
    """A staff user with a partner membership (or a superuser): the admin's own entry rule."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_staff) and selectors.is_member(request.user)


RATE = re.compile(r"^\d+/(second|minute|hour|day)$")


class TokenRateThrottle(SimpleRateThrottle):
    """Requests per token (not per user or address): each of a partner's tools has its own."""

    scope = "token"

    def get_rate(self) -> str:
        return settings.API_RATE_LIMIT  # read per request so a changed setting applies at once

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        token = request.auth
        if not isinstance(token, ApiToken):
            return None
        return self.cache_format % {"scope": self.scope, "ident": token.pk}
