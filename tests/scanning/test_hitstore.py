"""The database hit store never blocks the event loop the probes share.

No database is needed: the store's database work is replaced by work that finishes only once
another coroutine on the loop has made progress.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from unittest import mock

from scanning.hitstore import DatabaseHitStore
from scanning.probes.canary import CanaryHit, new_token


def _progress_during(call: Callable[[DatabaseHitStore], Awaitable[object]]) -> list[str]:
    """Run `call` against a store whose database work only finishes once another coroutine has
    made progress; return the order of events. A store that blocked the event loop would keep
    that coroutine from running, and its database work would give up unreleased."""
    released = threading.Event()
    events: list[str] = []

    def slow_database_work(*args: object) -> list[CanaryHit]:
        events.append("database work started")
        # The bound only keeps a wrong implementation from hanging the suite.
        events.append("released" if released.wait(10) else "gave up unreleased")
        return []

    async def main() -> None:
        async def ticker() -> None:
            while not released.is_set():
                await asyncio.sleep(0.01)
                if "database work started" in events:
                    events.append("tick")
                    if events.count("tick") == 3:
                        released.set()

        ticking = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)  # the ticker is running before the store is asked
        await call(store)
        events.append("store answered")
        released.set()
        await ticking

    store = DatabaseHitStore()
    try:
        with (
            mock.patch.object(DatabaseHitStore, "_read", staticmethod(slow_database_work)),
            mock.patch.object(DatabaseHitStore, "_write", staticmethod(slow_database_work)),
        ):
            asyncio.run(main())
    finally:
        store._executor.shutdown(wait=True)
    return events


def test_reading_hits_never_blocks_the_event_loop() -> None:
    events = _progress_during(lambda store: store.hits(new_token()))
    assert events == [
        "database work started",
        "tick",
        "tick",
        "tick",
        "released",
        "store answered",
    ], events


def test_recording_and_waiting_for_hits_never_block_the_event_loop() -> None:
    hit = CanaryHit(new_token(), "http", "127.0.57.3", {}, "GET /c/x")
    for call in (
        lambda store: store.record(hit),
        lambda store: store.wait_for(hit.token, kind=None, timeout=0),
    ):
        events = _progress_during(call)
        assert events[-2:] == ["released", "store answered"], events
        assert events.count("tick") == 3, events
