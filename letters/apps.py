from __future__ import annotations

from django.apps import AppConfig


class LettersConfig(AppConfig):
    name = "letters"
    verbose_name = "Letters"

    def ready(self) -> None:
        # Connects anymail's tracking signal; adds letters' actions to campaign's work queue.
        from letters import receivers, workqueue  # noqa: F401
