from __future__ import annotations

from django.apps import AppConfig


class LettersConfig(AppConfig):
    name = "letters"
    verbose_name = "Letters"

    def ready(self) -> None:
        # Registers checks, connects signals, adds letters' actions to campaign's work queue.
        from letters import checks, receivers, workqueue  # noqa: F401
