"""SMTP on the wire: bounded reading of replies, writing of command lines, and TLS.

Everything here is about bytes and the bounds of docs/probes.md ("Manners and bounds"): every
read has a deadline, every line a length cap, every host a byte budget, and anything that is not
an SMTP reply ends the conversation at once. Which commands to send, and what the replies mean
for the verdict, live in scanning.probes.smtp_relay and scanning.probes.smtp_judgement.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import ssl
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from scanning.probes.base import Limits, Reason, Transcript, TransportStatus
from scanning.probes.connect import ConnectFailure, open_connection
from scanning.probes.loop_lag import patient_wait_for

MAX_LINE_BYTES = 2048  # RFC 5321 caps reply lines at 512; real banners stay far below this
READ_CHUNK = 4096
DETAIL_TEXT_CHARS = 512

_REPLY_LINE = re.compile(r"^(\d{3})(?:([ -])(.*))?$")
_REPLY_START = re.compile(rb"\d{0,3}|\d{3}[ \-\r\n]")


class Stop(Exception):
    """Ends the conversation; the verdict is then judged from what was seen so far."""

    def __init__(
        self,
        status: TransportStatus,
        reason: Reason,
        note: str,
        extra: tuple[Reason, ...] = (),
    ) -> None:
        super().__init__(note)
        self.status = status
        self.reason = reason
        self.note = note
        self.extra = extra  # further reasons the failure earned (a connect timeout's `timeout`)


def lost(note: str) -> Stop:
    return Stop(TransportStatus.CONNECTION_CLOSED, Reason.CONNECTION_RESET, note)


def timed_out(note: str) -> Stop:
    return Stop(TransportStatus.IO_TIMEOUT, Reason.TIMEOUT, note)


@dataclass
class Reply:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        return " ".join(line.strip() for line in self.lines).strip()[:DETAIL_TEXT_CHARS]


@dataclass
class Conn:
    """One connection of a probe, with what it has read but not yet parsed."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    tls: bool = False
    received: int = 0
    errors: int = 0  # refused MAIL/RCPT on this connection (Postfix drops clients at 10)
    variants_done: int = 0
    buf: bytearray = field(default_factory=bytearray)


@functools.lru_cache(maxsize=1)  # building a context costs ~30 ms of CPU; one serves every probe
def tls_context() -> ssl.SSLContext:
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


def cert_facts(der: bytes | None) -> dict[str, Any]:
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


def tls_facts(conn: Conn) -> dict[str, Any] | None:
    """Version, cipher and certificate of a connection's TLS layer; None for plain text."""
    obj = conn.writer.get_extra_info("ssl_object")
    if obj is None:
        return None
    cipher = obj.cipher()
    return {
        "version": obj.version(),
        "cipher": cipher[0] if cipher else None,
        "bits": cipher[2] if cipher else None,
        **cert_facts(obj.getpeercert(binary_form=True)),
    }


class SmtpWire:
    """The bytes of one probe over all its connections: one deadline, one byte budget for the
    host, and every line in the transcript."""

    def __init__(self, limits: Limits, transcript: Transcript, started: float) -> None:
        self.limits = limits
        self.transcript = transcript
        self.deadline = started + limits.exchange_timeout
        self.bytes_read = 0
        self.replies: list[str] = []  # every reply text, for the software guess

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    async def open(self, ip: str, port: int, *, source: str | None, implicit_tls: bool) -> Conn:
        """Connect (and, on an implicit-TLS port, handshake) within the probe's time."""
        timeout = min(self.limits.connect_timeout, self.remaining())
        if timeout <= 0:
            raise timed_out("probe time used up")
        kwargs: dict[str, Any] = {}
        if implicit_tls:
            kwargs.update(ssl=tls_context(), server_hostname="", ssl_handshake_timeout=timeout)
        try:
            reader, writer = await open_connection(
                ip, port, timeout=timeout, source=source, limit=MAX_LINE_BYTES, **kwargs
            )
        except ConnectFailure as failure:
            self.transcript.note(failure.note)
            raise Stop(
                failure.status, failure.reasons[0], failure.note, failure.reasons[1:]
            ) from None
        return Conn(reader, writer, tls=implicit_tls)

    async def _fill(self, conn: Conn, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise timed_out("reply timed out")
        budget = self.limits.host_bytes - self.bytes_read
        if budget <= 0:
            raise Stop(
                TransportStatus.PROTOCOL_ERROR,
                Reason.OVERSIZED_REPLY,
                f"read limit of {self.limits.host_bytes} bytes for this host reached",
            )
        try:
            chunk = await patient_wait_for(conn.reader.read(min(READ_CHUNK, budget)), remaining)
        except TimeoutError:
            raise timed_out("reply timed out") from None
        except (ConnectionError, OSError, ssl.SSLError) as exc:
            raise lost(f"connection lost: {exc}") from None
        if not chunk:
            raise lost("server closed the connection")
        self.bytes_read += len(chunk)
        conn.received += len(chunk)
        conn.buf += chunk

    def _garbage(self, data: bytes) -> Stop:
        self.transcript.note(f"not an SMTP reply: {data[:120]!r}")
        return Stop(TransportStatus.PROTOCOL_ERROR, Reason.GARBAGE_REPLY, "not an SMTP reply")

    async def reply(self, conn: Conn) -> Reply:
        """The next whole reply (all its lines), within the reply timeout."""
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
                    raise Stop(status, Reason.OVERSIZED_REPLY, "reply line too long")
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
                reply = Reply(code, lines)
                self.replies.append(reply.text)
                return reply

    async def send(self, conn: Conn, line: str) -> None:
        self.transcript.sent(line)
        conn.writer.write(line.encode("utf-8", "replace") + b"\r\n")
        try:
            await patient_wait_for(conn.writer.drain(), max(self.remaining(), 0.01))
        except TimeoutError:
            raise timed_out("send timed out") from None
        except (ConnectionError, OSError) as exc:
            raise lost(f"connection lost: {exc}") from None

    async def start_tls(self, conn: Conn) -> None:
        """The TLS handshake after a 220 to STARTTLS; raises what the handshake raised."""
        if conn.buf:  # bytes sent before the handshake are an injection attempt; never read them
            self.transcript.note(f"discarded {len(conn.buf)} bytes sent before the TLS handshake")
            conn.buf.clear()
        timeout = max(min(self.limits.reply_timeout, self.remaining()), 0.01)
        await asyncio.wait_for(
            conn.writer.start_tls(tls_context(), ssl_handshake_timeout=timeout), timeout
        )
        conn.tls = True

    @staticmethod
    async def close(conn: Conn, *, abort: bool) -> None:
        if abort:
            conn.writer.transport.abort()
        else:
            conn.writer.close()
        try:
            await asyncio.wait_for(conn.writer.wait_closed(), 0.5)
        except (TimeoutError, ConnectionError, OSError, ssl.SSLError):
            pass
