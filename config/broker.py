"""What waits in the broker's queues (Redis lists named after the queues)."""

from __future__ import annotations

from config.celery import app

QUEUES = ("default", "scans", "letters")


def queue_depths(*, timeout: float = 2.0) -> dict[str, int | None]:
    """Messages waiting per queue; None for each when the broker cannot be asked (not Redis, or
    unreachable)."""
    unknown: dict[str, int | None] = dict.fromkeys(QUEUES)
    if not str(app.conf.broker_url or "").startswith(("redis://", "rediss://")):
        return unknown
    try:
        import redis

        client = redis.Redis.from_url(
            app.conf.broker_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        try:
            return {name: int(client.llen(name)) for name in QUEUES}
        finally:
            client.close()
    except Exception:  # any broker failure means "unknown", which health reports as such
        return unknown
