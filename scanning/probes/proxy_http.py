"""The HTTP proxy probe: baselines, GET through the proxy, and CONNECT to the canary (TLS, SMTP).

The only destinations ever asked for are the canary's configured addresses and one bogus
`.invalid` host (docs/probes.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import secrets
import ssl

from scanning.probes.base import (
    ProbeContext,
    ProbeResult,
    Protocol,
    Target,
    TransportStatus,
    host_port,
)
from scanning.probes.canary import MemoryHitStore
from scanning.probes.proxy_judgement import ProxyTest, is_2xx, request_succeeded
from scanning.probes.proxy_probe import ProxyProbe, failed, record_reply
from scanning.probes.proxy_wire import Fail, HttpReply, Session, close, http_request, read_reply

try:  # the SMTP sink's module owns the marker; the literal keeps this file usable without it
    from scanning.probes.smtp_sink import SINK_BANNER_MARKER
except ImportError:
    SINK_BANNER_MARKER = "secure-your-server-canary-sink"

BANNER_MAX_BYTES = 512


async def _http_test(
    probe: ProxyProbe, test: ProxyTest, method: str, target: str, host: str
) -> HttpReply:
    sess = probe.sess
    probe.tests.append(test)
    try:
        reader, writer = await sess.connect()
    except Fail as exc:
        failed(test, exc, sess)
        raise
    try:
        data, shown = http_request(method, target, host, probe.user_agent)
        await sess.send(writer, data, shown)
        reply = await read_reply(sess, reader, with_body=True)
        test.handshake = "http-reply"
        record_reply(test, reply)
        return reply
    except Fail as exc:
        failed(test, exc, sess)
        raise
    finally:
        await close(writer)


async def _connect_test(
    probe: ProxyProbe, test: ProxyTest, host: str, port: int, kind: str
) -> None:
    """CONNECT to the canary's TLS endpoint or SMTP sink, then prove the tunnel reaches it."""
    sess = probe.sess
    probe.tests.append(test)
    authority = host_port(host, port)
    reader, writer = await sess.connect()
    try:
        data, shown = http_request("CONNECT", authority, authority, probe.user_agent)
        await sess.send(writer, data, shown)
        reply = await read_reply(sess, reader, with_body=False)
        test.status = reply.status
        test.headers = dict(reply.headers)
        if not is_2xx(reply.status):
            test.handshake = "connect-refused"
            if reply.status == 407 and reply.header("proxy-authenticate"):
                test.auth_required = True
                test.handshake = "auth-required"
            try:  # the proxy's own error page names the software
                rest = await _read_reply_body(sess, reader, reply)
                sess.hints.append((reply.headers, rest.decode("utf-8", "replace"), None))
                test.body_sha256 = hashlib.sha256(rest).hexdigest()
                test.body_bytes = len(rest)
            except Fail:
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
        await close(writer)


async def _read_reply_body(sess: Session, reader: asyncio.StreamReader, reply: HttpReply) -> bytes:
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
    probe: ProxyProbe, test: ProxyTest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
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
    except Fail as exc:
        sess.transcript.note(f"{test.name}: {exc.note} inside TLS")


async def _sink_banner(
    probe: ProxyProbe,
    test: ProxyTest,
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
    except Fail as exc:
        sess.transcript.note(f"{test.name}: no banner ({exc.note})")
    line = banner.split(b"\n", 1)[0][:BANNER_MAX_BYTES].decode("latin-1").rstrip("\r")
    if line:
        test.banner = line
        sess.transcript.received(line)
    test.banner_is_sink = SINK_BANNER_MARKER in line and line.startswith("220")
    if line:
        try:
            await sess.send(writer, b"QUIT\r\n", ["QUIT"])
        except Fail:
            pass


async def probe_http_proxy(target: Target, ctx: ProbeContext) -> ProbeResult:
    probe = ProxyProbe(target, Protocol.HTTP, ctx)

    async def body() -> None:
        sess = probe.sess
        own = target.given
        root = ProxyTest("baseline-root", own)
        await _http_test(probe, root, "GET", "/", own)
        bogus_host = f"{secrets.token_hex(8)}.invalid"
        bogus = ProxyTest("baseline-bogus", f"http://{bogus_host}/")
        try:
            reply = await _http_test(probe, bogus, "GET", f"http://{bogus_host}/", bogus_host)
            sess.hints.insert(0, (reply.headers, reply.body.decode("utf-8", "replace"), None))
        except Fail as exc:
            if exc.status is TransportStatus.CONNECTION_REFUSED:
                raise
            failed(bogus, exc, sess)
        http_host, http_port = ctx.canary.http_addr
        authority = host_port(http_host, http_port)
        get = ProxyTest("get", authority, token=probe.sub_token("get"))
        try:
            url = f"http://{authority}/c/{get.token}"
            reply = await _http_test(probe, get, "GET", url, authority)
            get.secret_returned = probe.answer(get.token or "").encode() in reply.body
            sess.hints.append((reply.headers, reply.body.decode("utf-8", "replace"), None))
        except Fail as exc:
            failed(get, exc, sess)
        for name, addr, kind in (
            ("connect-tls", ctx.canary.tls_addr, "tls"),
            ("connect-smtp", ctx.canary.smtp_addr, "smtp"),
        ):
            test = ProxyTest(name, host_port(*addr), tunnel=True)
            if kind == "tls":
                test.token = probe.sub_token("tls")
            try:
                await _connect_test(probe, test, addr[0], addr[1], kind)
            except Fail as exc:
                failed(test, exc, sess)

    return await probe.run(body)


async def selfcheck(ctx: ProbeContext) -> bool:
    """True when the scanner's own path is clean: a port known not to be a proxy looked like none.

    False means some request "succeeded" against that port, so something between the scanner
    and the network answers for everyone; the caller voids the batch (Reason.SELFCHECK_FAILED).
    """
    if ctx.canary.selfcheck_addr is None:
        raise ValueError("canary.selfcheck_addr is not configured")
    host, port = ctx.canary.selfcheck_addr
    # Its own hit store: nothing the self-check asks for may count for a real target.
    own = dataclasses.replace(ctx, hits=MemoryHitStore())
    result = await probe_http_proxy(Target.at(host, port), own)
    return not any(request_succeeded(t) for t in result.details["tests"])
