"""The proxy probes' wire: one session's connections, bounded reads and writes, and HTTP replies.

Every read counts against the host's byte budget and has a deadline; an HTTP head or body beyond
its cap ends the test (docs/probes.md, "Manners and bounds"). What the replies mean is
scanning.probes.proxy_judgement's.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass

from scanning.probes.base import Limits, Reason, Transcript, TransportStatus, host_port
from scanning.probes.connect import ConnectFailure, open_connection
from scanning.probes.loop_lag import patient_wait_for, punctual_time

HEAD_MAX_BYTES = 16 * 1024


class Fail(Exception):
    def __init__(self, reason: Reason, status: TransportStatus, note: str) -> None:
        super().__init__(note)
        self.reason = reason
        self.status = status
        self.note = note


@dataclass
class HttpReply:
    status: int
    status_line: str
    headers: dict[str, str]
    body: bytes = b""
    leftover: bytes = b""
    truncated: bool = False

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name:
                return value
        return None


class Session:
    """One probe's connections to one target: shared byte budget, transcript and bounds."""

    def __init__(self, ip: str, port: int, limits: Limits, source: str | None) -> None:
        self.ip = ip
        self.port = port
        self.limits = limits
        self.source = source
        self.transcript = Transcript()
        self.received = 0
        self.local_ips: set[str] = set()
        self.hints: list[tuple[dict[str, str], str, bytes | None]] = []

    def deadline(self) -> float:
        """When the reply must be in, on the punctual clock (our loop's lateness excluded)."""
        return punctual_time() + self.limits.reply_timeout

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            reader, writer = await open_connection(
                self.ip, self.port, timeout=self.limits.connect_timeout, source=self.source
            )
        except ConnectFailure as failure:
            self.transcript.note(f"{host_port(self.ip, self.port)}: {failure.note}")
            # The judgement adds connect_failed for a failed connect; the last reason says how.
            note = "refused" if failure.refused else "connect"
            raise Fail(failure.reasons[-1], failure.status, note) from failure
        sockname = writer.get_extra_info("sockname")
        if sockname:
            self.local_ips.add(str(sockname[0]))
        return reader, writer

    async def read(self, reader: asyncio.StreamReader, n: int, deadline: float) -> bytes:
        remaining = deadline - punctual_time()
        if remaining <= 0:
            raise Fail(Reason.TIMEOUT, TransportStatus.IO_TIMEOUT, "reply timeout")
        try:
            data = await patient_wait_for(reader.read(n), remaining)
        except TimeoutError as exc:
            raise Fail(Reason.TIMEOUT, TransportStatus.IO_TIMEOUT, "reply timeout") from exc
        except (OSError, ssl.SSLError) as exc:
            raise Fail(
                Reason.CONNECTION_RESET, TransportStatus.CONNECTION_CLOSED, f"reset: {exc}"
            ) from exc
        self.received += len(data)
        if self.received > self.limits.host_bytes:
            raise Fail(Reason.OVERSIZED_REPLY, TransportStatus.PROTOCOL_ERROR, "host byte budget")
        return data

    async def read_exact(self, reader: asyncio.StreamReader, n: int, deadline: float) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = await self.read(reader, n - len(buf), deadline)
            if not chunk:
                raise Fail(
                    Reason.CONNECTION_RESET, TransportStatus.CONNECTION_CLOSED, "closed early"
                )
            buf += chunk
        return buf

    async def send(self, writer: asyncio.StreamWriter, data: bytes, shown: list[str]) -> None:
        for line in shown:
            self.transcript.sent(line)
        remaining = self.limits.reply_timeout
        try:
            writer.write(data)
            await patient_wait_for(writer.drain(), remaining)
        except TimeoutError as exc:
            raise Fail(Reason.TIMEOUT, TransportStatus.IO_TIMEOUT, "send timeout") from exc
        except (OSError, ssl.SSLError) as exc:
            raise Fail(
                Reason.CONNECTION_RESET, TransportStatus.CONNECTION_CLOSED, f"reset: {exc}"
            ) from exc


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except (OSError, TimeoutError, ssl.SSLError, RuntimeError):
        pass


def http_request(method: str, target: str, host: str, user_agent: str) -> tuple[bytes, list[str]]:
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {host}",
        f"User-Agent: {user_agent}",
        "Accept: */*",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), lines


def parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
        raise Fail(Reason.GARBAGE_REPLY, TransportStatus.PROTOCOL_ERROR, "bad status line")
    headers: dict[str, str] = {}
    for line in lines[1:101]:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            name, value = name.strip(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(parts[1]), lines[0], headers


def dechunk(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while True:
        j = data.find(b"\r\n", i)
        if j < 0:
            break
        try:
            size = int(data[i:j].split(b";")[0].strip() or b"0", 16)
        except ValueError:
            break
        if size <= 0:
            break
        out += data[j + 2 : j + 2 + size]
        i = j + 2 + size + 2
        if i > len(data):
            break
    return bytes(out)


async def read_reply(sess: Session, reader: asyncio.StreamReader, *, with_body: bool) -> HttpReply:
    deadline = sess.deadline()
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        sep = 4
        if end < 0:
            end, sep = buf.find(b"\n\n"), 2
        if end >= 0:
            break
        if buf[:5] != b"HTTP/"[: len(buf[:5])]:
            sess.transcript.received(f"(not HTTP) {buf[:48]!r}")
            raise Fail(Reason.GARBAGE_REPLY, TransportStatus.PROTOCOL_ERROR, "not HTTP")
        if len(buf) > HEAD_MAX_BYTES:
            raise Fail(Reason.OVERSIZED_REPLY, TransportStatus.PROTOCOL_ERROR, "head too large")
        try:
            chunk = await sess.read(reader, 4096, deadline)
        except Fail:
            if buf:
                sess.transcript.received(f"(partial) {buf[:80]!r}")
            raise
        if not chunk:
            if buf:
                sess.transcript.received(f"(partial) {buf[:80]!r}")
                if buf[:5] != b"HTTP/"[: len(buf[:5])]:
                    raise Fail(Reason.GARBAGE_REPLY, TransportStatus.PROTOCOL_ERROR, "not HTTP")
            sess.transcript.note("connection closed before a complete reply")
            raise Fail(Reason.CONNECTION_RESET, TransportStatus.CONNECTION_CLOSED, "closed")
        buf += chunk
    head, rest = buf[:end], buf[end + sep :]
    status, status_line, headers = parse_head(head)
    sess.transcript.received(status_line)
    for name, value in headers.items():
        sess.transcript.received(f"{name}: {value}")
    reply = HttpReply(status, status_line, headers)
    if not with_body or status in (204, 304) or 100 <= status < 200:
        reply.leftover = rest
        return reply
    cap = sess.limits.http_body_bytes
    chunked = "chunked" in (reply.header("transfer-encoding") or "").lower()
    length_text = reply.header("content-length")
    length = int(length_text) if length_text and length_text.strip().isdigit() else None
    want = min(length, cap) if length is not None and not chunked else cap
    body = bytearray(rest)
    while len(body) < want:
        if chunked and (body.endswith(b"0\r\n\r\n") or body.startswith(b"0\r\n")):
            break
        try:
            chunk = await sess.read(reader, min(4096, want - len(body)), deadline)
        except Fail as exc:
            if exc.reason is Reason.OVERSIZED_REPLY:
                raise
            sess.transcript.note(f"body incomplete: {exc.note}")
            break
        if not chunk:
            break
        body += chunk
    reply.truncated = len(body) >= cap and (length is None or length > cap)
    reply.body = dechunk(bytes(body[:cap])) if chunked else bytes(body[:cap])
    digest = hashlib.sha256(reply.body).hexdigest()
    cut = " (truncated)" if reply.truncated else ""
    sess.transcript.note(f"body {len(reply.body)} bytes sha256={digest}{cut}")
    return reply
