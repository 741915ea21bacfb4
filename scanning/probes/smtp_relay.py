"""The SMTP open-relay probe (docs/probes.md): controlled variants, then delivery to our own canary.

Every read is bounded (per reply, per probe, per host), the server's word is never trusted alone
(a `.invalid` control tells a catch-all from a discriminating relay), and the only mail ever sent
is one small message addressed to the canary domain.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import functools
import hashlib
import ipaddress
import re
import ssl
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from scanning.probes.base import (
    Limits,
    ProbeResult,
    Protocol,
    Reason,
    Transcript,
    Transport,
    TransportStatus,
    Verdict,
    release_turn,
)
from scanning.probes.canary import CanaryConfig, CanaryHit, HitStore, new_token
from scanning.probes.connect import ConnectFailure, open_connection
from scanning.probes.smtp_fingerprint import smtp_software

MAX_LINE_BYTES = 2048  # RFC 5321 caps reply lines at 512; real banners stay far below this
READ_CHUNK = 4096
DEFAULT_RETRY_AFTER = 300  # docs/probes.md: retry a temporarily refused pair after >= 5 minutes
MAX_CONNECTIONS = 8  # 16 variants at 8 refusals per connection, plus TLS and disconnect retries
MAX_DISCONNECT_RECONNECTS = 2
DETAIL_TEXT_CHARS = 512
MAX_MESSAGE_BYTES = 1024

_REPLY_LINE = re.compile(r"^(\d{3})(?:([ -])(.*))?$")
_REPLY_START = re.compile(rb"\d{0,3}|\d{3}[ \-\r\n]")
_TLS_TEXT = re.compile(r"STARTTLS|\bTLS\b|\bSSL\b|encrypt", re.I)
_AUTH_TEXT = re.compile(r"auth|login|credential", re.I)
_RETRY_SECONDS = re.compile(r"(\d{1,6})\s*(s\b|sec|second|min)", re.I)
_HOSTNAME = re.compile(
    r"^(?=.{4,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\.?$"
)


class _Stop(Exception):
    """Ends the conversation; the verdict is then judged from what was seen so far."""

    def __init__(self, status: TransportStatus, reason: Reason, note: str) -> None:
        super().__init__(note)
        self.status = status
        self.reason = reason
        self.note = note


def _lost(note: str) -> _Stop:
    return _Stop(TransportStatus.CONNECTION_CLOSED, Reason.CONNECTION_RESET, note)


class _Reconnect(Exception):
    """The server demanded STARTTLS, or an optional STARTTLS failed: start a fresh connection."""


# Recipient forms whose route depends on a name the server declared itself (its banner): the
# test message is never sent through them, since that name may belong to anyone.
ROUTED_BY_SERVER_WORD = frozenset({"rcpt-percent-host"})


@dataclass
class _Reply:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        return " ".join(line.strip() for line in self.lines).strip()[:DETAIL_TEXT_CHARS]


@dataclass
class _Variant:
    name: str
    kind: str  # control, sender, recipient
    mail_from: str
    rcpt_to: str
    mail_code: int | None = None
    mail_text: str | None = None
    rcpt_code: int | None = None
    rcpt_text: str | None = None
    outcome: str = "untested"  # accepted, refused, temp, auth, tls-required, error, untested


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    tls: bool = False
    received: int = 0
    errors: int = 0  # refused MAIL/RCPT on this connection (Postfix drops clients at 10)
    variants_done: int = 0
    buf: bytearray = field(default_factory=bytearray)


@functools.lru_cache(maxsize=1)  # building a context costs ~30 ms of CPU; one serves every probe
def _tls_context() -> ssl.SSLContext:
    # We observe, we don't trust: no verification, and old protocols allowed so that a server
    # that only speaks TLS 1.0 is still examined rather than skipped.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pass
    return ctx


def _cert_facts(der: bytes | None) -> dict[str, Any]:
    if not der:
        return {}
    facts: dict[str, Any] = {"cert_sha256": hashlib.sha256(der).hexdigest()}
    try:
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
        facts["cert_subject"] = cert.subject.rfc4514_string()
        facts["cert_issuer"] = cert.issuer.rfc4514_string()
        facts["cert_not_after"] = cert.not_valid_after_utc.isoformat()
        facts["cert_self_signed"] = cert.subject == cert.issuer
    except Exception:  # a malformed certificate is a fact too; the hash is kept
        facts["cert_parse_error"] = True
    return facts


def _ip_literal(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    return f"[IPv6:{addr.compressed}]" if addr.version == 6 else f"[{addr}]"


def _hostname_from(text: str) -> str | None:
    word = text.split(" ", 1)[0].strip() if text else ""
    if _HOSTNAME.match(word) and not word.lower().endswith(".invalid"):
        return word.rstrip(".")
    return None


def _redact(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub("[REDACTED]", value)
    if isinstance(value, list):
        return [_redact(v, pattern) for v in value]
    if isinstance(value, dict):
        return {k: _redact(v, pattern) for k, v in value.items()}
    return value


class _SmtpProbe:
    def __init__(
        self,
        ip: str,
        port: int,
        *,
        canary: CanaryConfig,
        limits: Limits,
        source: str | None,
        scanner_name: str,
        full: bool,
        confirm: bool,
        implicit_tls: bool,
        token: str,
        contact: str,
    ) -> None:
        self.ip = ip
        self.port = port
        self.canary = canary
        self.limits = limits
        self.source = source
        self.scanner_name = scanner_name
        self.full = full
        self.confirm = confirm
        self.implicit_tls = implicit_tls
        self.token = token
        self.contact = contact
        self.transcript = Transcript()
        self.transcript.secrets.add(token)
        self.started = time.monotonic()
        self.deadline = self.started + limits.exchange_timeout
        self.bytes_read = 0
        self.connections = 0
        self.disconnect_retries = 0
        self.reasons: list[Reason] = []
        self.details: dict[str, Any] = {}
        self.replies: list[str] = []  # every reply text, for the software guess
        self.banner: str | None = None
        self.hostname: str | None = None
        self.ehlo: list[str] | None = None
        self.want_tls = False  # the server demanded STARTTLS
        self.skip_starttls = False  # an advertised STARTTLS failed; carry on in plain text
        self.tls_facts: dict[str, Any] | None = None
        self.transport = Transport.IMPLICIT_TLS if implicit_tls else Transport.PLAIN
        self.variants: list[_Variant] = []
        self.stop: _Stop | None = None
        self.not_smtp = False
        self.completed = False
        self.temp_retry: int | None = None
        self.data: dict[str, Any] | None = None
        self.data_accepted = False
        self.hits: list[CanaryHit] = []
        self.conn_open: _Conn | None = None

    # --- bookkeeping -------------------------------------------------------------------------

    def reason(self, reason: Reason) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    # --- bytes on the wire -------------------------------------------------------------------

    async def _fill(self, conn: _Conn, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Stop(TransportStatus.IO_TIMEOUT, Reason.TIMEOUT, "reply timed out")
        budget = self.limits.host_bytes - self.bytes_read
        if budget <= 0:
            raise _Stop(
                TransportStatus.PROTOCOL_ERROR,
                Reason.OVERSIZED_REPLY,
                f"read limit of {self.limits.host_bytes} bytes for this host reached",
            )
        try:
            chunk = await asyncio.wait_for(conn.reader.read(min(READ_CHUNK, budget)), remaining)
        except TimeoutError:
            raise _Stop(TransportStatus.IO_TIMEOUT, Reason.TIMEOUT, "reply timed out") from None
        except (ConnectionError, OSError, ssl.SSLError) as exc:
            raise _lost(f"connection lost: {exc}") from None
        if not chunk:
            raise _lost("server closed the connection")
        self.bytes_read += len(chunk)
        conn.received += len(chunk)
        conn.buf += chunk

    def _garbage(self, data: bytes) -> _Stop:
        self.transcript.note(f"not an SMTP reply: {data[:120]!r}")
        return _Stop(TransportStatus.PROTOCOL_ERROR, Reason.GARBAGE_REPLY, "not an SMTP reply")

    async def _reply(self, conn: _Conn) -> _Reply:
        deadline = min(time.monotonic() + self.limits.reply_timeout, self.deadline)
        code: int | None = None
        lines: list[str] = []
        while True:
            while (nl := conn.buf.find(b"\n")) < 0:
                # Judge the first bytes at once: binary garbage or an HTTP reply must not make us
                # wait for a newline that may never come.
                if not _REPLY_START.fullmatch(bytes(conn.buf[:4])):
                    raise self._garbage(bytes(conn.buf))
                if len(conn.buf) > MAX_LINE_BYTES:
                    self.transcript.note(f"reply line longer than {MAX_LINE_BYTES} bytes")
                    status = TransportStatus.PROTOCOL_ERROR
                    raise _Stop(status, Reason.OVERSIZED_REPLY, "reply line too long")
                await self._fill(conn, deadline)
            raw = bytes(conn.buf[:nl]).rstrip(b"\r")
            del conn.buf[: nl + 1]
            m = _REPLY_LINE.match(raw.decode("utf-8", "replace"))
            if not m or (code is not None and int(m.group(1)) != code) or b"\x00" in raw:
                raise self._garbage(raw)
            self.transcript.received(m.group(0))
            code = int(m.group(1))
            lines.append(m.group(3) or "")
            if m.group(2) != "-":
                reply = _Reply(code, lines)
                self.replies.append(reply.text)
                return reply

    async def _send(self, conn: _Conn, line: str) -> None:
        self.transcript.sent(line)
        conn.writer.write(line.encode("utf-8", "replace") + b"\r\n")
        try:
            await asyncio.wait_for(conn.writer.drain(), max(self.remaining(), 0.01))
        except TimeoutError:
            raise _Stop(TransportStatus.IO_TIMEOUT, Reason.TIMEOUT, "send timed out") from None
        except (ConnectionError, OSError) as exc:
            raise _lost(f"connection lost: {exc}") from None

    async def _command(self, conn: _Conn, line: str) -> _Reply:
        await self._send(conn, line)
        reply = await self._reply(conn)
        if reply.code == 421:
            self.reason(Reason.SERVICE_UNAVAILABLE_421)
            self._note_retry(reply.text)
            raise _Stop(TransportStatus.SUCCESS, Reason.SERVICE_UNAVAILABLE_421, reply.text)
        return reply

    def _note_retry(self, text: str) -> None:
        m = _RETRY_SECONDS.search(text)
        scale = 60 if m and m.group(2).lower() == "min" else 1
        seconds = max(int(m.group(1)) * scale, 1) if m else DEFAULT_RETRY_AFTER
        self.temp_retry = max(self.temp_retry or 0, seconds)

    # --- connections -------------------------------------------------------------------------

    async def _open(self) -> _Conn:
        if self.connections >= MAX_CONNECTIONS:
            reason = Reason.SMTP_SESSION_INCOMPLETE
            raise _Stop(TransportStatus.SUCCESS, reason, "too many reconnects")
        self.connections += 1
        timeout = min(self.limits.connect_timeout, self.remaining())
        if timeout <= 0:
            raise _Stop(TransportStatus.IO_TIMEOUT, Reason.TIMEOUT, "probe time used up")
        via = f" from {self.source}" if self.source else ""
        tls = " (implicit TLS)" if self.implicit_tls else ""
        self.transcript.note(f"connect {self.ip} port {self.port}{via}{tls}")
        kwargs: dict[str, Any] = {}
        if self.implicit_tls:
            kwargs.update(ssl=_tls_context(), server_hostname="", ssl_handshake_timeout=timeout)
        try:
            reader, writer = await open_connection(
                self.ip,
                self.port,
                timeout=timeout,
                source=self.source,
                limit=MAX_LINE_BYTES,
                **kwargs,
            )
        except ConnectFailure as failure:
            self.transcript.note(failure.note)
            for reason in failure.reasons[1:]:
                self.reason(reason)
            raise _Stop(failure.status, failure.reasons[0], failure.note) from None
        conn = _Conn(reader, writer, tls=self.implicit_tls)
        if self.implicit_tls:
            self._record_tls(conn)
        return conn

    def _record_tls(self, conn: _Conn) -> None:
        obj = conn.writer.get_extra_info("ssl_object")
        if obj is None or self.tls_facts is not None:
            return
        cipher = obj.cipher()
        self.tls_facts = {
            "version": obj.version(),
            "cipher": cipher[0] if cipher else None,
            "bits": cipher[2] if cipher else None,
            **_cert_facts(obj.getpeercert(binary_form=True)),
        }
        self.transcript.note(f"TLS {obj.version()} {cipher[0] if cipher else ''}")

    async def _close(self, conn: _Conn, *, quit: bool) -> None:
        if quit:
            try:
                await self._command(conn, "QUIT")
            except _Stop:
                pass
        if quit:
            conn.writer.close()
        else:
            conn.writer.transport.abort()
        try:
            await asyncio.wait_for(conn.writer.wait_closed(), 0.5)
        except (TimeoutError, ConnectionError, OSError, ssl.SSLError):
            pass

    async def _greeting(self, conn: _Conn) -> _Reply:
        try:
            return await self._reply(conn)
        except _Stop as stop:
            if stop.reason is not Reason.TIMEOUT or conn.received or self.remaining() <= 0:
                raise
        # Silence: a tarpit, or a service that waits for the client (HTTP). Only now, after the
        # full greeting wait, do we speak, to learn which.
        self.transcript.note(f"no greeting within {self.limits.reply_timeout:g}s")
        await self._send(conn, f"EHLO {self.scanner_name}")
        reply = await self._reply(conn)
        self.transcript.note(f"late reply {reply.code} without a greeting")
        raise _Stop(TransportStatus.IO_TIMEOUT, Reason.TIMEOUT, "no greeting")

    async def _hello(self, conn: _Conn) -> _Reply:
        reply = await self._command(conn, f"EHLO {self.scanner_name}")
        if reply.code == 250:
            return reply
        if 400 <= reply.code < 500:
            self.reason(Reason.TEMP_REJECT_4XX)
            self._note_retry(reply.text)
            raise _Stop(TransportStatus.SUCCESS, Reason.TEMP_REJECT_4XX, f"EHLO {reply.code}")
        self.reason(Reason.HELO_FALLBACK)
        helo = await self._command(conn, f"HELO {self.scanner_name}")
        if 400 <= helo.code < 500:
            self.reason(Reason.TEMP_REJECT_4XX)
            self._note_retry(helo.text)
            raise _Stop(TransportStatus.SUCCESS, Reason.TEMP_REJECT_4XX, f"HELO {helo.code}")
        if helo.code != 250:
            raise _Stop(TransportStatus.SUCCESS, Reason.GREETING_REJECTED, f"HELO {helo.code}")
        return _Reply(helo.code, helo.lines[:1])

    async def _starttls(self, conn: _Conn) -> None:
        reply = await self._command(conn, "STARTTLS")
        if reply.code != 220:
            if self.want_tls:
                self.reason(Reason.STARTTLS_FAILED)
                raise _Stop(TransportStatus.SUCCESS, Reason.TLS_REQUIRED, "STARTTLS refused")
            self.skip_starttls = True
            return
        if conn.buf:  # bytes sent before the handshake are an injection attempt; never read them
            self.transcript.note(f"discarded {len(conn.buf)} bytes sent before the TLS handshake")
            conn.buf.clear()
        timeout = min(self.limits.reply_timeout, self.remaining())
        try:
            await asyncio.wait_for(
                conn.writer.start_tls(_tls_context(), ssl_handshake_timeout=max(timeout, 0.01)),
                max(timeout, 0.01),
            )
        except (TimeoutError, ssl.SSLError, ConnectionError, OSError) as exc:
            self.transcript.note(f"TLS handshake failed: {exc or type(exc).__name__}")
            self.reason(Reason.STARTTLS_FAILED)
            if self.want_tls:
                raise _Stop(
                    TransportStatus.PROTOCOL_ERROR, Reason.TLS_REQUIRED, "STARTTLS handshake failed"
                ) from None
            self.skip_starttls = True  # advertised, broken, not demanded: go on without it
            raise _Reconnect from None
        conn.tls = True
        self.transport = Transport.STARTTLS
        self.reason(Reason.STARTTLS_USED)
        self._record_tls(conn)

    async def _connect(self) -> _Conn:
        while True:
            conn = await self._open()
            try:
                await self._setup(conn)
                return conn
            except _Reconnect:
                await self._close(conn, quit=False)
            except _Stop:
                await self._close(conn, quit=False)
                raise

    async def _setup(self, conn: _Conn) -> None:
        first = self.banner is None
        try:
            greeting = await self._greeting(conn)
        except _Stop as stop:
            if first and stop.reason is Reason.GARBAGE_REPLY:
                self.not_smtp = True
                self.reason(Reason.NO_SMTP_GREETING)
            raise
        if first:
            self.banner = "\n".join(greeting.lines)[:2048]
            self.hostname = _hostname_from(greeting.lines[0])
        if greeting.code != 220:
            if greeting.code == 421:
                reason = Reason.SERVICE_UNAVAILABLE_421
            elif 400 <= greeting.code < 500:
                reason = Reason.TEMP_REJECT_4XX
            else:
                reason = Reason.GREETING_REJECTED
            if 400 <= greeting.code < 500:
                self._note_retry(greeting.text)
            self.reason(reason)
            raise _Stop(TransportStatus.SUCCESS, reason, f"greeting {greeting.code}")
        hello = await self._hello(conn)
        if self.ehlo is None:
            self.ehlo = list(hello.lines)
            self.hostname = self.hostname or _hostname_from(hello.lines[0])
        keywords = {line.split(" ", 1)[0].upper() for line in hello.lines[1:]}
        self.details.setdefault("starttls_advertised", "STARTTLS" in keywords)
        if conn.tls:
            return
        if ("STARTTLS" in keywords or self.want_tls) and not self.skip_starttls:
            await self._starttls(conn)
            if conn.tls:
                after = await self._hello(conn)
                self.details["ehlo_after_tls"] = list(after.lines)

    # --- the tests ---------------------------------------------------------------------------

    def _sender_variants(self) -> list[_Variant]:
        t, c, lit = self.token, self.canary.domain, _ip_literal(self.ip)
        rcpt = f"<rcpt-{t}@{c}>"
        forms = [
            ("sender-external", f"<probe-{t}@{c}>"),
            ("sender-null", "<>"),
            ("sender-own-hostname", f"<probe-{t}@{self.hostname}>" if self.hostname else None),
            ("sender-ip-literal", f"<probe-{t}@{lit}>"),
            ("sender-localhost", f"<probe-{t}@localhost>"),
            ("sender-unqualified", f"<probe-{t}>"),
        ]
        return [_Variant(name, "sender", mail, rcpt) for name, mail in forms if mail]

    def _recipient_variants(self, mail_from: str) -> list[_Variant]:
        r, c, lit = f"rcpt-{self.token}", self.canary.domain, _ip_literal(self.ip)
        host = self.hostname
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
        return [_Variant(name, "recipient", mail_from, rcpt) for name, rcpt in forms if rcpt]

    def _classify(self, reply: _Reply, conn: _Conn) -> str:
        if 200 <= reply.code < 300:
            return "accepted"
        conn.errors += 1
        if reply.code == 530 and _TLS_TEXT.search(reply.text) and not _AUTH_TEXT.search(reply.text):
            self.reason(Reason.TLS_REQUIRED)
            if not conn.tls and not self.want_tls:
                self.want_tls = True
                self.skip_starttls = False  # demanded now: a failure this time ends the probe
                raise _Reconnect
            return "tls-required"
        auth_code = reply.code in (530, 535) or "5.7.57" in reply.text
        if auth_code and _AUTH_TEXT.search(reply.text):
            self.reason(Reason.AUTH_REQUIRED_530)
            return "auth"
        if 400 <= reply.code < 500:
            self.reason(Reason.TEMP_REJECT_4XX)
            self._note_retry(reply.text)
            return "temp"
        if 500 <= reply.code < 600:
            return "refused"
        return "error"

    async def _try(self, conn: _Conn, v: _Variant) -> None:
        v.mail_code = v.mail_text = v.rcpt_code = v.rcpt_text = None
        # "error" until a reply says otherwise: a timeout or a hang-up mid-variant must never
        # leave the MAIL step's "accepted" standing for a RCPT that was never answered.
        v.outcome = "error"
        reply = await self._command(conn, f"MAIL FROM:{v.mail_from}")
        v.mail_code, v.mail_text = reply.code, reply.text
        v.outcome = self._classify(reply, conn)
        if v.outcome != "accepted":
            return
        v.outcome = "error"
        reply = await self._command(conn, f"RCPT TO:{v.rcpt_to}")
        v.rcpt_code, v.rcpt_text = reply.code, reply.text
        v.outcome = self._classify(reply, conn)

    def _message(self) -> list[str]:
        t, c = self.token, self.canary.domain
        scanner = self.scanner_name[:80]
        lines = [
            f"From: Secure Your Server relay test <probe-{t}@{c}>",
            f"To: <rcpt-{t}@{c}>",
            f"Subject: Open relay test {t}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            f"Message-ID: <{t}@{c}>",
            f"X-Relay-Test-Token: {t}",
            "",
            f"An automated open relay test from {scanner}.",
            f"It went through {self.ip} and is addressed only to {c}.",
            f"Token: {t}",
            f"Contact: {self.contact[:80]}",
        ]
        assert sum(len(line) + 2 for line in lines) <= MAX_MESSAGE_BYTES
        return lines

    async def _send_data(self, conn: _Conn, v: _Variant) -> None:
        reply = await self._command(conn, "DATA")
        self.data = {"variant": v.name, "code": reply.code, "text": reply.text}
        if reply.code != 354:
            self.data["outcome"] = "refused"
            self.reason(Reason.DATA_REFUSED)
            return
        for line in self._message():
            await self._send(conn, "." + line if line.startswith(".") else line)
        reply = await self._command(conn, ".")
        self.data.update(code=reply.code, text=reply.text)
        self.data_accepted = 200 <= reply.code < 300
        self.data["outcome"] = "accepted" if self.data_accepted else "refused"
        self.reason(Reason.DATA_ACCEPTED if self.data_accepted else Reason.DATA_REFUSED)

    async def exchange(self) -> None:
        try:
            await self._run()
        finally:
            if self.conn_open is not None:
                await self._close(self.conn_open, quit=False)

    async def _run(self) -> None:
        conn = self.conn_open = await self._connect()
        control = _Variant(
            "control-invalid",
            "control",
            f"<probe-{self.token}@{self.canary.domain}>",
            f"<nx-{self.token}@{self.token}.invalid>",
        )
        queue = [control, *self._sender_variants()]
        self.variants = queue
        recipients_added = False
        i = 0
        while i < len(queue):
            v = queue[i]
            if conn.errors >= self.limits.max_refused_rcpt_per_connection:
                self.transcript.note("refusal limit for this connection reached; reconnecting")
                self.conn_open = None
                await self._close(conn, quit=True)
                conn = self.conn_open = await self._connect()
            try:
                await self._try(conn, v)
                if v.outcome == "accepted" and v.kind != "control":
                    if v.name in ROUTED_BY_SERVER_WORD:
                        # The host in this form is whatever name the server gave in its banner;
                        # a message sent this way could reach a third party. Never confirm it;
                        # go on, so a form routed to our canary or the server's IP can be.
                        self.transcript.note(f"{v.name} accepted; not used for the test message")
                    else:
                        if self.confirm and self.data is None:
                            await self._send_data(conn, v)
                        if not self.full:
                            break
                await self._command(conn, "RSET")
            except _Reconnect:
                self.transcript.note("server demands STARTTLS; reconnecting to use it")
                self.conn_open = None
                await self._close(conn, quit=False)
                conn = self.conn_open = await self._connect()
                continue
            except _Stop as stop:
                # A server that drops us after a few refusals: carry on over a new connection.
                lost = stop.status is TransportStatus.CONNECTION_CLOSED
                retries_left = self.disconnect_retries < MAX_DISCONNECT_RECONNECTS
                if not (lost and conn.variants_done and retries_left):
                    raise
                self.disconnect_retries += 1
                self.transcript.note(f"{stop.note}; reconnecting")
                self.conn_open = None
                await self._close(conn, quit=False)
                conn = self.conn_open = await self._connect()
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
        self.completed = True

    # --- the judgement -----------------------------------------------------------------------

    def judge(self) -> tuple[Verdict, TransportStatus]:
        status = self.stop.status if self.stop else TransportStatus.SUCCESS
        if self.stop:
            self.reason(self.stop.reason)
        if self.not_smtp:
            return Verdict.NOT_APPLICABLE, status
        control = next((v for v in self.variants if v.kind == "control"), None)
        control_accepted: bool | None = None
        if control is not None and control.outcome == "accepted":
            control_accepted = True
            self.reason(Reason.CONTROL_INVALID_ACCEPTED)
        elif control is not None and control.rcpt_code and 500 <= control.rcpt_code < 600:
            control_accepted = False
            self.reason(Reason.CONTROL_INVALID_REFUSED)
        self.details["control_accepted"] = control_accepted
        tested = [v for v in self.variants if v.kind != "control" and v.outcome != "untested"]
        accepted = [v for v in tested if v.outcome == "accepted"]
        if accepted:
            self.reason(Reason.RCPT_2XX_EXTERNAL)
            if self.hits:
                self.reason(Reason.DELIVERED_TO_CANARY)
                return Verdict.CONFIRMED_OPEN, status
            if self.data_accepted:
                self.reason(Reason.ACCEPTED_NOT_DELIVERED)
            if not self.confirm:
                self.reason(Reason.CONFIRMATION_SKIPPED)
            if control_accepted is False:
                return Verdict.LIKELY_OPEN, status
            return Verdict.LIKELY_OPEN_WEAK, status
        outcomes = {v.outcome for v in tested}
        if self.stop or not self.completed or outcomes - {"refused", "auth"} or not tested:
            if not self.completed:
                self.reason(Reason.SMTP_SESSION_INCOMPLETE)
            return Verdict.INCONCLUSIVE, status
        if "auth" in outcomes:
            return Verdict.AUTH_REQUIRED, status
        self.reason(Reason.RCPT_5XX_ALL)
        return Verdict.CLOSED, status


async def probe_smtp(
    ip: str,
    port: int,
    *,
    target: str,
    canary: CanaryConfig,
    hits: HitStore,
    limits: Limits = Limits(),  # noqa: B008 - frozen, shared safely
    source: str | None = None,
    confirm: bool = False,
    scanner_name: str = "scanner.secure-your-server.invalid",
    full: bool = False,
    implicit_tls: bool | None = None,
    token: str | None = None,
    contact: str | None = None,
) -> ProbeResult:
    """Probe one SMTP server. `token` lets a greylisting retry repeat the same sender/recipient
    pair; `implicit_tls` defaults to port 465."""
    probe = _SmtpProbe(
        ip,
        port,
        canary=canary,
        limits=limits,
        source=source,
        scanner_name=scanner_name,
        full=full,
        confirm=confirm,
        implicit_tls=port == 465 if implicit_tls is None else implicit_tls,
        token=token or new_token(),
        contact=contact or f"postmaster@{canary.domain}",
    )
    try:
        # The reads are bounded one by one; this outer bound is the guarantee for the rest.
        await asyncio.wait_for(probe.exchange(), limits.exchange_timeout + 1.0)
    except _Stop as stop:
        probe.stop = stop
        probe.transcript.note(f"stopped: {stop.note}")
    except TimeoutError:
        probe.stop = _Stop(TransportStatus.IO_TIMEOUT, Reason.TIMEOUT, "probe time used up")
        probe.transcript.note("stopped: probe time used up")
    if probe.data_accepted:
        release_turn()  # the connection is closed; only the canary's word is awaited now
        probe.transcript.note(f"waiting up to {limits.confirm_wait:g}s for the canary sink")
        probe.hits = await hits.wait_for(probe.token, kind="smtp", timeout=limits.confirm_wait)
        probe.transcript.note(f"canary sink hits: {len(probe.hits)}")
    verdict, status = probe.judge()
    retry_after = None
    if verdict is Verdict.INCONCLUSIVE and (
        Reason.TEMP_REJECT_4XX in probe.reasons or Reason.SERVICE_UNAVAILABLE_421 in probe.reasons
    ):
        retry_after = probe.temp_retry or DEFAULT_RETRY_AFTER
    details: dict[str, Any] = {
        "banner": probe.banner,
        "hostname": probe.hostname,
        "ehlo": probe.ehlo or [],
        "capabilities": sorted({line.split(" ", 1)[0].upper() for line in (probe.ehlo or [])[1:]}),
        "auth_mechanisms": _auth_mechanisms(
            probe.details.get("ehlo_after_tls") or probe.ehlo or []
        ),
        "tls": probe.tls_facts,
        **probe.details,
        "variants": [asdict(v) for v in probe.variants if v.outcome != "untested"],
        "data": probe.data,
        "delivered": bool(probe.hits),
        "canary_hits": [{"peer_ip": h.peer_ip, "detail": h.detail} for h in probe.hits],
        "connections": probe.connections,
        "bytes_read": probe.bytes_read,
        "stopped": probe.stop.note if probe.stop else None,
    }
    pattern = re.compile(re.escape(probe.token), re.I)  # a server may echo it upper-cased
    return ProbeResult(
        target=target,
        ip=ip,
        port=port,
        protocol=Protocol.SMTP,
        verdict=verdict,
        reasons=list(probe.reasons),
        transport=probe.transport,
        transport_status=status,
        software=smtp_software(probe.banner or "", probe.ehlo or [], probe.replies),
        duration_ms=int((time.monotonic() - probe.started) * 1000),
        retry_after=retry_after,
        token=probe.token,
        details=_redact(details, pattern),
        transcript=probe.transcript.redacted(),
        transcript_truncated=probe.transcript.truncated,
    )


def _auth_mechanisms(ehlo: list[str]) -> list[str]:
    mechanisms: list[str] = []
    for line in ehlo[1:]:
        m = re.match(r"AUTH[ =](.*)", line.strip(), re.I)
        if m:
            mechanisms += [w.upper() for w in m.group(1).split() if w.upper() not in mechanisms]
    return mechanisms


def awaits_confirmation(result: ProbeResult) -> bool:
    """An SMTP result whose test message was accepted but not (yet) seen by our sink: a later
    delivery would make it `confirmed-open`."""
    return (
        result.protocol is Protocol.SMTP
        and Reason.ACCEPTED_NOT_DELIVERED in result.reasons
        and bool(result.token)
    )


def confirm_with_hits(result: ProbeResult, hits: list[CanaryHit]) -> ProbeResult:
    """The same result, now that our sink received the test message it carried."""
    reasons: list[Reason] = [r for r in result.reasons if r is not Reason.ACCEPTED_NOT_DELIVERED]
    if Reason.DELIVERED_TO_CANARY not in reasons:
        reasons.append(Reason.DELIVERED_TO_CANARY)
    pattern = re.compile(re.escape(result.token or ""), re.I)
    seen = [{"peer_ip": h.peer_ip, "detail": h.detail} for h in hits]
    details = {**result.details, "delivered": True, "canary_hits": _redact(seen, pattern)}
    note = {
        "t_ms": result.duration_ms,
        "direction": "!",
        "text": f"canary sink received the test message ({len(hits)} hit(s)), after the session",
    }
    return dataclasses.replace(
        result,
        verdict=Verdict.CONFIRMED_OPEN,
        reasons=reasons,
        details=details,
        transcript=[*result.transcript, note],
    )
