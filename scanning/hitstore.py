"""Canary hits in the database, so Celery workers see what a separate canary process received.

The probes and the canary are asyncio code, and Django's ORM refuses to run inside an event
loop's thread; every query therefore runs on one private thread (which also keeps one database
connection, and serialises writes before reads, so this process always reads its own hits). The
loop only awaits that thread: a slow query delays the probe that asked, never the other probes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import close_old_connections, connections

from scanning.models import CanaryHit as CanaryHitRow
from scanning.probes.canary import CanaryHit

log = logging.getLogger(__name__)

QUERY_TIMEOUT = 10.0
T = TypeVar("T")


class DatabaseHitStore:
    """The HitStore of scanning.probes.canary, backed by scanning.models.CanaryHit rows."""

    def __init__(self, poll_interval: float = 0.25) -> None:
        self.poll_interval = poll_interval
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="canary-hits-db"
        )

    # --- on the database thread ----------------------------------------------------------------

    @staticmethod
    def _write(hit: CanaryHit) -> None:
        close_old_connections()  # drop a connection the server closed or CONN_MAX_AGE expired
        try:
            peer_ip = str(ipaddress.ip_address(hit.peer_ip))
        except ValueError:
            peer_ip = "::"  # the column needs an address; an unknown peer is kept, not dropped
        CanaryHitRow.objects.create(
            token=hit.token[:64],
            kind=hit.kind[:8],
            peer_ip=peer_ip,
            headers=hit.headers,
            detail=hit.detail,
            at=datetime.datetime.fromtimestamp(hit.at, datetime.UTC),
        )

    @staticmethod
    def _read(token: str, kind: str | None = None) -> list[CanaryHit]:
        close_old_connections()
        rows = CanaryHitRow.objects.filter(token=token)
        if kind is not None:
            rows = rows.filter(kind=kind)
        return [
            CanaryHit(
                token=row.token,
                kind=row.kind,
                peer_ip=row.peer_ip,
                headers=row.headers,
                detail=row.detail,
                at=row.at.timestamp(),
            )
            for row in rows.order_by("at", "id")
        ]

    # --- the HitStore protocol -----------------------------------------------------------------

    async def record(self, hit: CanaryHit) -> None:
        """Store a hit; the canary awaits this before it answers."""
        try:
            await self._on_db_thread(self._write, hit)
        except Exception as exc:
            log.error("canary hit not stored: %r", exc)
            raise

    async def hits(self, token: str) -> list[CanaryHit]:
        return await asyncio.wait_for(self._on_db_thread(self._read, token), QUERY_TIMEOUT)

    async def wait_for(self, token: str, *, kind: str | None, timeout: float) -> list[CanaryHit]:
        deadline = time.monotonic() + timeout
        while True:
            found = await self._on_db_thread(self._read, token, kind)
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            await asyncio.sleep(min(self.poll_interval, remaining))

    async def _on_db_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the store's database thread; the event loop goes on meanwhile."""
        return await asyncio.wrap_future(self._executor.submit(fn, *args))

    def close(self) -> None:
        """Close this store's database connection and its thread."""
        try:
            self._executor.submit(connections.close_all).result(QUERY_TIMEOUT)
        finally:
            self._executor.shutdown(wait=True)
