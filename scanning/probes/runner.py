"""Running probes over many targets, with the manners (targets and the address policy are in
scanning.probes.targets).

Plain asyncio, no Django (the `probe` command and the Celery tasks both drive it). The manners of
docs/probes.md live here, not in the probes: one connection at a time per target IP, a token bucket
per network, a global concurrency cap, the exclusion list asked right before each probe connects,
and the batch self-check that voids every result when something on our side intercepts traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ipaddress
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from scanning.probes.base import (
    DEFAULT_SCANNER_NAME,
    DEFAULT_USER_AGENT,
    Limits,
    ProbeContext,
    ProbeResult,
    Protocol,
    Reason,
    Target,
    Transcript,
    TransportStatus,
    Verdict,
    holding_turn,
)
from scanning.probes.canary import CanaryConfig, HitStore
from scanning.probes.connect import ConnectFailure, open_connection
from scanning.probes.loop_lag import AdaptiveSlots, patient_wait_for
from scanning.probes.open_proxy import (
    probe_http_proxy,
    probe_socks4,
    probe_socks5,
    selfcheck,
)
from scanning.probes.smtp_relay import probe_smtp
from scanning.probes.targets import (
    AUTO,
    LOOPBACK_CANARY,
    PROTOCOL_CHOICES,
    TargetError,
    TargetRefused,
    canary_reachable,
    parse_target,
    protocols_for_port,
    refuse_reason,
    split_host_port,
)

# The targets' names stay importable from here, where the scanner uses them.
__all__ = [
    "AUTO",
    "LOOPBACK_CANARY",
    "PROTOCOL_CHOICES",
    "ScanOptions",
    "Scanner",
    "Target",
    "TargetError",
    "TargetRefused",
    "TokenBucket",
    "canary_reachable",
    "network_key",
    "parse_target",
    "protocols_for_port",
    "refuse_reason",
    "split_host_port",
    "spoke",
]

log = logging.getLogger(__name__)

ExclusionCheck = Callable[[str], "bool | Awaitable[bool]"]
# A probe: `probe(target, context)`; the SMTP probe also takes `token=` (a greylisting retry).
ProbeFn = Callable[..., Awaitable[ProbeResult]]

# A server-first line that reads as an SMTP reply: 220 normally, 421/554 when it refuses us.
_SMTP_GREETING = re.compile(rb"^[2-5]\d\d[ \-\r\n]")
GREETING_MAX_BYTES = 512


def spoke(result: ProbeResult) -> bool:
    """Did the peer answer in this protocol at all (any valid reply, open or not)?"""
    if result.verdict is Verdict.NOT_APPLICABLE:
        return False
    if result.protocol is Protocol.SMTP:
        return bool(result.details.get("banner"))
    tests = result.details.get("tests") or []
    return any(t.get("handshake") not in ("not-run", "failed", None) for t in tests)


def _host_ip(ip: str) -> str:
    """The address a connection really reaches: ::ffff:192.0.2.1 is 192.0.2.1."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def network_key(ip: str, *, v4_prefix: int = 24, v6_prefix: int = 48) -> str:
    addr = ipaddress.ip_address(ip)
    prefix = v4_prefix if addr.version == 4 else v6_prefix
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; waiters are served in turn."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self.tokens = float(self.burst)
        self.updated = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self.rate <= 0:
            return  # no limit configured
        async with self._lock:
            while True:
                now = self.clock()
                self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


@dataclass(frozen=True)
class ScanOptions:
    protocol: str = AUTO  # one of PROTOCOL_CHOICES
    allow_private: bool = False
    confirm: bool = False
    full: bool = False
    source: str | None = None
    limits: Limits = field(default_factory=Limits)
    scanner_name: str = DEFAULT_SCANNER_NAME
    user_agent: str = DEFAULT_USER_AGENT
    max_concurrency: int = 64
    network_rate: float = 2.0  # probe sessions a second per network; <= 0: unlimited
    network_burst: int = 8
    v4_prefix: int = 24
    v6_prefix: int = 48
    greeting_wait: float = 2.0  # how long `auto` listens for a server-first greeting
    contact: str | None = None  # named in the relay test message; None: postmaster@CANARY


def _bare_result(
    target: Target,
    protocol: Protocol,
    verdict: Verdict,
    reasons: list[Reason],
    note: str,
    status: TransportStatus = TransportStatus.SUCCESS,
    started: float | None = None,
) -> ProbeResult:
    transcript = Transcript()
    transcript.note(note)
    duration = 0 if started is None else int((time.monotonic() - started) * 1000)
    return ProbeResult(
        target=target.given,
        ip=target.ip,
        port=target.port,
        protocol=protocol,
        verdict=verdict,
        reasons=reasons,
        transport_status=status,
        duration_ms=duration,
        transcript=transcript.redacted(),
    )


class Scanner:
    """Probes many targets concurrently, with the manners of docs/probes.md.

    `is_excluded(ip)` (sync or async) is asked right before every probe connects; an excluded
    target gets a `not-applicable` result with Reason.EXCLUDED and nothing is sent to it.
    """

    def __init__(
        self,
        *,
        canary: CanaryConfig,
        hits: HitStore,
        options: ScanOptions | None = None,
        is_excluded: ExclusionCheck | None = None,
        probes: dict[Protocol, ProbeFn] | None = None,
    ) -> None:
        self.canary = canary
        self.hits = hits
        self.options = options or ScanOptions()
        self.is_excluded = is_excluded
        opts = self.options
        self.context = ProbeContext(
            canary=canary,
            hits=hits,
            limits=opts.limits,
            source=opts.source,
            scanner_name=opts.scanner_name,
            user_agent=opts.user_agent,
            contact=opts.contact,
            confirm=opts.confirm,
            full=opts.full,
        )
        self.probes: dict[Protocol, ProbeFn] = {
            Protocol.SMTP: probe_smtp,
            Protocol.HTTP: probe_http_proxy,
            Protocol.SOCKS4: probe_socks4,
            Protocol.SOCKS5: probe_socks5,
            **(probes or {}),
        }
        self._ip_locks: dict[str, asyncio.Lock] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._slots: AdaptiveSlots | None = None
        self.selfcheck_passed: bool | None = None  # None: not run (no self-check port)

    # --- checks before anything is sent ----------------------------------------------------

    def refusals(
        self, targets: Iterable[Target], protocol: str | None = None
    ) -> list[tuple[Target, str]]:
        """Targets the policy forbids, with why; the caller refuses the batch before sending."""
        found = []
        for target in targets:
            why = refuse_reason(target.ip, self.options.allow_private)
            if why:
                found.append((target, why))
            elif not canary_reachable(
                target, protocol or self.options.protocol, self.canary.http_addr[0]
            ):
                found.append((target, LOOPBACK_CANARY))
        return found

    # --- running ---------------------------------------------------------------------------

    async def run(
        self,
        targets: Sequence[Target],
        on_result: Callable[[ProbeResult], None] | None = None,
    ) -> list[ProbeResult]:
        """Every result, in completion order; on_result sees each one as it is ready."""
        return await self.run_each([(t, None, None) for t in targets], on_result)

    async def run_each(
        self,
        items: Sequence[tuple[Target, str | None, str | None]],
        on_result: Callable[[ProbeResult], None] | None = None,
    ) -> list[ProbeResult]:
        """Like run(), with each target's own protocol (None: the options') and SMTP token
        (None: a new one; a greylisting retry repeats the first attempt's)."""
        refused = [r for t, proto, _ in items for r in self.refusals([t], proto)]
        if refused:
            raise TargetRefused(refused)
        if self.canary.selfcheck_addr is not None:
            self.selfcheck_passed = await selfcheck(self.context)
        results: list[ProbeResult] = []

        async def one(target: Target, protocol: str | None, token: str | None) -> None:
            try:
                found = await self.scan_target(target, protocol, token)
            except Exception as exc:  # a probe bug must not sink the other targets of the batch
                log.exception("probe of %s failed", target.given)
                found = [
                    _bare_result(
                        target,
                        self._guess(target, protocol),
                        Verdict.INCONCLUSIVE,
                        [],
                        f"internal error: {type(exc).__name__}",
                    )
                ]
            for result in found:
                results.append(result)
                if on_result is not None:
                    on_result(result)

        await asyncio.gather(*(one(*item) for item in items))
        return results

    async def scan_target(
        self, target: Target, protocol: str | None = None, token: str | None = None
    ) -> list[ProbeResult]:
        chosen = protocol or self.options.protocol
        if self.selfcheck_passed is False:
            # Something between us and the network answers for everyone: probing would only
            # produce its answers, so nothing is sent and the batch is void.
            result = _bare_result(
                target,
                self._guess(target, chosen),
                Verdict.INCONCLUSIVE,
                [Reason.SELFCHECK_FAILED],
                "not probed: the batch self-check reached something that is not our canary",
            )
            return [result]
        if chosen != AUTO:
            return [await self._probe(target, Protocol(chosen), token)]
        return await self._auto(target, token)

    def _guess(self, target: Target, protocol: str | None = None) -> Protocol:
        chosen = protocol or self.options.protocol
        if chosen != AUTO:
            return Protocol(chosen)
        return (protocols_for_port(target.port) or [Protocol.HTTP])[0]

    async def _excluded(self, ip: str) -> bool:
        if self.is_excluded is None:
            return False
        # An IPv4-mapped target is asked about in both forms: the list may hold either.
        for form in dict.fromkeys((ip, _host_ip(ip))):
            answer = self.is_excluded(form)
            if inspect.isawaitable(answer):
                answer = await answer
            if answer:
                return True
        return False

    @contextlib.asynccontextmanager
    async def _turn(self, target: Target) -> AsyncIterator[None]:
        """The target IP's one connection, the network's rate and a global slot.

        A probe that has closed its connections and only waits for the canary gives the turn
        back early (`release_turn()`): the IP's next target and other targets go on meanwhile.
        """
        lock = self._ip_locks.setdefault(_host_ip(target.ip), asyncio.Lock())
        key = network_key(
            _host_ip(target.ip), v4_prefix=self.options.v4_prefix, v6_prefix=self.options.v6_prefix
        )
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.options.network_rate, self.options.network_burst)
            self._buckets[key] = bucket
        if self._slots is None:
            # Up to max_concurrency, as far as the loop keeps up: a probe's timeouts must measure
            # the server, not a queue of our own callbacks (scanning/probes/loop_lag.py).
            self._slots = AdaptiveSlots(self.options.max_concurrency)
        slots = self._slots
        await lock.acquire()  # one connection at a time per target IP
        held = {"lock": True, "slot": False}

        def release() -> None:
            if held["slot"]:
                held["slot"] = False
                slots.release()
            if held["lock"]:
                held["lock"] = False
                lock.release()

        try:
            await bucket.acquire()
            await slots.acquire()
            held["slot"] = True
            with holding_turn(release):
                yield
        finally:
            release()

    async def _probe(
        self, target: Target, protocol: Protocol, token: str | None = None
    ) -> ProbeResult:
        async with self._turn(target):
            if await self._excluded(target.ip):
                return self._excluded_result(target, protocol)
            probe = self.probes[protocol]
            if protocol is Protocol.SMTP and token:
                return await probe(target, self.context, token=token)
            return await probe(target, self.context)

    def _excluded_result(self, target: Target, protocol: Protocol) -> ProbeResult:
        return _bare_result(
            target,
            protocol,
            Verdict.NOT_APPLICABLE,
            [Reason.EXCLUDED],
            "not probed: the address is on the exclusion list",
        )

    async def _auto(self, target: Target, token: str | None = None) -> list[ProbeResult]:
        """One result per protocol the peer speaks; one (not spoken) result when it speaks none."""
        plan = protocols_for_port(target.port)
        if plan is None:
            sniffed = await self._sniff(target)
            if isinstance(sniffed, ProbeResult):
                return [sniffed]
            plan = [Protocol.SMTP] if sniffed else [Protocol.SOCKS5, Protocol.SOCKS4, Protocol.HTTP]
        if len(plan) == 1:
            return [await self._probe(target, plan[0], token)]
        results: list[ProbeResult] = []
        for protocol in plan:  # all of them: one port may speak SOCKS5, SOCKS4 and HTTP at once
            result = await self._probe(target, protocol)
            results.append(result)
            if Reason.EXCLUDED in result.reasons:
                return [result]
        spoken = [r for r in results if spoke(r)]
        if spoken:
            return spoken
        # Nothing answered in any protocol: report the most likely one (HTTP off the SOCKS ports).
        return [results[-1]]

    async def _sniff(self, target: Target) -> bool | ProbeResult:
        """Listen for a server-first greeting: True when it reads as SMTP.

        Returns a ready result when the port cannot be reached at all (or is excluded).
        """
        guess = Protocol.HTTP
        async with self._turn(target):
            if await self._excluded(target.ip):
                return self._excluded_result(target, guess)
            limits = self.options.limits
            started = time.monotonic()
            try:
                reader, writer = await open_connection(
                    target.ip,
                    target.port,
                    timeout=limits.connect_timeout,
                    source=self.options.source,
                )
            except ConnectFailure as failure:
                return _bare_result(
                    target,
                    guess,
                    Verdict.CLOSED if failure.refused else Verdict.INCONCLUSIVE,
                    list(failure.reasons),
                    failure.note,
                    failure.status,
                    started,
                )
            try:
                wait = min(self.options.greeting_wait, limits.reply_timeout)
                first = await patient_wait_for(reader.read(GREETING_MAX_BYTES), wait)
            except (TimeoutError, OSError):
                first = b""
            finally:
                writer.close()
                with contextlib.suppress(OSError, TimeoutError):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)
        return bool(_SMTP_GREETING.match(first))
