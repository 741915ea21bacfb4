"""Our own lateness is not the server's silence: timeouts that skip the loop's lag, and a
concurrency cap that backs off when the loop falls behind (scanning/probes/loop_lag.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from scanning.probes.loop_lag import AdaptiveSlots, monitor, patient_wait_for


def _answer_after_a_stall(stall: float) -> asyncio.Future[str]:
    """A future the "server" answers 30 ms after our loop comes back from a `stall` of its own:
    counted in time our loop was keeping up, the answer came in time."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[str] = loop.create_future()

    def stall_then_answer() -> None:
        time.sleep(stall)  # the loop is busy with other probes' callbacks
        loop.call_later(0.03, fut.set_result, "220 hello")

    loop.call_soon(stall_then_answer)
    return fut


def test_a_reply_that_came_while_our_loop_stalled_is_not_a_timeout() -> None:
    async def go() -> tuple[str, bool]:
        monitor()
        await asyncio.sleep(0.06)  # the monitor has ticked once
        patient = await patient_wait_for(_answer_after_a_stall(0.4), 0.1)
        try:
            await asyncio.wait_for(_answer_after_a_stall(0.4), 0.1)
            plain_timed_out = False
        except TimeoutError:
            plain_timed_out = True
        return patient, plain_timed_out

    patient, plain_timed_out = asyncio.run(go())
    assert patient == "220 hello"
    assert plain_timed_out  # what the probes used to do: a wrong "timeout" under load


def test_a_silent_server_still_times_out() -> None:
    async def go() -> None:
        never: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        await patient_wait_for(never, 0.05)

    with pytest.raises(TimeoutError):
        asyncio.run(go())


def test_a_failure_inside_the_wait_is_raised_as_itself() -> None:
    async def refused() -> None:
        raise ConnectionRefusedError

    with pytest.raises(ConnectionRefusedError):
        asyncio.run(patient_wait_for(refused(), 1.0))


def test_the_cap_backs_off_when_the_loop_lags_and_grows_when_it_keeps_up() -> None:
    async def go() -> tuple[int, int, int]:
        slots = AdaptiveSlots(200, floor=8, start=64)
        monitor()
        await asyncio.sleep(0.06)
        time.sleep(0.5)  # the loop falls far behind
        await slots.acquire()
        backed_off = slots.limit
        slots.release()
        await asyncio.sleep(0.2)  # punctual again
        for _ in range(20):  # every slot in use while the loop keeps up: room to grow
            held = 0
            while held < slots.limit:
                await slots.acquire()
                held += 1
            await asyncio.sleep(0.06)
            for _ in range(held):
                slots.release()
        return backed_off, slots.limit, slots.ceiling

    backed_off, grown, ceiling = asyncio.run(go())
    assert backed_off < 64
    assert backed_off < grown <= ceiling


def test_the_cap_never_admits_more_than_its_limit() -> None:
    async def go() -> int:
        slots = AdaptiveSlots(3, floor=1, start=3)
        running = peak = 0

        async def probe() -> None:
            nonlocal running, peak
            await slots.acquire()
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1
            slots.release()

        await asyncio.gather(*(probe() for _ in range(20)))
        return peak

    assert asyncio.run(go()) == 3
