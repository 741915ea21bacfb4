"""The broker side of the outbox: queue depths for health, and the kombu reconnect guard."""

from __future__ import annotations

from unittest import mock

import pytest
from kombu.transport import redis as kombu_redis

from config import broker
from config.celery import app


def test_it_survives_kombus_restore_unacked_failing_on_a_torn_down_connection() -> None:
    qos = kombu_redis.QoS.__new__(kombu_redis.QoS)
    qos._delivered = {"tag": object()}
    qos.channel = mock.Mock()
    # What kombu raises when the channel's connection is gone: building a pool from None.
    qos.channel.conn_or_acquire.side_effect = AttributeError(
        "'NoneType' object has no attribute 'hostname'"
    )
    assert getattr(kombu_redis.QoS.restore_unacked, "_sys_patched", False)
    assert qos.restore_unacked() is None  # logged, not raised: the worker's main process lives
    assert qos._delivered == {}


def test_queue_depths_are_unknown_when_the_broker_cannot_be_asked() -> None:
    previous = app.conf.broker_url
    try:
        app.conf.broker_url = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
        assert broker.queue_depths(timeout=0.5) == {"default": None, "scans": None, "letters": None}
        app.conf.broker_url = "filesystem://"
        assert set(broker.queue_depths().values()) == {None}
    finally:
        app.conf.broker_url = previous


@pytest.mark.parametrize("queue", broker.QUEUES)
def test_every_celery_queue_is_measured(queue: str) -> None:
    assert queue in {q.name for q in app.conf.task_queues}
