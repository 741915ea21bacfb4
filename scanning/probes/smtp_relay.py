"""The SMTP open-relay probe (docs/probes.md): controlled variants, then delivery to our own canary.

Every read is bounded (per reply, per probe, per host), the server's word is never trusted alone
(a `.invalid` control tells a catch-all from a discriminating relay), and the only mail ever sent
is one small message addressed to the canary domain.

This module is the conversation: which connections to open, which pairs to try in which order,
when to reconnect. The bytes on the wire are scanning.probes.smtp_framing's; what the answers
mean is scanning.probes.smtp_judgement's.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import re
import ssl
import time

from scanning.probes.base import (
    ProbeContext,
    ProbeResult,
    Reason,
    Target,
    Transcript,
    Transport,
    TransportStatus,
    release_turn,
)
from scanning.probes.canary import new_token
from scanning.probes.smtp_framing import Conn, Reply, SmtpWire, Stop, tls_facts
from scanning.probes.smtp_judgement import (
    DEFAULT_RETRY_AFTER,
    SmtpObservations,
    Variant,
    awaits_confirmation,
    confirm_with_hits,
    finding,
    variant_outcome,
)

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "ROUTED_BY_SERVER_WORD",
    "awaits_confirmation",
    "confirm_with_hits",
    "probe_smtp",
]

MAX_CONNECTIONS = 8  # 16 variants at 8 refusals per connection, plus TLS and disconnect retries
MAX_DISCONNECT_RECONNECTS = 2
MAX_MESSAGE_BYTES = 1024

_HOSTNAME = re.compile(
    r"^(?=.{4,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\.?$"
)

# Recipient forms whose route depends on a name the server declared itself (its banner): the
# test message is never sent through them, since that name may belong to anyone.
ROUTED_BY_SERVER_WORD = frozenset({"rcpt-percent-host"})


class _Reconnect(Exception):
    """The server demanded STARTTLS, or an optional STARTTLS failed: start a fresh connection."""


def _ip_literal(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    return f"[IPv6:{addr.compressed}]" if addr.version == 6 else f"[{addr}]"


def _hostname_from(text: str) -> str | None:
    word = text.split(" ", 1)[0].strip() if text else ""
    if _HOSTNAME.match(word) and not word.lower().endswith(".invalid"):
        return word.rstrip(".")
    return None


class _SmtpConversation:
    """One probe's conversation with one server, over as many connections as it takes."""

    def __init__(
        self, target: Target, ctx: ProbeContext, *, implicit_tls: bool, token: str
    ) -> None:
        self.target = target
        self.ctx = ctx
        self.implicit_tls = implicit_tls
        self.token = token
        self.contact = ctx.contact or f"postmaster@{ctx.canary.domain}"
        self.transcript = Transcript()
        self.transcript.secrets.add(token)
        self.started = time.monotonic()
        self.wire = SmtpWire(ctx.limits, self.transcript, self.started)
        self.seen = SmtpObservations(
            token=token,
            confirm=ctx.confirm,
            transport=Transport.IMPLICIT_TLS if implicit_tls else Transport.PLAIN,
        )
        self.disconnect_retries = 0
        self.want_tls = False  # the server demanded STARTTLS
        self.skip_starttls = False  # an advertised STARTTLS failed; carry on in plain text
        self.conn_open: Conn | None = None

    # --- commands ----------------------------------------------------------------------------

    async def _command(self, conn: Conn, line: str) -> Reply:
        await self.wire.send(conn, line)
        reply = await self.wire.reply(conn)
        if reply.code == 421:
            self.seen.reason(Reason.SERVICE_UNAVAILABLE_421)
            self.seen.note_retry(reply.text)
            raise Stop(TransportStatus.SUCCESS, Reason.SERVICE_UNAVAILABLE_421, reply.text)
        return reply

    # --- connections -------------------------------------------------------------------------

    async def _open(self) -> Conn:
        if self.seen.connections >= MAX_CONNECTIONS:
            reason = Reason.SMTP_SESSION_INCOMPLETE
            raise Stop(TransportStatus.SUCCESS, reason, "too many reconnects")
        self.seen.connections += 1
        ip, port, source = self.target.ip, self.target.port, self.ctx.source
        if self.wire.remaining() > 0:
            via = f" from {source}" if source else ""
            tls = " (implicit TLS)" if self.implicit_tls else ""
            self.transcript.note(f"connect {ip} port {port}{via}{tls}")
        try:
            conn = await self.wire.open(ip, port, source=source, implicit_tls=self.implicit_tls)
        except Stop as stop:
            for reason in stop.extra:
                self.seen.reason(reason)
            raise
        if self.implicit_tls:
            self._record_tls(conn)
        return conn

    def _record_tls(self, conn: Conn) -> None:
        if self.seen.tls_facts is not None:
            return
        facts = tls_facts(conn)
        if facts is None:
            return
        self.seen.tls_facts = facts
        self.transcript.note(f"TLS {facts['version']} {facts['cipher'] or ''}")

    async def _close(self, conn: Conn, *, quit: bool) -> None:
        if quit:
            try:
                await self._command(conn, "QUIT")
            except Stop:
                pass
        await self.wire.close(conn, abort=not quit)

    async def _greeting(self, conn: Conn) -> Reply:
        try:
            return await self.wire.reply(conn)
        except Stop as stop:
            if stop.reason is not Reason.TIMEOUT or conn.received or self.wire.remaining() <= 0:
                raise
        # Silence: a tarpit, or a service that waits for the client (HTTP). Only now, after the
        # full greeting wait, do we speak, to learn which.
        self.transcript.note(f"no greeting within {self.ctx.limits.reply_timeout:g}s")
        await self.wire.send(conn, f"EHLO {self.ctx.scanner_name}")
        reply = await self.wire.reply(conn)
        self.transcript.note(f"late reply {reply.code} without a greeting")
        raise Stop(TransportStatus.IO_TIMEOUT, Reason.TIMEOUT, "no greeting")

    def _temporary(self, reply: Reply, what: str) -> Stop:
        self.seen.reason(Reason.TEMP_REJECT_4XX)
        self.seen.note_retry(reply.text)
        return Stop(TransportStatus.SUCCESS, Reason.TEMP_REJECT_4XX, f"{what} {reply.code}")

    async def _hello(self, conn: Conn) -> Reply:
        name = self.ctx.scanner_name
        reply = await self._command(conn, f"EHLO {name}")
        if reply.code == 250:
            return reply
        if 400 <= reply.code < 500:
            raise self._temporary(reply, "EHLO")
        self.seen.reason(Reason.HELO_FALLBACK)
        helo = await self._command(conn, f"HELO {name}")
        if 400 <= helo.code < 500:
            raise self._temporary(helo, "HELO")
        if helo.code != 250:
            raise Stop(TransportStatus.SUCCESS, Reason.GREETING_REJECTED, f"HELO {helo.code}")
        return Reply(helo.code, helo.lines[:1])

    async def _starttls(self, conn: Conn) -> None:
        reply = await self._command(conn, "STARTTLS")
        if reply.code != 220:
            if self.want_tls:
                self.seen.reason(Reason.STARTTLS_FAILED)
                raise Stop(TransportStatus.SUCCESS, Reason.TLS_REQUIRED, "STARTTLS refused")
            self.skip_starttls = True
            return
        try:
            await self.wire.start_tls(conn)
        except (TimeoutError, ssl.SSLError, ConnectionError, OSError) as exc:
            self.transcript.note(f"TLS handshake failed: {exc or type(exc).__name__}")
            self.seen.reason(Reason.STARTTLS_FAILED)
            if self.want_tls:
                raise Stop(
                    TransportStatus.PROTOCOL_ERROR, Reason.TLS_REQUIRED, "STARTTLS handshake failed"
                ) from None
            self.skip_starttls = True  # advertised, broken, not demanded: go on without it
            raise _Reconnect from None
        self.seen.transport = Transport.STARTTLS
        self.seen.reason(Reason.STARTTLS_USED)
        self._record_tls(conn)

    async def _connect(self) -> Conn:
        while True:
            conn = await self._open()
            try:
                await self._setup(conn)
                return conn
            except _Reconnect:
                await self._close(conn, quit=False)
            except Stop:
                await self._close(conn, quit=False)
                raise

    async def _setup(self, conn: Conn) -> None:
        seen = self.seen
        first = seen.banner is None
        try:
            greeting = await self._greeting(conn)
        except Stop as stop:
            if first and stop.reason is Reason.GARBAGE_REPLY:
                seen.not_smtp = True
                seen.reason(Reason.NO_SMTP_GREETING)
            raise
        if first:
            seen.banner = "\n".join(greeting.lines)[:2048]
            seen.hostname = _hostname_from(greeting.lines[0])
        if greeting.code != 220:
            if greeting.code == 421:
                reason = Reason.SERVICE_UNAVAILABLE_421
            elif 400 <= greeting.code < 500:
                reason = Reason.TEMP_REJECT_4XX
            else:
                reason = Reason.GREETING_REJECTED
            if 400 <= greeting.code < 500:
                seen.note_retry(greeting.text)
            seen.reason(reason)
            raise Stop(TransportStatus.SUCCESS, reason, f"greeting {greeting.code}")
        hello = await self._hello(conn)
        if seen.ehlo is None:
            seen.ehlo = list(hello.lines)
            seen.hostname = seen.hostname or _hostname_from(hello.lines[0])
        keywords = {line.split(" ", 1)[0].upper() for line in hello.lines[1:]}
        seen.details.setdefault("starttls_advertised", "STARTTLS" in keywords)
        if conn.tls:
            return
        if ("STARTTLS" in keywords or self.want_tls) and not self.skip_starttls:
            await self._starttls(conn)
            if conn.tls:
                after = await self._hello(conn)
                seen.details["ehlo_after_tls"] = list(after.lines)

    # --- the variants ------------------------------------------------------------------------

    def _control(self) -> Variant:
        t, c = self.token, self.ctx.canary.domain
        return Variant("control-invalid", "control", f"<probe-{t}@{c}>", f"<nx-{t}@{t}.invalid>")

    def _sender_variants(self) -> list[Variant]:
        t, c, lit = self.token, self.ctx.canary.domain, _ip_literal(self.target.ip)
        host = self.seen.hostname
        rcpt = f"<rcpt-{t}@{c}>"
        forms = [
            ("sender-external", f"<probe-{t}@{c}>"),
            ("sender-null", "<>"),
            ("sender-own-hostname", f"<probe-{t}@{host}>" if host else None),
            ("sender-ip-literal", f"<probe-{t}@{lit}>"),
            ("sender-localhost", f"<probe-{t}@localhost>"),
            ("sender-unqualified", f"<probe-{t}>"),
        ]
        return [Variant(name, "sender", mail, rcpt) for name, mail in forms if mail]

    def _recipient_variants(self, mail_from: str) -> list[Variant]:
        r, c, lit = f"rcpt-{self.token}", self.ctx.canary.domain, _ip_literal(self.target.ip)
        host = self.seen.hostname
        forms = [
            ("rcpt-quoted", f'<"{r}@{c}">'),
            ("rcpt-unbracketed", f"{r}@{c}"),
            ("rcpt-percent-ip", f"<{r}%{c}@{lit}>"),
            ("rcpt-percent-host", f"<{r}%{c}@{host}>" if host else None),
            ("rcpt-double-at", f"<{r}@{c}@{lit}>"),
            ("rcpt-quoted-local", f'<"{r}@{c}"@{lit}>'),
            ("rcpt-source-route", f"<@{lit}:{r}@{c}>"),
            ("rcpt-bang", f"<{c}!{r}>"),
            ("rcpt-bang-ip", f"<{c}!{r}@{lit}>"),
        ]
        return [Variant(name, "recipient", mail_from, rcpt) for name, rcpt in forms if rcpt]

    def _outcome(self, reply: Reply, conn: Conn) -> str:
        outcome = variant_outcome(self.seen, reply.code, reply.text)
        if outcome == "accepted":
            return outcome
        conn.errors += 1
        if outcome == "tls-required" and not conn.tls and not self.want_tls:
            self.want_tls = True
            self.skip_starttls = False  # demanded now: a failure this time ends the probe
            raise _Reconnect
        return outcome

    async def _try(self, conn: Conn, v: Variant) -> None:
        v.mail_code = v.mail_text = v.rcpt_code = v.rcpt_text = None
        # "error" until a reply says otherwise: a timeout or a hang-up mid-variant must never
        # leave the MAIL step's "accepted" standing for a RCPT that was never answered.
        v.outcome = "error"
        reply = await self._command(conn, f"MAIL FROM:{v.mail_from}")
        v.mail_code, v.mail_text = reply.code, reply.text
        v.outcome = self._outcome(reply, conn)
        if v.outcome != "accepted":
            return
        v.outcome = "error"
        reply = await self._command(conn, f"RCPT TO:{v.rcpt_to}")
        v.rcpt_code, v.rcpt_text = reply.code, reply.text
        v.outcome = self._outcome(reply, conn)

    def _message(self) -> list[str]:
        t, c = self.token, self.ctx.canary.domain
        scanner = self.ctx.scanner_name[:80]
        lines = [
            f"From: Secure Your Server relay test <probe-{t}@{c}>",
            f"To: <rcpt-{t}@{c}>",
            f"Subject: Open relay test {t}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            f"Message-ID: <{t}@{c}>",
            f"X-Relay-Test-Token: {t}",
            "",
            f"An automated open relay test from {scanner}.",
            f"It went through {self.target.ip} and is addressed only to {c}.",
            f"Token: {t}",
            f"Contact: {self.contact[:80]}",
        ]
        assert sum(len(line) + 2 for line in lines) <= MAX_MESSAGE_BYTES
        return lines

    async def _send_data(self, conn: Conn, v: Variant) -> None:
        seen = self.seen
        reply = await self._command(conn, "DATA")
        seen.data = {"variant": v.name, "code": reply.code, "text": reply.text}
        if reply.code != 354:
            seen.data["outcome"] = "refused"
            seen.reason(Reason.DATA_REFUSED)
            return
        for line in self._message():
            await self.wire.send(conn, "." + line if line.startswith(".") else line)
        reply = await self._command(conn, ".")
        seen.data.update(code=reply.code, text=reply.text)
        seen.data_accepted = 200 <= reply.code < 300
        seen.data["outcome"] = "accepted" if seen.data_accepted else "refused"
        seen.reason(Reason.DATA_ACCEPTED if seen.data_accepted else Reason.DATA_REFUSED)

    # --- the order of things -----------------------------------------------------------------

    async def exchange(self) -> None:
        try:
            await self._run()
        finally:
            if self.conn_open is not None:
                await self._close(self.conn_open, quit=False)

    async def _reopen(self, conn: Conn, *, quit: bool) -> Conn:
        self.conn_open = None
        await self._close(conn, quit=quit)
        self.conn_open = await self._connect()
        return self.conn_open

    async def _run(self) -> None:
        conn = self.conn_open = await self._connect()
        queue = [self._control(), *self._sender_variants()]
        self.seen.variants = queue
        recipients_added = False
        i = 0
        while i < len(queue):
            v = queue[i]
            if conn.errors >= self.ctx.limits.max_refused_rcpt_per_connection:
                self.transcript.note("refusal limit for this connection reached; reconnecting")
                conn = await self._reopen(conn, quit=True)
            try:
                await self._try(conn, v)
                if v.outcome == "accepted" and v.kind != "control":
                    if v.name in ROUTED_BY_SERVER_WORD:
                        # The host in this form is whatever name the server gave in its banner;
                        # a message sent this way could reach a third party. Never confirm it;
                        # go on, so a form routed to our canary or the server's IP can be.
                        self.transcript.note(f"{v.name} accepted; not used for the test message")
                    else:
                        if self.ctx.confirm and self.seen.data is None:
                            await self._send_data(conn, v)
                        if not self.ctx.full:
                            break
                await self._command(conn, "RSET")
            except _Reconnect:
                self.transcript.note("server demands STARTTLS; reconnecting to use it")
                conn = await self._reopen(conn, quit=False)
                continue
            except Stop as stop:
                # A server that drops us after a few refusals: carry on over a new connection.
                lost = stop.status is TransportStatus.CONNECTION_CLOSED
                retries_left = self.disconnect_retries < MAX_DISCONNECT_RECONNECTS
                if not (lost and conn.variants_done and retries_left):
                    raise
                self.disconnect_retries += 1
                self.transcript.note(f"{stop.note}; reconnecting")
                conn = await self._reopen(conn, quit=False)
                continue
            conn.variants_done += 1
            i += 1
            if i == len(queue) and not recipients_added:
                recipients_added = True
                sender = next(
                    (s for s in queue if s.kind == "sender" and s.mail_code and s.mail_code < 300),
                    None,
                )
                if sender is not None:
                    queue.extend(self._recipient_variants(sender.mail_from))
        self.conn_open = None
        await self._close(conn, quit=True)
        self.seen.completed = True


async def probe_smtp(
    target: Target,
    ctx: ProbeContext,
    *,
    token: str | None = None,
    implicit_tls: bool | None = None,
) -> ProbeResult:
    """Probe one SMTP server. `token` lets a greylisting retry repeat the same sender/recipient
    pair; `implicit_tls` defaults to port 465."""
    talk = _SmtpConversation(
        target,
        ctx,
        implicit_tls=target.port == 465 if implicit_tls is None else implicit_tls,
        token=token or new_token(),
    )
    seen, limits = talk.seen, ctx.limits
    try:
        # The reads are bounded one by one; this outer bound is the guarantee for the rest.
        await asyncio.wait_for(talk.exchange(), limits.exchange_timeout + 1.0)
    except Stop as stop:
        seen.stop = stop
        talk.transcript.note(f"stopped: {stop.note}")
    except TimeoutError:
        seen.stop = Stop(TransportStatus.IO_TIMEOUT, Reason.TIMEOUT, "probe time used up")
        talk.transcript.note("stopped: probe time used up")
    if seen.data_accepted:
        release_turn()  # the connection is closed; only the canary's word is awaited now
        talk.transcript.note(f"waiting up to {limits.confirm_wait:g}s for the canary sink")
        seen.hits = await ctx.hits.wait_for(seen.token, kind="smtp", timeout=limits.confirm_wait)
        talk.transcript.note(f"canary sink hits: {len(seen.hits)}")
    return finding(
        target,
        seen,
        talk.transcript,
        replies=talk.wire.replies,
        bytes_read=talk.wire.bytes_read,
        started=talk.started,
    )
