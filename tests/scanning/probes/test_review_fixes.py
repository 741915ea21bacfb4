"""Regression tests for deviations from docs/probes.md found in review (127.0.110.x only)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fakes.proxy_traps import running_canary
from scanning.probes.base import (
    Limits,
    ProbeContext,
    ProbeResult,
    Protocol,
    Reason,
    Target,
    Transcript,
    Verdict,
)
from scanning.probes.canary import CanaryConfig, MemoryHitStore, canary_answer
from scanning.probes.canary_http import start_http_canary
from scanning.probes.open_proxy import probe_http_proxy
from scanning.probes.runner import Scanner, ScanOptions, parse_target, refuse_reason
from scanning.probes.smtp_relay import probe_smtp

LIMITS = Limits(connect_timeout=1, reply_timeout=1, exchange_timeout=5, confirm_wait=1)
DOMAIN = "canary.test"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _canary(host: str = "127.0.110.250") -> CanaryConfig:
    return CanaryConfig(
        domain=DOMAIN,
        http_addr=(host, 9),
        tls_addr=(host, 9),
        smtp_addr=(host, 9),
        secret=b"review-secret",
    )


async def _smtp_script(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: Callable[[str], str]
) -> None:
    """A scripted SMTP peer: `answer(command)` gives the reply lines, "" hangs up."""
    writer.write(b"220 mx.review.test ESMTP\r\n")
    await writer.drain()
    while line := await reader.readline():
        reply = answer(line.decode().rstrip("\r\n"))
        if not reply:
            break
        writer.write(reply.encode() + b"\r\n")
        await writer.drain()
    writer.close()


async def _probe_scripted_smtp(host: str, answer: Callable[[str], str]) -> ProbeResult:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _smtp_script(reader, writer, answer)

    server = await asyncio.start_server(handle, host, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await probe_smtp(
            Target.at(host, port),
            ProbeContext(canary=_canary(), hits=MemoryHitStore(), limits=LIMITS),
        )
    finally:
        server.close()


# --- address policy ------------------------------------------------------------------------


def test_6to4_and_ietf_protocol_assignments_are_refused() -> None:
    for address in (
        "2002:7f00:1::1",  # 6to4 around 127.0.0.1
        "2002:a00:1::1",  # 6to4 around 10.0.0.1
        "2002:c0a8:101::1",  # 6to4 around 192.168.1.1
        "2002:6440:1::1",  # 6to4 around 100.64.0.1
        "2002::1",  # 6to4 around 0.0.0.0
        "192.0.0.8",  # 192.0.0.0/24, IETF protocol assignments
        "192.0.0.200",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "64:ff9b::a00:1",  # NAT64 around 10.0.0.1
    ):
        assert refuse_reason(address, False), address
    assert refuse_reason("2002:808:808::1", False) is None  # 6to4 around a global address
    assert refuse_reason("2002:7f00:1::1", True) is None


# --- runner manners ------------------------------------------------------------------------


def test_an_ipv4_mapped_alias_shares_the_one_connection_per_ip() -> None:
    state = {"now": 0, "most": 0}

    async def fake_probe(target: Target, ctx: ProbeContext, **kwargs: Any) -> ProbeResult:
        ip, port = target.ip, target.port
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
        await asyncio.sleep(0.05)
        state["now"] -= 1
        return ProbeResult(target.given, ip, port, Protocol.SMTP, Verdict.CLOSED)

    options = ScanOptions(protocol="smtp", allow_private=True, network_rate=0)
    scanner = Scanner(
        canary=_canary(),
        hits=MemoryHitStore(),
        options=options,
        probes={Protocol.SMTP: fake_probe},
    )
    targets = [parse_target("127.0.110.1:25"), parse_target("[::ffff:127.0.110.1]:2525")]
    results = asyncio.run(scanner.run(targets))
    assert len(results) == 2 and state["most"] == 1


def test_the_exclusion_list_covers_an_ipv4_mapped_alias() -> None:
    probed: list[str] = []

    async def fake_probe(target: Target, ctx: ProbeContext, **kwargs: Any) -> ProbeResult:
        ip, port = target.ip, target.port
        probed.append(ip)
        return ProbeResult(target.given, ip, port, Protocol.SMTP, Verdict.CLOSED)

    options = ScanOptions(protocol="smtp", allow_private=True, network_rate=0)
    scanner = Scanner(
        canary=_canary(),
        hits=MemoryHitStore(),
        options=options,
        probes={Protocol.SMTP: fake_probe},
        is_excluded=lambda ip: ip == "127.0.110.2",  # the list holds the IPv4 form
    )
    [result] = asyncio.run(scanner.run([parse_target("[::ffff:127.0.110.2]:25")]))
    assert probed == []
    assert result.verdict is Verdict.NOT_APPLICABLE and result.reasons == [Reason.EXCLUDED]


# --- SMTP ----------------------------------------------------------------------------------


def test_a_4xx_to_helo_is_a_temporary_reject_with_retry_after() -> None:
    def answer(command: str) -> str:
        verb = command[:4].upper()
        if verb == "EHLO":
            return "502 5.5.2 Error: command not recognized"
        if verb == "HELO":
            return "450 4.7.1 Client host rejected: try again later"
        return "221 bye" if verb == "QUIT" else "503 5.5.1 bad sequence"

    result = asyncio.run(_probe_scripted_smtp("127.0.110.10", answer))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert Reason.TEMP_REJECT_4XX in result.reasons
    assert result.retry_after and result.retry_after >= 1


def test_an_upper_cased_echo_of_the_token_is_redacted() -> None:
    def answer(command: str) -> str:
        verb = command[:4].upper()
        if verb == "EHLO":
            return "250-mx.review.test\r\n250 8BITMIME"
        if verb in ("MAIL", "RCPT"):
            address = command.split(":", 1)[1]
            return f"554 5.7.1 {address.upper()}: Relay access denied"
        return "221 bye" if verb == "QUIT" else "250 ok"

    result = asyncio.run(_probe_scripted_smtp("127.0.110.11", answer))
    assert result.verdict is Verdict.CLOSED
    token = (result.token or "").lower()
    everything = json.dumps({"d": result.details, "t": result.transcript}).lower()
    assert token and token not in everything
    assert "[REDACTED]" in json.dumps(result.transcript)


def test_a_token_cut_by_the_line_cap_is_still_redacted() -> None:
    token = "0123456789abcdef0123456789abcdef"
    transcript = Transcript()
    transcript.secrets.add(token)
    transcript.received("x" * 500 + token)  # the 512-character cap falls inside the token
    text = transcript.redacted()[0]["text"]
    assert token[:12] not in text


# --- proxies -------------------------------------------------------------------------------


def test_a_port_that_stops_answering_after_one_reply_is_not_closed() -> None:
    # The first connection gets a page; from then on the port refuses (a listener that went away,
    # a rate limit). That is "something in the way", not "every test permanently refused".
    async def main() -> ProbeResult:
        async with running_canary("127.0.110.251", v6=False) as (canary, hits):
            holder: dict[str, asyncio.Server] = {}

            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                holder["server"].close()  # no further connections
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                await writer.drain()
                writer.close()

            host = "127.0.110.20"
            server = holder["server"] = await asyncio.start_server(handle, host, 0)
            port = server.sockets[0].getsockname()[1]
            return await probe_http_proxy(
                Target.at(host, port),
                ProbeContext(
                    canary=canary, hits=hits, limits=dataclasses.replace(LIMITS, reply_timeout=0.5)
                ),
            )

    result = asyncio.run(main())
    assert result.verdict is not Verdict.CLOSED
    assert result.verdict is Verdict.INCONCLUSIVE


def test_the_canary_answers_no_token_longer_than_the_hit_table_keeps() -> None:
    # The deployed hit store keeps 64 characters of a token (scanning.models.CanaryHit): a longer
    # one would be answered but logged as another token.
    async def main() -> tuple[bytes, list[str]]:
        hits = MemoryHitStore()
        canary = _canary("127.0.110.30")
        server = await start_http_canary(canary, hits, "127.0.110.30", 0)
        port = server.sockets[0].getsockname()[1]
        token = "a" * 65
        try:
            reader, writer = await asyncio.open_connection("127.0.110.30", port)
            writer.write(f"GET /c/{token} HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n".encode())
            await writer.drain()
            reply = await asyncio.wait_for(reader.read(), 5)
            writer.close()
        finally:
            server.close()
        return reply, [canary_answer(canary.secret, token)]

    reply, [answer] = asyncio.run(main())
    assert answer.encode() not in reply
    assert reply.startswith(b"HTTP/1.1 404")


def test_no_test_message_goes_through_a_form_routed_by_the_servers_own_word() -> None:
    # The banner names a third party's domain; the server accepts only the percent hack aimed
    # at that name. Sending DATA there would mail someone else: the probe must not.
    received: list[str] = []

    async def main() -> ProbeResult:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"220 thirdparty.example ESMTP\r\n")
            await writer.drain()
            while line := await reader.readline():
                command = line.decode(errors="replace").strip()
                received.append(command)
                upper = command.upper()
                if upper.startswith(("EHLO", "HELO")):
                    writer.write(b"250 thirdparty.example\r\n")
                elif upper.startswith(("MAIL", "RSET")):
                    writer.write(b"250 2.1.0 Ok\r\n")
                elif upper.startswith("RCPT"):
                    ok = command.endswith("@thirdparty.example>")
                    writer.write(
                        b"250 2.1.5 Ok\r\n" if ok else b"554 5.7.1 Relay access denied\r\n"
                    )
                elif upper.startswith("DATA"):
                    writer.write(b"354 go ahead\r\n")
                elif upper.startswith("QUIT"):
                    writer.write(b"221 Bye\r\n")
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.110.90", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await probe_smtp(
                Target.at("127.0.110.90", port),
                ProbeContext(
                    canary=CanaryConfig(
                        domain="canary.test",
                        http_addr=("127.0.110.1", 9),
                        tls_addr=("127.0.110.1", 9),
                        smtp_addr=("127.0.110.1", 9),
                        secret=b"s",
                    ),
                    hits=MemoryHitStore(),
                    limits=Limits(reply_timeout=2, exchange_timeout=10, confirm_wait=1),
                    source="127.0.110.91",
                    confirm=True,
                ),
            )
        finally:
            server.close()

    result = asyncio.run(main())
    assert not any(c.upper().startswith("DATA") for c in received)
    assert any("@thirdparty.example>" in c for c in received)
    assert result.verdict != Verdict.CONFIRMED_OPEN
