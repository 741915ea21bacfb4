from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class SecureAdminConfig(AdminConfig):
    default_site = "config.admin_site.SecureAdminSite"

    def ready(self) -> None:
        super().ready()
        from config import accounts  # noqa: F401  (registers the deploy check on MFA)
