"""API tokens in the admin: created here (shown once, on the page that creates them), revoked
here. Each staff user sees their own (superusers everyone's); caseworkers and approvers create
and revoke them."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from api import services
from api.models import ApiToken
from campaign import selectors
from campaign.admin_base import ScopedAdmin


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ("name",)


@admin.register(ApiToken)
class ApiTokenAdmin(ScopedAdmin):
    form = ApiTokenForm
    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    list_select_related = ("user",)
    search_fields = ("name", "prefix")
    readonly_fields = ("user", "prefix", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def scope_queryset(self, request: HttpRequest, qs: QuerySet) -> QuerySet:
        return qs if request.user.is_superuser else qs.filter(user=request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # As everywhere in the admin, viewers change nothing: an administrator gives a viewer a
        # token with `manage.py create_api_token`.
        return bool(request.user.is_staff) and selectors.has_role(request.user, self.change_role)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Tokens are not edited: the revoke action is the one change (it needs this permission).
        return obj is None and self.has_add_permission(request)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("name",) if obj is None else ("name", *self.readonly_fields)

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = services.api_token_revoke(tokens=queryset)
        self.message_user(request, f"{count} token(s) revoked.", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        assert isinstance(request.user, User)  # the admin admits only logged-in staff
        token, raw = services.api_token_create(user=request.user, name=obj.name)
        obj.pk, obj.prefix, obj.key_hash = token.pk, token.prefix, token.key_hash
        obj.user, obj.created_at = token.user, token.created_at
        request._api_token_raw = raw  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: ApiToken, post_url_continue: Any = None
    ) -> HttpResponse:
        # The raw token goes straight into this page, never into a message cookie or the session.
        context = {
            **self.admin_site.each_context(request),
            "title": "API token created",
            "token": obj,
            "raw": request._api_token_raw,  # type: ignore[attr-defined]
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "api/token_created.html", context)
        response["Cache-Control"] = "no-store"
        return response
