"""One proxy probe's bookkeeping: its tests, its tokens, the canary's hits and the result.

The protocol modules (scanning.probes.proxy_http, scanning.probes.proxy_socks) run the tests;
this class gives each test its token, asks the canary what arrived, and has the judgement
(scanning.probes.proxy_judgement) turn it all into a ProbeResult.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from scanning.probes.base import (
    ProbeContext,
    ProbeResult,
    Protocol,
    Reason,
    Software,
    Target,
    TransportStatus,
    Verdict,
    release_turn,
)
from scanning.probes.canary import canary_answer, new_token
from scanning.probes.proxy_fingerprint import proxy_software
from scanning.probes.proxy_judgement import ProxyTest, anonymity, dedupe, is_2xx, judge
from scanning.probes.proxy_wire import Fail, HttpReply, Session, http_request, read_reply


def record_reply(test: ProxyTest, reply: HttpReply) -> None:
    test.status = reply.status
    test.headers = dict(reply.headers)
    if reply.status == 407 and reply.header("proxy-authenticate"):
        test.auth_required = True
    if reply.body or not test.tunnel:
        test.body_sha256 = hashlib.sha256(reply.body).hexdigest()
        test.body_bytes = len(reply.body)


def failed(test: ProxyTest, exc: Fail, sess: Session) -> None:
    test.error = exc.reason
    test.error_status = exc.status
    if test.handshake == "not-run":
        test.handshake = "failed"
    sess.transcript.note(f"{test.name}: {exc.note}")


class ProxyProbe:
    def __init__(self, target: Target, protocol: Protocol, ctx: ProbeContext) -> None:
        self.target, self.protocol = target, protocol
        self.canary, self.hits, self.limits = ctx.canary, ctx.hits, ctx.limits
        self.user_agent = ctx.user_agent
        self.sess = Session(target.ip, target.port, ctx.limits, ctx.source)
        self.token = new_token()
        self.sess.transcript.secrets.add(self.token)
        self.tests: list[ProxyTest] = []
        self.fatal: Fail | None = None
        self.exchange_timed_out = False
        self.started = time.monotonic()

    def sub_token(self, suffix: str) -> str:
        token = f"{self.token}-{suffix}"
        self.sess.transcript.secrets.add(canary_answer(self.canary.secret, token))
        return token

    def answer(self, token: str) -> str:
        return canary_answer(self.canary.secret, token)

    async def tunnel_get(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, test: ProxyTest, host: str
    ) -> None:
        """GET /c/TOKEN through an established tunnel, straight to the canary."""
        token = test.token or ""
        data, shown = http_request("GET", f"/c/{token}", host, self.user_agent)
        await self.sess.send(writer, data, shown)
        try:
            reply = await read_reply(self.sess, reader, with_body=True)
        except Fail as exc:
            test.reply_waited_out = exc.reason == Reason.TIMEOUT
            raise
        test.status = reply.status
        test.headers = dict(reply.headers)
        test.body_sha256 = hashlib.sha256(reply.body).hexdigest()
        test.body_bytes = len(reply.body)
        test.secret_returned = self.answer(token).encode() in reply.body

    async def collect_hits(self) -> None:
        asked = [t for t in self.tests if t.token]
        for test in asked:
            test.hits = await self.hits.hits(test.token or "")
        # A canary in another process may record a moment after it answered: one short grace.
        # A tunnel's status before a grant is a SOCKS byte (0xFF = 255 is no "2xx"); a tunnel
        # that carried our request was granted.
        # A test whose reply timeout ran out already gave the canary that long: no grace for it.
        waiting = [
            t
            for t in asked
            if not t.hits
            and not t.reply_waited_out
            and (t.granted or (not t.tunnel and is_2xx(t.status)))
        ]
        if waiting:
            grace = min(1.0, self.limits.reply_timeout / 2)
            first = waiting[0]
            first.hits = await self.hits.wait_for(first.token or "", kind=None, timeout=grace)
            for test in waiting[1:]:
                test.hits = await self.hits.hits(test.token or "")
        for test in self.tests:
            if test.hits and any(h.kind == "http" for h in test.hits) and not test.tunnel:
                test.anonymity = anonymity(test.hits[0].headers, self.sess.local_ips)
            elif test.hits:
                test.anonymity = "elite"  # a tunnel carries only our own request headers

    def result(
        self, verdict: Verdict, reasons: list[Reason], status: TransportStatus
    ) -> ProbeResult:
        software: Software | None = None
        for headers, body, banner in self.sess.hints:
            software = proxy_software(headers, body, banner)
            if software:
                break
        reachable = sorted(
            {t.destination for t in self.tests if t.hits or t.banner_is_sink or t.secret_returned}
        )
        exit_ips = sorted({h.peer_ip for t in self.tests for h in t.hits})
        levels = [t.anonymity for t in self.tests if t.anonymity]
        order = ["transparent", "anonymous", "elite"]
        details: dict[str, Any] = {
            "tests": [t.as_dict() for t in self.tests],
            "reachable_destinations": reachable,
            "exit_ips": exit_ips,
            "anonymity": min(levels, key=order.index) if levels else None,
            "probe_source_ips": sorted(self.sess.local_ips),
            "bytes_received": self.sess.received,
        }
        if self.exchange_timed_out:
            details["exchange_timed_out"] = True
        if self.fatal:
            details["error"] = self.fatal.note
        transcript = self.sess.transcript
        return ProbeResult(
            target=self.target.given,
            ip=self.target.ip,
            port=self.target.port,
            protocol=self.protocol,
            verdict=verdict,
            reasons=dedupe(reasons),
            transport_status=status,
            software=software,
            duration_ms=int((time.monotonic() - self.started) * 1000),
            token=self.token,
            details=details,
            transcript=transcript.redacted(),
            transcript_truncated=transcript.truncated,
        )

    async def run(self, body: Callable[[], Awaitable[None]]) -> ProbeResult:
        try:
            async with asyncio.timeout(self.limits.exchange_timeout):
                await body()
        except TimeoutError:
            self.exchange_timed_out = True
            self.sess.transcript.note("exchange time limit reached")
        except Fail as exc:
            self.fatal = exc
        release_turn()  # every connection is closed; what is left is reading the canary's log
        try:
            async with asyncio.timeout(max(self.limits.reply_timeout, 0.1)):
                await self.collect_hits()
        except TimeoutError:
            pass
        verdict, reasons, status = judge(
            self.protocol, self.tests, fatal=self.fatal, exchange_timed_out=self.exchange_timed_out
        )
        return self.result(verdict, reasons, status)
