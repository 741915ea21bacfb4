from __future__ import annotations

from django.apps import AppConfig


class ScanningConfig(AppConfig):
    name = "scanning"
    verbose_name = "Scanning"

    def ready(self) -> None:
        from scanning import lookups  # noqa: F401  (registers the inet lookup)
