"""The admin site: Django's, with the `r/` shortcut made to respect partner scoping."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.translation import gettext_lazy


class SecureAdminSite(admin.AdminSite):
    site_header = "Secure Your Server"
    site_title = "Secure Your Server"
    index_title = gettext_lazy("Campaign administration")
    # The front page is the campaign dashboard; the model list sits beside it.
    index_template = "reporting/dashboard.html"

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        from reporting.views import dashboard_context  # reporting imports the apps below it

        return super().index(request, {**dashboard_context(request), **(extra_context or {})})

    def get_urls(self) -> list[URLResolver | URLPattern]:
        urls = super().get_urls()
        # Django's shortcut looks the object up without asking the ModelAdmin, and its two error
        # messages tell "exists" from "doesn't": a partner could probe another partner's ids.
        ours = path(
            "r/<int:content_type_id>/<path:object_id>/",
            self.admin_view(self.scoped_shortcut),
            name="view_on_site",
        )
        from reporting.views import refresh_view

        refresh = path(
            "dashboard/refresh/", self.admin_view(refresh_view), name="reporting_refresh"
        )
        mfa = [
            path("mfa/", self.admin_view(self.mfa_enrol), name="mfa_enrol"),
            path("mfa/verify/", self.admin_view(self.mfa_verify), name="mfa_verify"),
        ]
        language = path("language/", self.admin_view(self.staff_language), name="staff_language")
        return [ours, refresh, language, *mfa] + [
            u for u in urls if getattr(u, "name", None) != "view_on_site"
        ]

    def staff_language(self, request: HttpRequest) -> HttpResponse:
        from campaign.preferences import language_view  # campaign's models need the app registry

        return language_view(self, request)

    def mfa_enrol(self, request: HttpRequest) -> HttpResponse:
        from config import accounts

        return accounts.enrol_view(self, request)

    def mfa_verify(self, request: HttpRequest) -> HttpResponse:
        from config import accounts

        return accounts.verify_view(self, request)

    def scoped_shortcut(
        self, request: HttpRequest, content_type_id: int, object_id: str
    ) -> HttpResponseRedirect:
        not_found = Http404("No such object.")
        try:
            model = ContentType.objects.get_for_id(content_type_id).model_class()
        except ContentType.DoesNotExist:
            raise not_found from None
        model_admin = self._registry.get(model) if model else None
        if model_admin is None or not model_admin.has_view_permission(request):
            raise not_found
        try:
            obj = model_admin.get_queryset(request).filter(pk=object_id).first()
        except (ValueError, ValidationError):
            obj = None
        if obj is None:
            raise not_found
        if hasattr(obj, "get_absolute_url"):
            return HttpResponseRedirect(obj.get_absolute_url())
        opts = obj._meta
        return HttpResponseRedirect(
            reverse(f"{self.name}:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        )
