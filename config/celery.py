"""The Celery app: one image, a worker per queue (scans, letters, default) and one beat."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("secure_your_server")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    # Each queue its own routing key: left blank, Celery binds all three with the default key
    # and every message is copied into every queue.
    task_queues=[Queue(name, routing_key=name) for name in ("default", "scans", "letters")],
    task_default_queue="default",
    # By task name: probes on `scans`, rendering and sending on `letters`, the rest on `default`.
    task_routes=[
        {"scanning.*": {"queue": "scans"}},
        {"letters.*": {"queue": "letters"}},
        {"*": {"queue": "default"}},  # sweeps.*, campaign.*, exports
    ],
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    # Safe because every task claims its row with a conditional UPDATE before any side effect.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    timezone="UTC",
)
app.autodiscover_tasks()


def _patch_kombu_restore_unacked() -> None:
    """kombu's Redis QoS.restore_unacked, run when a consumer channel closes (a broker reconnect,
    a warm shutdown), builds a new connection pool from a connection already torn down and
    raises AttributeError ('NoneType' object has no attribute 'hostname'), which can end the
    worker's main process. The messages it meant to restore stay in Redis's unacked index and
    come back after the visibility timeout (and the reconciler repairs their rows sooner), so
    the error is logged and the worker lives on."""
    import logging
    from typing import Any

    from kombu.transport import redis as kombu_redis

    original = kombu_redis.QoS.restore_unacked
    if getattr(original, "_sys_patched", False):
        return

    def restore_unacked(self: Any, client: Any = None) -> Any:
        try:
            return original(self, client)
        except AttributeError as exc:
            logging.getLogger(__name__).warning(
                "Unacked messages left for the visibility timeout to restore: %s", exc
            )
            self._delivered.clear()
            return None

    restore_unacked._sys_patched = True  # type: ignore[attr-defined]
    kombu_redis.QoS.restore_unacked = restore_unacked  # type: ignore[method-assign]


_patch_kombu_restore_unacked()
