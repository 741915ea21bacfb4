"""The SOCKS probes: SOCKS4 and 4a, SOCKS5 by IPv4, name and IPv6, each through to the canary.

Only "no authentication" is ever offered, and a grant alone proves nothing: every granted tunnel
carries a request to the canary (docs/probes.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from typing import Any

from scanning.probes.base import (
    ProbeContext,
    ProbeResult,
    Protocol,
    Reason,
    Target,
    TransportStatus,
    host_port,
)
from scanning.probes.proxy_judgement import ProxyTest
from scanning.probes.proxy_probe import ProxyProbe, failed
from scanning.probes.proxy_wire import Fail, close

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


async def _root_or_fail(probe: ProxyProbe, test: ProxyTest, coro: Any) -> None:
    """Run a SOCKS test; the first one's failure decides the whole probe."""
    first = not any(t.handshake != "not-run" for t in probe.tests)
    probe.tests.append(test)
    try:
        await coro
    except Fail as exc:
        failed(test, exc, probe.sess)
        if first:  # a tarpit, garbage or a refusal on the first request ends the probe
            raise


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def _socks4_test(
    probe: ProxyProbe, test: ProxyTest, host: str, port: int, remote_name: bool
) -> None:
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
            raise Fail(Reason.GARBAGE_REPLY, TransportStatus.PROTOCOL_ERROR, "not SOCKS4")
        test.status = reply[1]
        sess.hints.append(({}, "", reply))
        if reply[1] != 0x5A:
            test.handshake = f"socks-{SOCKS4_REPLIES[reply[1]]}"
            return
        await _through_granted_tunnel(probe, test, reader, writer, host_port(host, port))
    finally:
        await close(writer)


async def _through_granted_tunnel(
    probe: ProxyProbe,
    test: ProxyTest,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    destination: str,
) -> None:
    """A SOCKS grant proves nothing by itself: ask the canary through the tunnel."""
    test.handshake = "socks-granted"
    test.granted = True
    try:
        await probe.tunnel_get(reader, writer, test, destination)
    except Fail as exc:
        probe.sess.transcript.note(f"{test.name}: {exc.note} through the tunnel")


async def probe_socks4(target: Target, ctx: ProbeContext) -> ProbeResult:
    probe = ProxyProbe(target, Protocol.SOCKS4, ctx)
    host, cport = ctx.canary.http_addr

    async def body() -> None:
        literal = _ip_literal(host)
        if isinstance(literal, ipaddress.IPv4Address):
            test = ProxyTest(
                "socks4", host_port(host, cport), token=probe.sub_token("s4"), tunnel=True
            )
            await _root_or_fail(probe, test, _socks4_test(probe, test, host, cport, False))
        # The name form sends the configured host text (an IP literal in tests: no DNS anywhere).
        test = ProxyTest(
            "socks4a", host_port(host, cport), token=probe.sub_token("s4a"), tunnel=True
        )
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


async def _socks5_test(
    probe: ProxyProbe, test: ProxyTest, host: str, port: int, by_name: bool
) -> None:
    sess = probe.sess
    reader, writer = await sess.connect()
    try:
        # Only "no authentication" is offered: probes never try to authenticate.
        await sess.send(writer, b"\x05\x01\x00", ["SOCKS5 greeting, methods: 00 (05 01 00)"])
        greeting = await sess.read_exact(reader, 2, sess.deadline())
        sess.transcript.received(greeting.hex(" "))
        if greeting[0] != 5:
            raise Fail(Reason.GARBAGE_REPLY, TransportStatus.PROTOCOL_ERROR, "not SOCKS5")
        sess.hints.append(({}, "", greeting))
        if greeting[1] in (0x02, 0xFF):
            test.handshake = "auth-required"
            test.status = greeting[1]
            test.auth_required = True
            return
        if greeting[1] != 0x00:
            raise Fail(Reason.GARBAGE_REPLY, TransportStatus.PROTOCOL_ERROR, "unknown method")
        data = b"\x05\x01\x00" + _socks5_address(host, by_name) + struct.pack("!H", port)
        await sess.send(writer, data, [f"SOCKS5 CONNECT {test.destination} ({data.hex(' ')})"])
        deadline = sess.deadline()
        head = await sess.read_exact(reader, 4, deadline)
        if head[0] != 5 or head[3] not in (1, 3, 4):
            sess.transcript.received(head.hex(" "))
            raise Fail(Reason.GARBAGE_REPLY, TransportStatus.PROTOCOL_ERROR, "bad SOCKS5 reply")
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
        await close(writer)


async def probe_socks5(target: Target, ctx: ProbeContext) -> ProbeResult:
    probe = ProxyProbe(target, Protocol.SOCKS5, ctx)
    host, cport = ctx.canary.http_addr
    v6 = ctx.canary.http_addr6

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
            test = ProxyTest(name, host_port(thost, tport), token=token, tunnel=True)
            await _root_or_fail(probe, test, _socks5_test(probe, test, thost, tport, by_name))
            if test.auth_required:
                break  # every further request would meet the same demand

    return await probe.run(body)
