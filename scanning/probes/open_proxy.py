"""Open proxy probes (HTTP GET/CONNECT, SOCKS4/4a, SOCKS5) judged by our own canary.

A handshake proves nothing: the verdict is `confirmed-open` only when the canary logged the
probe's token and the proxy handed back HMAC(secret, token), which only the canary knows. The
only destinations ever asked for are the canary's configured addresses (docs/probes.md).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import re
import secrets
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from scanning.probes.base import (
    Limits,
    ProbeResult,
    Protocol,
    Reason,
    Software,
    Transcript,
    TransportStatus,
    Verdict,
    host_port,
    release_turn,
    strongest,
)
from scanning.probes.canary import (
    CanaryConfig,
    CanaryHit,
    HitStore,
    MemoryHitStore,
    canary_answer,
    new_token,
)
from scanning.probes.connect import ConnectFailure, open_connection
from scanning.probes.proxy_fingerprint import proxy_software

try:  # the SMTP sink's module owns the marker; the literal keeps this file usable without it
    from scanning.probes.smtp_sink import SINK_BANNER_MARKER
except ImportError:
    SINK_BANNER_MARKER = "secure-your-server-canary-sink"

DEFAULT_USER_AGENT = (
    "SecureYourServer-Scanner (+https://scanner.secure-your-server.invalid/scanning/)"
)
DEFAULT_LIMITS = Limits()
HEAD_MAX_BYTES = 16 * 1024
BANNER_MAX_BYTES = 512
# Headers a proxy adds (to the request it forwards, or to its own replies).
PROXY_HEADERS = (
    "via",
    "x-forwarded-for",
    "forwarded",
    "x-cache",
    "x-cache-lookup",
    "x-squid-error",
    "proxy-connection",
    "proxy-agent",
    "x-proxy-id",
)
# Request headers that may carry the client's address when a proxy forwards.
CLIENT_ADDRESS_HEADERS = (
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "client-ip",
    "x-client-ip",
    "true-client-ip",
    "x-originating-ip",
    "via",
)
SOCKS4_REPLIES = {
    0x5A: "granted",
    0x5B: "rejected",
    0x5C: "identd-unreachable",
    0x5D: "identd-mismatch",
}
SOCKS5_REPLIES = {
    0: "succeeded",
    1: "general failure",
    2: "not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


class _Fail(Exception):
    def __init__(self, reason: Reason, status: TransportStatus, note: str) -> None:
        super().__init__(note)
        self.reason = reason
        self.status = status
        self.note = note


@dataclass
class _Reply:
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


@dataclass
class _Test:
    name: str
    destination: str
    token: str | None = None
    tunnel: bool = False  # CONNECT or SOCKS: a grant is the handshake's word, nothing more
    handshake: str = "not-run"
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body_sha256: str | None = None
    body_bytes: int = 0
    granted: bool = False
    auth_required: bool = False
    secret_returned: bool = False
    tls: str | None = None
    banner: str | None = None
    banner_is_sink: bool = False
    error: Reason | None = None
    error_status: TransportStatus | None = None
    hits: list[CanaryHit] = field(default_factory=list)
    anonymity: str | None = None
    reply_waited_out: bool = False  # the request's reply timeout elapsed: the canary had time

    def as_dict(self) -> dict[str, Any]:
        exit_ips = sorted({h.peer_ip for h in self.hits})
        return {
            "name": self.name,
            "destination": self.destination,
            "handshake": self.handshake,
            "status": self.status,
            "headers": self.headers,
            "body_sha256": self.body_sha256,
            "body_bytes": self.body_bytes,
            "granted": self.granted,
            "auth_required": self.auth_required,
            "tls": self.tls,
            "banner": self.banner,
            "canary_hit": bool(self.hits),
            "canary_hits": [
                {"kind": h.kind, "exit_ip": h.peer_ip, "headers": h.headers, "request": h.detail}
                for h in self.hits
            ],
            "secret_returned": self.secret_returned,
            "exit_ip": exit_ips[0] if exit_ips else None,
            "anonymity": self.anonymity,
            "error": str(self.error) if self.error else None,
        }


class _Session:
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
        return asyncio.get_running_loop().time() + self.limits.reply_timeout

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            reader, writer = await open_connection(
                self.ip, self.port, timeout=self.limits.connect_timeout, source=self.source
            )
        except ConnectFailure as failure:
            self.transcript.note(f"{host_port(self.ip, self.port)}: {failure.note}")
            # The judgement adds connect_failed for a failed connect; the last reason says how.
            note = "refused" if failure.refused else "connect"
            raise _Fail(failure.reasons[-1], failure.status, note) from failure
        sockname = writer.get_extra_info("sockname")
        if sockname:
            self.local_ips.add(str(sockname[0]))
        return reader, writer

    async def read(self, reader: asyncio.StreamReader, n: int, deadline: float) -> bytes:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise _Fail(Reason.TIMEOUT, TransportStatus.IO_TIMEOUT, "reply timeout")
        try:
            data = await asyncio.wait_for(reader.read(n), remaining)
        except TimeoutError as exc:
            raise _Fail(Reason.TIMEOUT, TransportStatus.IO_TIMEOUT, "reply timeout") from exc
        except (OSError, ssl.SSLError) as exc:
            raise _Fail(
                Reason.CONNECTION_RESET, TransportStatus.CONNECTION_CLOSED, f"reset: {exc}"
            ) from exc
        self.received += len(data)
        if self.received > self.limits.host_bytes:
            raise _Fail(Reason.OVERSIZED_REPLY, TransportStatus.PROTOCOL_ERROR, "host byte budget")
        return data

    async def read_exact(self, reader: asyncio.StreamReader, n: int, deadline: float) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = await self.read(reader, n - len(buf), deadline)
            if not chunk:
                raise _Fail(
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
            await asyncio.wait_for(writer.drain(), remaining)
        except TimeoutError as exc:
            raise _Fail(Reason.TIMEOUT, TransportStatus.IO_TIMEOUT, "send timeout") from exc
        except (OSError, ssl.SSLError) as exc:
            raise _Fail(
                Reason.CONNECTION_RESET, TransportStatus.CONNECTION_CLOSED, f"reset: {exc}"
            ) from exc


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except (OSError, TimeoutError, ssl.SSLError, RuntimeError):
        pass


def _request(method: str, target: str, host: str, user_agent: str) -> tuple[bytes, list[str]]:
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {host}",
        f"User-Agent: {user_agent}",
        "Accept: */*",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), lines


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
        raise _Fail(Reason.GARBAGE_REPLY, TransportStatus.PROTOCOL_ERROR, "bad status line")
    headers: dict[str, str] = {}
    for line in lines[1:101]:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            name, value = name.strip(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(parts[1]), lines[0], headers


def _dechunk(data: bytes) -> bytes:
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


async def _read_reply(sess: _Session, reader: asyncio.StreamReader, *, with_body: bool) -> _Reply:
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
            raise _Fail(Reason.GARBAGE_REPLY, TransportStatus.PROTOCOL_ERROR, "not HTTP")
        if len(buf) > HEAD_MAX_BYTES:
            raise _Fail(Reason.OVERSIZED_REPLY, TransportStatus.PROTOCOL_ERROR, "head too large")
        try:
            chunk = await sess.read(reader, 4096, deadline)
        except _Fail:
            if buf:
                sess.transcript.received(f"(partial) {buf[:80]!r}")
            raise
        if not chunk:
            if buf:
                sess.transcript.received(f"(partial) {buf[:80]!r}")
                if buf[:5] != b"HTTP/"[: len(buf[:5])]:
                    raise _Fail(Reason.GARBAGE_REPLY, TransportStatus.PROTOCOL_ERROR, "not HTTP")
            sess.transcript.note("connection closed before a complete reply")
            raise _Fail(Reason.CONNECTION_RESET, TransportStatus.CONNECTION_CLOSED, "closed")
        buf += chunk
    head, rest = buf[:end], buf[end + sep :]
    status, status_line, headers = _parse_head(head)
    sess.transcript.received(status_line)
    for name, value in headers.items():
        sess.transcript.received(f"{name}: {value}")
    reply = _Reply(status, status_line, headers)
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
        except _Fail as exc:
            if exc.reason is Reason.OVERSIZED_REPLY:
                raise
            sess.transcript.note(f"body incomplete: {exc.note}")
            break
        if not chunk:
            break
        body += chunk
    reply.truncated = len(body) >= cap and (length is None or length > cap)
    reply.body = _dechunk(bytes(body[:cap])) if chunked else bytes(body[:cap])
    digest = hashlib.sha256(reply.body).hexdigest()
    cut = " (truncated)" if reply.truncated else ""
    sess.transcript.note(f"body {len(reply.body)} bytes sha256={digest}{cut}")
    return reply


def _has_proxy_headers(headers: dict[str, str]) -> bool:
    lower = {k.lower() for k in headers}
    return any(h in lower for h in PROXY_HEADERS) or any(k.startswith("x-proxy") for k in lower)


def _ips_in(text: str) -> set[str]:
    found = set()
    for candidate in re.findall(r"[0-9A-Fa-f:.]{2,45}", text):
        try:
            found.add(str(ipaddress.ip_address(candidate.strip("[]"))))
        except ValueError:
            continue
    return found


def anonymity(hit_headers: dict[str, str], probe_ips: set[str]) -> str:
    """transparent: our address was passed on; anonymous: proxy headers only; elite: neither."""
    lower = {k.lower(): v for k, v in hit_headers.items()}
    ours = {str(ipaddress.ip_address(ip)) for ip in probe_ips}
    revealed = set().union(*(_ips_in(lower.get(h, "")) for h in CLIENT_ADDRESS_HEADERS))
    if revealed & ours:
        return "transparent"
    if _has_proxy_headers(hit_headers) or any(h in lower for h in CLIENT_ADDRESS_HEADERS):
        return "anonymous"
    return "elite"


def _record_reply(test: _Test, reply: _Reply) -> None:
    test.status = reply.status
    test.headers = dict(reply.headers)
    if reply.status == 407 and reply.header("proxy-authenticate"):
        test.auth_required = True
    if reply.body or not test.tunnel:
        test.body_sha256 = hashlib.sha256(reply.body).hexdigest()
        test.body_bytes = len(reply.body)


def _fail(test: _Test, exc: _Fail, sess: _Session) -> None:
    test.error = exc.reason
    test.error_status = exc.status
    if test.handshake == "not-run":
        test.handshake = "failed"
    sess.transcript.note(f"{test.name}: {exc.note}")


class _Probe:
    def __init__(
        self,
        ip: str,
        port: int,
        protocol: Protocol,
        *,
        target: str,
        canary: CanaryConfig,
        hits: HitStore,
        limits: Limits,
        source: str | None,
        user_agent: str,
    ) -> None:
        self.ip, self.port, self.protocol, self.target = ip, port, protocol, target
        self.canary, self.hits, self.limits, self.user_agent = canary, hits, limits, user_agent
        self.sess = _Session(ip, port, limits, source)
        self.token = new_token()
        self.sess.transcript.secrets.add(self.token)
        self.tests: list[_Test] = []
        self.fatal: _Fail | None = None
        self.exchange_timed_out = False
        self.started = time.monotonic()

    def sub_token(self, suffix: str) -> str:
        token = f"{self.token}-{suffix}"
        self.sess.transcript.secrets.add(canary_answer(self.canary.secret, token))
        return token

    def answer(self, token: str) -> str:
        return canary_answer(self.canary.secret, token)

    async def tunnel_get(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, test: _Test, host: str
    ) -> None:
        """GET /c/TOKEN through an established tunnel, straight to the canary."""
        token = test.token or ""
        data, shown = _request("GET", f"/c/{token}", host, self.user_agent)
        await self.sess.send(writer, data, shown)
        try:
            reply = await _read_reply(self.sess, reader, with_body=True)
        except _Fail as exc:
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
            test.hits = self.hits.hits(test.token or "")
        # A canary in another process may record a moment after it answered: one short grace.
        # A tunnel's status before a grant is a SOCKS byte (0xFF = 255 is no "2xx"); a tunnel
        # that carried our request was granted.
        # A test whose reply timeout ran out already gave the canary that long: no grace for it.
        waiting = [
            t
            for t in asked
            if not t.hits
            and not t.reply_waited_out
            and (t.granted or (not t.tunnel and _is_2xx(t.status)))
        ]
        if waiting:
            grace = min(1.0, self.limits.reply_timeout / 2)
            first = waiting[0]
            first.hits = await self.hits.wait_for(first.token or "", kind=None, timeout=grace)
            for test in waiting[1:]:
                test.hits = self.hits.hits(test.token or "")
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
            target=self.target,
            ip=self.ip,
            port=self.port,
            protocol=self.protocol,
            verdict=verdict,
            reasons=_dedupe(reasons),
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
        except _Fail as exc:
            self.fatal = exc
        release_turn()  # every connection is closed; what is left is reading the canary's log
        try:
            async with asyncio.timeout(max(self.limits.reply_timeout, 0.1)):
                await self.collect_hits()
        except TimeoutError:
            pass
        verdict, reasons, status = _judge(self)
        return self.result(verdict, reasons, status)


def _is_2xx(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def _dedupe(reasons: list[Reason]) -> list[Reason]:
    seen: list[Reason] = []
    for reason in reasons:
        if reason not in seen:
            seen.append(reason)
    return seen


def _test_verdict(test: _Test, probe: _Probe, not_proxy: bool) -> tuple[Verdict, list[Reason]]:
    grant = Reason.SOCKS_GRANTED if probe.protocol is not Protocol.HTTP else Reason.CONNECT_GRANTED
    extra = [grant] if test.granted else []
    if test.hits and test.secret_returned:
        reasons = [Reason.CANARY_HIT, Reason.SECRET_RETURNED, *extra]
        if test.tls == "ok":
            reasons.append(Reason.TLS_TO_CANARY)
        return Verdict.CONFIRMED_OPEN, reasons
    if test.hits:
        return Verdict.LIKELY_OPEN, [Reason.CANARY_HIT, Reason.SECRET_MISSING, *extra]
    weak: list[Reason] = []
    if test.granted:
        weak.append(grant)
        if test.banner_is_sink:
            weak.append(Reason.SINK_BANNER_SEEN)
    elif _is_2xx(test.status) and _has_proxy_headers(test.headers):
        weak.append(Reason.PROXY_HEADERS_2XX)
    if weak:
        if not_proxy:
            return Verdict.CLOSED, [Reason.NOT_A_PROXY]
        return Verdict.LIKELY_OPEN_WEAK, weak
    if test.auth_required:
        return Verdict.AUTH_REQUIRED, [Reason.PROXY_AUTH_REQUIRED]
    if test.error:
        return Verdict.INCONCLUSIVE, [test.error]
    if _is_2xx(test.status):
        if not_proxy:
            return Verdict.CLOSED, [Reason.NOT_A_PROXY]
        return Verdict.INCONCLUSIVE, [Reason.REPLY_2XX_NO_CANARY]
    return Verdict.CLOSED, [Reason.PROXY_REFUSED]


def _judge(probe: _Probe) -> tuple[Verdict, list[Reason], TransportStatus]:
    fatal = probe.fatal
    judged = [
        t for t in probe.tests if not t.name.startswith("baseline") and t.handshake != "not-run"
    ]
    if fatal:  # the failed first request is the fatal error, not a judged test
        judged = [t for t in judged if t.handshake != "failed" or t is not probe.tests[0]]
    not_proxy = False
    reasons: list[Reason] = []
    baseline = {t.name: t for t in probe.tests if t.name.startswith("baseline")}
    root, bogus = baseline.get("baseline-root"), baseline.get("baseline-bogus")
    if bogus and bogus.status is not None and bogus.status < 400:
        # No forward proxy can fetch a .invalid host: whatever answered 2xx/3xx is not one.
        not_proxy = True
        reasons.append(Reason.NOT_A_PROXY)
        if root and root.status == bogus.status and root.body_sha256 == bogus.body_sha256:
            reasons.append(Reason.SAME_PAGE_FOR_BOGUS_HOST)
    if fatal and not judged:
        # A refused port is closed; a port that answered and then refused is only in the way.
        answered = any(t.handshake not in ("not-run", "failed") for t in probe.tests)
        if fatal.status is TransportStatus.CONNECTION_REFUSED and not answered:
            return Verdict.CLOSED, [Reason.CONNECT_FAILED], fatal.status
        if fatal.reason is Reason.GARBAGE_REPLY:
            return Verdict.NOT_APPLICABLE, [Reason.GARBAGE_REPLY], fatal.status
        extra = [Reason.CONNECT_FAILED] if fatal.note in ("connect", "refused") else []
        return Verdict.INCONCLUSIVE, [*extra, fatal.reason], fatal.status
    verdicts: list[Verdict] = []
    per_test: list[tuple[Verdict, list[Reason]]] = []
    for test in judged:
        verdict, why = _test_verdict(test, probe, not_proxy)
        verdicts.append(verdict)
        per_test.append((verdict, why))
    if probe.exchange_timed_out:
        verdicts.append(Verdict.INCONCLUSIVE)
        per_test.append((Verdict.INCONCLUSIVE, [Reason.TIMEOUT]))
    if fatal:
        verdicts.append(Verdict.INCONCLUSIVE)
        per_test.append((Verdict.INCONCLUSIVE, [fatal.reason]))
    final = strongest(verdicts) if verdicts else Verdict.INCONCLUSIVE
    if final is not Verdict.CLOSED:
        reasons = []  # the baseline's "not a proxy" only explains a closed verdict
    for verdict, why in per_test:
        if verdict is final:
            reasons.extend(why)
    status = TransportStatus.SUCCESS
    if final is Verdict.INCONCLUSIVE:
        errors = [t.error_status for t in judged if t.error_status]
        status = fatal.status if fatal else (errors[0] if errors else TransportStatus.IO_TIMEOUT)
        if not reasons:
            reasons.append(Reason.TIMEOUT)
    return final, reasons, status


async def _http_test(probe: _Probe, test: _Test, method: str, target: str, host: str) -> _Reply:
    sess = probe.sess
    probe.tests.append(test)
    try:
        reader, writer = await sess.connect()
    except _Fail as exc:
        _fail(test, exc, sess)
        raise
    try:
        data, shown = _request(method, target, host, probe.user_agent)
        await sess.send(writer, data, shown)
        reply = await _read_reply(sess, reader, with_body=True)
        test.handshake = "http-reply"
        _record_reply(test, reply)
        return reply
    except _Fail as exc:
        _fail(test, exc, sess)
        raise
    finally:
        await _close(writer)


async def _connect_test(probe: _Probe, test: _Test, host: str, port: int, kind: str) -> None:
    """CONNECT to the canary's TLS endpoint or SMTP sink, then prove the tunnel reaches it."""
    sess = probe.sess
    probe.tests.append(test)
    authority = host_port(host, port)
    reader, writer = await sess.connect()
    try:
        data, shown = _request("CONNECT", authority, authority, probe.user_agent)
        await sess.send(writer, data, shown)
        reply = await _read_reply(sess, reader, with_body=False)
        test.status = reply.status
        test.headers = dict(reply.headers)
        if not _is_2xx(reply.status):
            test.handshake = "connect-refused"
            if reply.status == 407 and reply.header("proxy-authenticate"):
                test.auth_required = True
                test.handshake = "auth-required"
            try:  # the proxy's own error page names the software
                rest = await _read_reply_body(sess, reader, reply)
                sess.hints.append((reply.headers, rest.decode("utf-8", "replace"), None))
                test.body_sha256 = hashlib.sha256(rest).hexdigest()
                test.body_bytes = len(rest)
            except _Fail:
                pass
            return
        test.handshake = "connect-granted"
        test.granted = True
        sess.hints.append((reply.headers, "", None))
        if kind == "tls":
            await _tls_inside(probe, test, reader, writer)
        else:
            await _sink_banner(probe, test, reader, writer, reply.leftover)
    finally:
        await _close(writer)


async def _read_reply_body(sess: _Session, reader: asyncio.StreamReader, reply: _Reply) -> bytes:
    length_text = reply.header("content-length")
    want = sess.limits.http_body_bytes
    if length_text and length_text.strip().isdigit():
        want = min(want, int(length_text))
    body = reply.leftover
    deadline = sess.deadline()
    while len(body) < want:
        chunk = await sess.read(reader, min(4096, want - len(body)), deadline)
        if not chunk:
            break
        body += chunk
    return body[:want]


@functools.lru_cache(maxsize=1)  # building a context costs ~30 ms of CPU; one serves every probe
def _tunnel_tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    # The certificate is the canary's own throwaway one; the HMAC secret is what proves the path.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _tls_inside(
    probe: _Probe, test: _Test, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    sess = probe.sess
    ctx = _tunnel_tls_context()
    sess.transcript.note(f"TLS handshake inside the tunnel (SNI {probe.canary.domain})")
    try:
        await writer.start_tls(
            ctx,
            server_hostname=probe.canary.domain,
            ssl_handshake_timeout=probe.limits.reply_timeout,
        )
    except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as exc:
        test.tls = f"failed: {type(exc).__name__}"
        sess.transcript.note(f"TLS handshake failed: {type(exc).__name__}")
        return
    test.tls = "ok"
    try:
        await probe.tunnel_get(reader, writer, test, probe.canary.domain)
    except _Fail as exc:
        sess.transcript.note(f"{test.name}: {exc.note} inside TLS")


async def _sink_banner(
    probe: _Probe,
    test: _Test,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    leftover: bytes,
) -> None:
    sess = probe.sess
    banner = leftover
    deadline = sess.deadline()
    try:
        while b"\n" not in banner and len(banner) < BANNER_MAX_BYTES:
            size = min(probe.limits.tunnel_read_bytes, BANNER_MAX_BYTES)
            chunk = await sess.read(reader, size, deadline)
            if not chunk:
                break
            banner += chunk
    except _Fail as exc:
        sess.transcript.note(f"{test.name}: no banner ({exc.note})")
    line = banner.split(b"\n", 1)[0][:BANNER_MAX_BYTES].decode("latin-1").rstrip("\r")
    if line:
        test.banner = line
        sess.transcript.received(line)
    test.banner_is_sink = SINK_BANNER_MARKER in line and line.startswith("220")
    if line:
        try:
            await sess.send(writer, b"QUIT\r\n", ["QUIT"])
        except _Fail:
            pass


async def probe_http_proxy(
    ip: str,
    port: int,
    *,
    target: str,
    canary: CanaryConfig,
    hits: HitStore,
    limits: Limits = DEFAULT_LIMITS,
    source: str | None = None,
    user_agent: str = DEFAULT_USER_AGENT,
) -> ProbeResult:
    probe = _Probe(
        ip,
        port,
        Protocol.HTTP,
        target=target,
        canary=canary,
        hits=hits,
        limits=limits,
        source=source,
        user_agent=user_agent,
    )

    async def body() -> None:
        sess = probe.sess
        own = host_port(ip, port)
        root = _Test("baseline-root", own)
        await _http_test(probe, root, "GET", "/", own)
        bogus_host = f"{secrets.token_hex(8)}.invalid"
        bogus = _Test("baseline-bogus", f"http://{bogus_host}/")
        try:
            reply = await _http_test(probe, bogus, "GET", f"http://{bogus_host}/", bogus_host)
            sess.hints.insert(0, (reply.headers, reply.body.decode("utf-8", "replace"), None))
        except _Fail as exc:
            if exc.status is TransportStatus.CONNECTION_REFUSED:
                raise
            _fail(bogus, exc, sess)
        http_host, http_port = canary.http_addr
        authority = host_port(http_host, http_port)
        get = _Test("get", authority, token=probe.sub_token("get"))
        try:
            url = f"http://{authority}/c/{get.token}"
            reply = await _http_test(probe, get, "GET", url, authority)
            get.secret_returned = probe.answer(get.token or "").encode() in reply.body
            sess.hints.append((reply.headers, reply.body.decode("utf-8", "replace"), None))
        except _Fail as exc:
            _fail(get, exc, sess)
        for name, addr, kind in (
            ("connect-tls", canary.tls_addr, "tls"),
            ("connect-smtp", canary.smtp_addr, "smtp"),
        ):
            test = _Test(name, host_port(*addr), tunnel=True)
            if kind == "tls":
                test.token = probe.sub_token("tls")
            try:
                await _connect_test(probe, test, addr[0], addr[1], kind)
            except _Fail as exc:
                _fail(test, exc, sess)

    return await probe.run(body)


async def _root_or_fail(probe: _Probe, test: _Test, coro: Any) -> None:
    """Run a SOCKS test; the first one's failure decides the whole probe."""
    first = not any(t.handshake != "not-run" for t in probe.tests)
    probe.tests.append(test)
    try:
        await coro
    except _Fail as exc:
        _fail(test, exc, probe.sess)
        if first:  # a tarpit, garbage or a refusal on the first request ends the probe
            raise


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def _socks4_test(probe: _Probe, test: _Test, host: str, port: int, remote_name: bool) -> None:
    sess = probe.sess
    reader, writer = await sess.connect()
    try:
        userid = b""
        if remote_name:
            # SOCKS4a: 0.0.0.x tells the server to resolve the name that follows the user id.
            data = struct.pack("!BBH", 4, 1, port) + b"\x00\x00\x00\x01" + userid + b"\x00"
            data += host.encode("idna") + b"\x00"
        else:
            data = struct.pack("!BBH", 4, 1, port) + ipaddress.IPv4Address(host).packed
            data += userid + b"\x00"
        shown = f"{test.name.upper()} CONNECT {test.destination} ({data.hex(' ')})"
        await sess.send(writer, data, [shown])
        reply = await sess.read_exact(reader, 8, sess.deadline())
        sess.transcript.received(reply.hex(" "))
        if reply[0] not in (0, 4) or reply[1] not in SOCKS4_REPLIES:
            raise _Fail(Reason.GARBAGE_REPLY, TransportStatus.PROTOCOL_ERROR, "not SOCKS4")
        test.status = reply[1]
        sess.hints.append(({}, "", reply))
        if reply[1] != 0x5A:
            test.handshake = f"socks-{SOCKS4_REPLIES[reply[1]]}"
            return
        await _through_granted_tunnel(probe, test, reader, writer, host_port(host, port))
    finally:
        await _close(writer)


async def _through_granted_tunnel(
    probe: _Probe,
    test: _Test,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    destination: str,
) -> None:
    """A SOCKS grant proves nothing by itself: ask the canary through the tunnel."""
    test.handshake = "socks-granted"
    test.granted = True
    try:
        await probe.tunnel_get(reader, writer, test, destination)
    except _Fail as exc:
        probe.sess.transcript.note(f"{test.name}: {exc.note} through the tunnel")


async def probe_socks4(
    ip: str,
    port: int,
    *,
    target: str,
    canary: CanaryConfig,
    hits: HitStore,
    limits: Limits = DEFAULT_LIMITS,
    source: str | None = None,
    user_agent: str = DEFAULT_USER_AGENT,
) -> ProbeResult:
    probe = _Probe(
        ip,
        port,
        Protocol.SOCKS4,
        target=target,
        canary=canary,
        hits=hits,
        limits=limits,
        source=source,
        user_agent=user_agent,
    )
    host, cport = canary.http_addr

    async def body() -> None:
        literal = _ip_literal(host)
        if isinstance(literal, ipaddress.IPv4Address):
            test = _Test("socks4", host_port(host, cport), token=probe.sub_token("s4"), tunnel=True)
            await _root_or_fail(probe, test, _socks4_test(probe, test, host, cport, False))
        # The name form sends the configured host text (an IP literal in tests: no DNS anywhere).
        test = _Test("socks4a", host_port(host, cport), token=probe.sub_token("s4a"), tunnel=True)
        await _root_or_fail(probe, test, _socks4_test(probe, test, host, cport, True))

    return await probe.run(body)


def _socks5_address(host: str, by_name: bool) -> bytes:
    literal = None if by_name else _ip_literal(host)
    if isinstance(literal, ipaddress.IPv4Address):
        return b"\x01" + literal.packed
    if isinstance(literal, ipaddress.IPv6Address):
        return b"\x04" + literal.packed
    name = host.encode("idna")
    return b"\x03" + bytes([len(name)]) + name


async def _socks5_test(probe: _Probe, test: _Test, host: str, port: int, by_name: bool) -> None:
    sess = probe.sess
    reader, writer = await sess.connect()
    try:
        # Only "no authentication" is offered: probes never try to authenticate.
        await sess.send(writer, b"\x05\x01\x00", ["SOCKS5 greeting, methods: 00 (05 01 00)"])
        greeting = await sess.read_exact(reader, 2, sess.deadline())
        sess.transcript.received(greeting.hex(" "))
        if greeting[0] != 5:
            raise _Fail(Reason.GARBAGE_REPLY, TransportStatus.PROTOCOL_ERROR, "not SOCKS5")
        sess.hints.append(({}, "", greeting))
        if greeting[1] in (0x02, 0xFF):
            test.handshake = "auth-required"
            test.status = greeting[1]
            test.auth_required = True
            return
        if greeting[1] != 0x00:
            raise _Fail(Reason.GARBAGE_REPLY, TransportStatus.PROTOCOL_ERROR, "unknown method")
        data = b"\x05\x01\x00" + _socks5_address(host, by_name) + struct.pack("!H", port)
        await sess.send(writer, data, [f"SOCKS5 CONNECT {test.destination} ({data.hex(' ')})"])
        deadline = sess.deadline()
        head = await sess.read_exact(reader, 4, deadline)
        if head[0] != 5 or head[3] not in (1, 3, 4):
            sess.transcript.received(head.hex(" "))
            raise _Fail(Reason.GARBAGE_REPLY, TransportStatus.PROTOCOL_ERROR, "bad SOCKS5 reply")
        if head[3] == 3:
            size = (await sess.read_exact(reader, 1, deadline))[0]
            rest = await sess.read_exact(reader, size + 2, deadline)
        else:
            rest = await sess.read_exact(reader, (4 if head[3] == 1 else 16) + 2, deadline)
        sess.transcript.received((head + rest).hex(" "))
        test.status = head[1]
        if head[1] != 0:
            test.handshake = f"socks-{SOCKS5_REPLIES.get(head[1], 'error')}"
            return
        await _through_granted_tunnel(probe, test, reader, writer, host_port(host, port))
    finally:
        await _close(writer)


async def probe_socks5(
    ip: str,
    port: int,
    *,
    target: str,
    canary: CanaryConfig,
    hits: HitStore,
    limits: Limits = DEFAULT_LIMITS,
    source: str | None = None,
    user_agent: str = DEFAULT_USER_AGENT,
) -> ProbeResult:
    probe = _Probe(
        ip,
        port,
        Protocol.SOCKS5,
        target=target,
        canary=canary,
        hits=hits,
        limits=limits,
        source=source,
        user_agent=user_agent,
    )
    host, cport = canary.http_addr
    v6 = canary.http_addr6

    async def body() -> None:
        plan: list[tuple[str, str, int, bool]] = []
        literal = _ip_literal(host)
        if literal is not None:
            plan.append((f"socks5-ipv{literal.version}", host, cport, False))
        plan.append(("socks5-name", host, cport, True))
        if v6 is not None and not isinstance(literal, ipaddress.IPv6Address):
            plan.append(("socks5-ipv6", v6[0], v6[1], False))
        for name, thost, tport, by_name in plan:
            token = probe.sub_token(name.removeprefix("socks5-"))
            test = _Test(name, host_port(thost, tport), token=token, tunnel=True)
            await _root_or_fail(probe, test, _socks5_test(probe, test, thost, tport, by_name))
            if test.auth_required:
                break  # every further request would meet the same demand

    return await probe.run(body)


def _request_succeeded(test: dict[str, Any]) -> bool:
    return bool(
        test["granted"] or test["secret_returned"] or test["canary_hit"] or _is_2xx(test["status"])
    )


async def selfcheck(
    canary: CanaryConfig, *, limits: Limits = DEFAULT_LIMITS, source: str | None = None
) -> bool:
    """True when the scanner's own path is clean: a port known not to be a proxy looked like none.

    False means some request "succeeded" against that port, so something between the scanner
    and the network answers for everyone; the caller voids the batch (Reason.SELFCHECK_FAILED).
    """
    if canary.selfcheck_addr is None:
        raise ValueError("canary.selfcheck_addr is not configured")
    host, port = canary.selfcheck_addr
    result = await probe_http_proxy(
        host,
        port,
        target=host_port(host, port),
        canary=canary,
        hits=MemoryHitStore(),
        limits=limits,
        source=source,
    )
    return not any(_request_succeeded(t) for t in result.details["tests"])
