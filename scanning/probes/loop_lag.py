"""Our own lateness, kept apart from the server's silence.

With thousands of probes in one event loop on a busy machine, the loop can run seconds late: a
reply that arrived in time sits unread while a timeout's timer, itself late, fires. Measured on
the bench fleet (2,000 targets at once, two loaded cores) the loop ran up to several seconds
behind and nearly every probe "timed out" connecting to a server that had answered at once.
So a probe's timeouts count only time in which the loop was keeping up (`patient_wait_for`),
and the scanner admits new probes only while the loop keeps up (`AdaptiveSlots`).

No Django here: the probes and the runner use it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

TICK = 0.05  # how often the monitor checks the loop's punctuality (seconds)


class LoopLag:
    """Measures how late one event loop runs: a ticker that should wake every TICK seconds
    adds up how much later than that it woke. `total()` is that sum so far, the lateness still
    under way included, so a caller can tell how much of an interval was the loop's own delay."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.recorded = 0.0
        self.next_due = loop.time() + TICK
        self.worst = 0.0
        self.samples: list[float] = []  # each tick's lateness, for reports (bounded below)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self.next_due = self.loop.time() + TICK
            self._task = self.loop.create_task(self._tick())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self.next_due - self.loop.time()))
            now = self.loop.time()
            late = max(0.0, now - self.next_due)
            self.recorded += late
            self.worst = max(self.worst, late)
            if len(self.samples) < 100_000:
                self.samples.append(late)
            self.next_due = now + TICK

    def total(self) -> float:
        """Seconds of lateness so far, counting the tick that is overdue right now."""
        return self.recorded + max(0.0, self.loop.time() - self.next_due)

    def current(self) -> float:
        """How late the loop is running right now (the overdue tick, else the last one)."""
        overdue = self.loop.time() - self.next_due
        if overdue > 0:
            return overdue
        return self.samples[-1] if self.samples else 0.0

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.samples)
        if not ordered:
            return {"ticks": 0, "p50_ms": 0.0, "p95_ms": 0.0, "max_ms": 0.0, "total_s": 0.0}
        return {
            "ticks": len(ordered),
            "p50_ms": round(1000 * ordered[len(ordered) // 2], 1),
            "p95_ms": round(1000 * ordered[int(len(ordered) * 0.95)], 1),
            "max_ms": round(1000 * ordered[-1], 1),
            "total_s": round(self.recorded, 2),
        }


_monitors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopLag] = (
    weakref.WeakKeyDictionary()
)


def monitor() -> LoopLag:
    """The running loop's monitor, started on first use."""
    loop = asyncio.get_running_loop()
    lag = _monitors.get(loop)
    if lag is None:
        lag = _monitors[loop] = LoopLag(loop)
    lag.start()
    return lag


def punctual_time() -> float:
    """The loop's clock minus its lateness so far: deadlines set on this clock stretch by
    whatever time the loop itself lost between the reads they cover."""
    lag = monitor()
    return lag.loop.time() - lag.total()


async def patient_wait_for(aw: Awaitable[T], timeout: float) -> T:
    """`asyncio.wait_for`, except that time the loop spent running late does not count.

    When the timer fires, the loop's lateness since the wait began is added back and the timer
    is set again; the wait ends when `timeout` seconds of punctual loop time have passed without
    an answer. The extension is bounded (at most 10 x timeout in all) so a stalled loop cannot
    wait forever. The awaitable runs in the caller's task: no task is made per read.
    """
    loop = asyncio.get_running_loop()
    lag = monitor()
    began, lag_at_start = loop.time(), lag.total()
    hard_end = began + 10 * max(timeout, TICK)
    async with asyncio.timeout(None) as scope:
        timer: list[asyncio.TimerHandle] = []

        def check() -> None:
            end = min(began + timeout + (lag.total() - lag_at_start), hard_end)
            if end <= loop.time():
                scope.reschedule(loop.time())  # expire now: TimeoutError in the waiting task
            else:
                timer[:] = [loop.call_at(end, check)]

        timer.append(loop.call_at(began + timeout, check))
        try:
            return await aw
        finally:
            for handle in timer:
                handle.cancel()


class AdaptiveSlots:
    """A concurrency cap that follows what the machine sustains (additive increase,
    multiplicative decrease on loop lateness), never above `ceiling` nor below `floor`.

    A probe waiting here has not started: its timeouts are not running, so queueing here costs
    time but never a verdict.
    """

    def __init__(
        self,
        ceiling: int,
        *,
        floor: int = 16,
        start: int = 64,
        high_lag: float = 0.25,
        low_lag: float = 0.05,
    ) -> None:
        self.ceiling = max(1, ceiling)
        self.floor = max(1, min(floor, self.ceiling))
        self.limit = max(self.floor, min(start, self.ceiling))
        self.high_lag, self.low_lag = high_lag, low_lag
        self.in_use = 0
        self.peak_limit = self.limit
        self.lowest_limit = self.limit
        self._waiters: list[asyncio.Future[None]] = []
        self._lag: LoopLag | None = None
        self._adjusted = 0.0

    def _adjust(self) -> None:
        if self._lag is None:
            self._lag = monitor()
        now = self._lag.loop.time()
        if now - self._adjusted < TICK:
            return
        self._adjusted = now
        late = self._lag.current()
        if late > self.high_lag:
            self.limit = max(self.floor, self.limit // 2)
        elif late < self.low_lag and self.in_use >= self.limit - 1:
            self.limit = min(self.ceiling, self.limit + max(1, self.limit // 8))
        self.peak_limit = max(self.peak_limit, self.limit)
        self.lowest_limit = min(self.lowest_limit, self.limit)

    async def acquire(self) -> None:
        self._adjust()
        while self.in_use >= self.limit:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                # Re-check now and then: the limit may grow while nobody releases.
                await asyncio.wait({waiter}, timeout=TICK * 4)
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            self._adjust()
        self.in_use += 1

    def release(self) -> None:
        self.in_use -= 1
        self._adjust()
        free = self.limit - self.in_use
        while free > 0 and self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                free -= 1
