"""The probes against real servers: Debian's Postfix, Exim, Squid, tinyproxy, Dante and microsocks
(tests/peers), each judged as the verdict table of docs/probes.md says, with a loopback canary.

Addresses: 127.0.70.1 the canary (HTTP, TLS, SMTP sink, self-check port), 127.0.70.2 the probe's
own source (a "closed" peer trusts only its own address, so the probe is an outsider), 127.0.71.x
the peers, one per test so that a peer still shutting down never meets the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fakes.peers import Peer, require_peer, start_peer
from fakes.proxy_traps import running_canary
from scanning.probes.base import (
    EvidenceLevel,
    Limits,
    ProbeContext,
    ProbeResult,
    Protocol,
    Reason,
    Target,
    Verdict,
)
from scanning.probes.canary import CanaryConfig, MemoryHitStore, canary_answer
from scanning.probes.open_proxy import probe_http_proxy, probe_socks4, probe_socks5
from scanning.probes.smtp_relay import probe_smtp
from scanning.probes.smtp_sink import SINK_BANNER_MARKER

pytestmark = pytest.mark.peers

CANARY_HOST = "127.0.70.1"
SOURCE = "127.0.70.2"
LIMITS = Limits(connect_timeout=5, reply_timeout=5, exchange_timeout=15, confirm_wait=10)
# The most a proxy probe may take (docs/probes.md, "Manners and bounds"): its exchange plus
# the bounded wait for canary hits. An SMTP probe's bound is computed per Limits in smtp().
PROXY_BOUND_MS = (LIMITS.exchange_timeout + LIMITS.reply_timeout) * 1000

Step = Callable[[Peer, CanaryConfig, MemoryHitStore], Awaitable[ProbeResult | None]]


@dataclasses.dataclass
class Run:
    results: list[ProbeResult]
    canary: CanaryConfig
    hits: MemoryHitStore
    peer: Peer
    log: str  # the peer's own logs, read before it stopped


def run_against(
    name: str, config: str, listen: str, *steps: Step, v6: bool = False, sink: bool = True
) -> Run:
    """Start the canary, then the peer routed to it, run ``steps`` in order, stop both."""
    require_peer(name)

    async def main() -> Run:
        async with running_canary(CANARY_HOST, v6=v6) as (canary, hits):
            with contextlib.ExitStack() as stack:
                # Peers start and reload synchronously; a thread keeps the canary answering.
                peer = await asyncio.to_thread(
                    stack.enter_context,
                    start_peer(
                        name,
                        config,
                        listen=listen,
                        canary_smtp=canary.smtp_addr if sink else None,
                        canary_domain=canary.domain,
                        canary_ip=CANARY_HOST,
                    ),
                )
                try:
                    results = [await step(peer, canary, hits) for step in steps]
                    log = peer.log()
                finally:
                    await asyncio.to_thread(stack.close)
                return Run([r for r in results if r is not None], canary, hits, peer, log)

    return asyncio.run(main())


async def _timed(probe: Awaitable[ProbeResult], bound_ms: float) -> ProbeResult:
    started = time.monotonic()
    result = await probe
    wall_ms = (time.monotonic() - started) * 1000
    assert result.duration_ms <= bound_ms and wall_ms <= bound_ms, (wall_ms, result.duration_ms)
    return result


def smtp(*, limits: Limits = LIMITS, **kwargs: Any) -> Step:
    # The exchange bound, the outer guard's extra second, then the separate confirmation wait.
    bound = (limits.exchange_timeout + 1 + limits.confirm_wait) * 1000

    async def step(peer: Peer, canary: CanaryConfig, hits: MemoryHitStore) -> ProbeResult:
        probe = probe_smtp(
            Target.at(peer.host, peer.port),
            ProbeContext(canary=canary, hits=hits, limits=limits, source=SOURCE, **kwargs),
        )
        return await _timed(probe, bound)

    return step


def proxy(probe: Callable[..., Awaitable[ProbeResult]], *, by_name: bool = False) -> Step:
    async def step(peer: Peer, canary: CanaryConfig, hits: MemoryHitStore) -> ProbeResult:
        if by_name:
            # The canary named by its domain, as in deployments: the proxy resolves it from its
            # own hosts file (fakes/peers.py); the probe itself never resolves anything.
            canary = dataclasses.replace(
                canary,
                http_addr=(canary.domain, canary.http_addr[1]),
                tls_addr=(canary.domain, canary.tls_addr[1]),
                smtp_addr=(canary.domain, canary.smtp_addr[1]),
                http_addr6=None,
            )
        run = probe(
            Target.at(peer.host, peer.port),
            ProbeContext(canary=canary, hits=hits, limits=LIMITS, source=SOURCE),
        )
        return await _timed(run, PROXY_BOUND_MS)

    return step


def reconfigure(config: str) -> Step:
    async def step(peer: Peer, canary: CanaryConfig, hits: MemoryHitStore) -> None:
        await asyncio.to_thread(peer.reconfigure, config)

    return step


def wait_for_log(needle: str, timeout: float = 10) -> Step:
    """Until the peer's own log says ``needle`` (it may log just after the canary saw the hit)."""

    async def step(peer: Peer, canary: CanaryConfig, hits: MemoryHitStore) -> None:
        deadline = time.monotonic() + timeout
        while needle not in peer.log() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    return step


def transcript(result: ProbeResult, direction: str | None = None) -> str:
    return "\n".join(
        line["text"]
        for line in result.transcript
        if direction is None or line["direction"] == direction
    )


def probe_tests(result: ProbeResult) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in result.details["tests"]}


def canary_tokens(run: Run, result: ProbeResult) -> list[str]:
    """The tokens of ``result`` that reached the canary (a proxy probe adds a suffix per test)."""
    base = result.token or "-"
    names = [base, *(f"{base}-{s}" for s in ("get", "tls", "s4", "s4a", "ipv4", "name", "ipv6"))]
    return [token for token in names if run.hits.recorded(token)]


def assert_redacted(result: ProbeResult, run: Run) -> None:
    """No token in the transcript, and no canary answer stored anywhere."""
    assert result.token
    lines = json.dumps(result.transcript)
    assert result.token not in lines and "[REDACTED]" in lines
    if result.protocol is Protocol.SMTP:  # an SMTP finding's variants carry the token too
        assert result.token not in json.dumps(result.details)
    everything = json.dumps(result.as_json())
    for token in canary_tokens(run, result):
        assert canary_answer(run.canary.secret, token) not in everything


def assert_never_authenticated(result: ProbeResult) -> None:
    sent = transcript(result, ">")
    assert "AUTH " not in sent and "Proxy-Authorization" not in sent


def sink_hits(run: Run, result: ProbeResult) -> list[Any]:
    return [h for h in run.hits.recorded(result.token or "") if h.kind == "smtp"]


# --- SMTP ------------------------------------------------------------------------------------


def test_it_confirms_open_postfix_once_its_queue_delivered_to_the_sink() -> None:
    run = run_against(
        "postfix", "open", "127.0.71.1", smtp(confirm=True), wait_for_log("status=sent")
    )
    (result,) = run.results
    assert result.verdict is Verdict.CONFIRMED_OPEN
    assert result.evidence_level is EvidenceLevel.STRONG
    for reason in (Reason.RCPT_2XX_EXTERNAL, Reason.DATA_ACCEPTED, Reason.DELIVERED_TO_CANARY):
        assert reason in result.reasons
    assert result.software and result.software.family == "Postfix"
    assert result.software.source == "banner"
    received = transcript(result, "<")
    assert "220 postfix-127-0-71-1.peer.test ESMTP Postfix" in received
    assert "queued as" in result.details["data"]["text"]
    # The message reached the sink from Postfix's own address (smtp_bind_address), after its
    # queue manager handed it to the smtp client: Postfix logged the delivery to our sink.
    (hit,) = sink_hits(run, result)
    assert hit.peer_ip == run.peer.host
    assert result.details["delivered"]
    assert result.details["canary_hits"][0]["peer_ip"] == hit.peer_ip
    sink = f"relay={CANARY_HOST}[{CANARY_HOST}]:{run.canary.smtp_addr[1]}"
    assert sink in run.log and "status=sent" in run.log
    assert_redacted(result, run)


def test_open_postfix_is_only_likely_open_weak_without_the_confirmation() -> None:
    run = run_against("postfix", "open", "127.0.71.2", smtp(confirm=False))
    (result,) = run.results
    # mynetworks = 0.0.0.0/0 puts permit_mynetworks before any recipient check, and with DNS off
    # nothing looks the domain up: the control nx-TOKEN@TOKEN.invalid gets "250 2.1.5 Ok" like
    # the canary recipient. docs/probes.md: a relay variant accepted *and* the .invalid control
    # accepted, nothing delivered -> likely-open-weak (a relay that checks nothing looks like a
    # catch-all by its word alone; only delivery, the confirmation step, tells them apart).
    assert result.details["control_accepted"] is True
    assert result.verdict is Verdict.LIKELY_OPEN_WEAK
    assert result.evidence_level is EvidenceLevel.WEAK
    for reason in (
        Reason.CONTROL_INVALID_ACCEPTED,
        Reason.RCPT_2XX_EXTERNAL,
        Reason.CONFIRMATION_SKIPPED,
    ):
        assert reason in result.reasons
    assert result.details["data"] is None and "DATA" not in transcript(result, ">")
    assert not sink_hits(run, result)
    assert_redacted(result, run)


def test_open_postfix_whose_message_never_arrives_is_not_confirmed() -> None:
    # Without canary_smtp the peer routes the canary domain to a dead loopback port: Postfix
    # accepts DATA ("queued as") and then can't deliver, like an accept-then-bounce server.
    short = dataclasses.replace(LIMITS, confirm_wait=2)
    run = run_against("postfix", "open", "127.0.71.3", smtp(confirm=True, limits=short), sink=False)
    (result,) = run.results
    assert result.verdict is Verdict.LIKELY_OPEN_WEAK
    assert Reason.DATA_ACCEPTED in result.reasons
    assert Reason.ACCEPTED_NOT_DELIVERED in result.reasons
    assert Reason.DELIVERED_TO_CANARY not in result.reasons
    assert result.details["delivered"] is False


def test_closed_postfix_is_closed() -> None:
    run = run_against("postfix", "closed", "127.0.71.4", smtp(confirm=True))
    (result,) = run.results
    assert result.verdict is Verdict.CLOSED
    assert result.evidence_level is EvidenceLevel.NONE
    assert Reason.RCPT_5XX_ALL in result.reasons
    assert Reason.CONTROL_INVALID_REFUSED in result.reasons
    assert result.software and result.software.family == "Postfix"
    assert "Relay access denied" in transcript(result, "<")
    variants = result.details["variants"]
    # Every sender form, then every recipient form with the first accepted sender: all refused,
    # over more than one connection (at most 8 refusals each; Postfix drops clients at 10).
    assert {v["kind"] for v in variants} == {"control", "sender", "recipient"}
    assert len(variants) == 16 and {v["outcome"] for v in variants} == {"refused"}
    assert all(v["rcpt_code"] == 554 for v in variants)
    assert result.details["connections"] >= 2 and result.details["stopped"] is None
    assert "DATA" not in transcript(result, ">") and not sink_hits(run, result)
    assert_redacted(result, run)


def test_postfix_that_relays_only_after_auth_is_closed_to_the_probe() -> None:
    run = run_against("postfix", "auth", "127.0.71.5", smtp(confirm=True))
    (result,) = run.results
    # Postfix advertises AUTH PLAIN LOGIN but refuses an unauthenticated relay with the same
    # "554 5.7.1 Relay access denied" as the closed config. docs/probes.md grants auth-required only
    # for "530/535 with an authentication text"; a 554 that never mentions authentication is a
    # permanent refusal on every variant: closed. The AUTH offer stays in the details.
    assert result.verdict is Verdict.CLOSED
    assert Reason.RCPT_5XX_ALL in result.reasons
    assert Reason.AUTH_REQUIRED_530 not in result.reasons
    assert result.details["auth_mechanisms"] == ["PLAIN", "LOGIN"]
    assert "Relay access denied" in transcript(result, "<")
    assert_never_authenticated(result)


def test_open_exim_is_confirmed_by_delivery_and_weak_without_it() -> None:
    run = run_against(
        "exim",
        "open",
        "127.0.71.6",
        smtp(confirm=False),
        smtp(confirm=True),
        smtp(confirm=False, full=True),
    )
    unconfirmed, confirmed, full = run.results
    # Exim's open config accepts every recipient, the .invalid control too (see Postfix above).
    assert unconfirmed.verdict is Verdict.LIKELY_OPEN_WEAK
    assert Reason.CONTROL_INVALID_ACCEPTED in unconfirmed.reasons
    assert confirmed.verdict is Verdict.CONFIRMED_OPEN
    assert Reason.DELIVERED_TO_CANARY in confirmed.reasons
    (hit,) = sink_hits(run, confirmed)
    assert hit.peer_ip == run.peer.host  # the canary_smtp transport's interface
    assert not sink_hits(run, unconfirmed)
    # The full list: Exim refuses domain literals and unqualified addresses with 501 but takes
    # the other forms; one accepted variant outranks any number of refusals.
    outcomes = {v["name"]: v["outcome"] for v in full.details["variants"]}
    assert outcomes["sender-null"] == outcomes["rcpt-percent-host"] == "accepted"
    assert outcomes["sender-ip-literal"] == outcomes["rcpt-percent-ip"] == "refused"
    assert full.verdict is Verdict.LIKELY_OPEN_WEAK
    for result in run.results:
        assert result.software and result.software.family == "Exim"
        assert result.software.version  # "ESMTP Exim 4.96" in the banner
        assert "ESMTP Exim" in transcript(result, "<")
        assert_redacted(result, run)


def test_closed_exim_is_closed() -> None:
    run = run_against("exim", "closed", "127.0.71.7", smtp(confirm=True))
    (result,) = run.results
    assert result.verdict is Verdict.CLOSED
    assert Reason.RCPT_5XX_ALL in result.reasons
    assert result.software and result.software.family == "Exim"
    received = transcript(result, "<")
    assert "550 relay not permitted" in received
    # Exim refuses domain literals with 501 and hangs up after too many of them; the probe
    # carries on over a new connection and still completes the session.
    assert "Too many syntax or protocol errors" in received
    assert result.details["stopped"] is None
    assert {v["outcome"] for v in result.details["variants"]} == {"refused"}
    assert not sink_hits(run, result)


def test_exim_that_wants_auth_is_auth_required() -> None:
    run = run_against("exim", "auth", "127.0.71.8", smtp(confirm=True))
    (result,) = run.results
    assert result.verdict is Verdict.AUTH_REQUIRED
    assert result.evidence_level is EvidenceLevel.NONE
    assert Reason.AUTH_REQUIRED_530 in result.reasons
    assert "530 5.7.0 Authentication required" in transcript(result, "<")
    assert result.details["auth_mechanisms"] == ["PLAIN", "LOGIN"]
    assert_never_authenticated(result)


# --- HTTP proxies ----------------------------------------------------------------------------


def test_open_squid_is_confirmed_by_ip_and_by_name() -> None:
    run = run_against(
        "squid",
        "open",
        "127.0.71.9",
        proxy(probe_http_proxy),
        proxy(probe_http_proxy, by_name=True),
    )
    for result in run.results:
        assert result.verdict is Verdict.CONFIRMED_OPEN
        assert result.evidence_level is EvidenceLevel.STRONG
        for reason in (
            Reason.CANARY_HIT,
            Reason.SECRET_RETURNED,
            Reason.CONNECT_GRANTED,
            Reason.TLS_TO_CANARY,
        ):
            assert reason in result.reasons
        assert result.software and result.software.family == "Squid"
        assert result.software.version
        tests = probe_tests(result)
        assert tests["baseline-bogus"]["status"] == 403  # Squid's own error for a .invalid host
        get, tls = tests["get"], tests["connect-tls"]
        assert get["secret_returned"] and get["exit_ip"] == run.peer.host
        assert get["anonymity"] == "transparent"  # Squid's X-Forwarded-For names our source
        assert tls["tls"] == "ok" and tls["secret_returned"]
        assert SINK_BANNER_MARKER in tests["connect-smtp"]["banner"]
        received = transcript(result, "<")
        assert "HTTP/1.1 200 Connection established" in received
        assert "(squid/" in received  # Via: 1.1 squid-127-0-71-9.peer.test (squid/5.7)
        assert_redacted(result, run)
    by_name = probe_tests(run.results[1])
    assert by_name["get"]["destination"].startswith(run.canary.domain)


def test_closed_squid_is_closed() -> None:
    run = run_against("squid", "closed", "127.0.71.10", proxy(probe_http_proxy))
    (result,) = run.results
    assert result.verdict is Verdict.CLOSED
    assert result.reasons == [Reason.PROXY_REFUSED]
    assert result.software and result.software.family == "Squid"
    tests = probe_tests(result)
    for name in ("get", "connect-tls", "connect-smtp"):
        assert tests[name]["status"] == 403 and not tests[name]["canary_hit"]
    assert "ERR_ACCESS_DENIED" in transcript(result, "<")
    assert not canary_tokens(run, result)


def test_squid_with_proxy_auth_is_auth_required() -> None:
    run = run_against("squid", "auth", "127.0.71.11", proxy(probe_http_proxy))
    (result,) = run.results
    assert result.verdict is Verdict.AUTH_REQUIRED
    assert result.reasons == [Reason.PROXY_AUTH_REQUIRED]
    tests = probe_tests(result)
    for name in ("get", "connect-tls", "connect-smtp"):
        assert tests[name]["status"] == 407 and tests[name]["auth_required"]
    received = transcript(result, "<")
    assert "407 Proxy Authentication Required" in received
    assert 'Proxy-Authenticate: Basic realm="peer-under-test"' in received
    assert_never_authenticated(result)


def test_open_tinyproxy_is_confirmed_by_ip_and_by_name() -> None:
    run = run_against(
        "tinyproxy",
        "open",
        "127.0.71.12",
        proxy(probe_http_proxy),
        proxy(probe_http_proxy, by_name=True),
    )
    for result in run.results:
        assert result.verdict is Verdict.CONFIRMED_OPEN
        assert Reason.SECRET_RETURNED in result.reasons and Reason.TLS_TO_CANARY in result.reasons
        assert result.software and result.software.family == "tinyproxy"
        tests = probe_tests(result)
        assert tests["get"]["exit_ip"] == run.peer.host
        assert tests["get"]["anonymity"] == "anonymous"  # a Via header, no client address
        assert SINK_BANNER_MARKER in tests["connect-smtp"]["banner"]
        assert "Proxy-agent: tinyproxy/" in transcript(result, "<")
        assert_redacted(result, run)


def test_closed_tinyproxy_is_closed() -> None:
    run = run_against("tinyproxy", "closed", "127.0.71.13", proxy(probe_http_proxy))
    (result,) = run.results
    assert result.verdict is Verdict.CLOSED
    assert result.reasons == [Reason.PROXY_REFUSED]
    assert result.software and result.software.family == "tinyproxy"
    assert "403 Access denied" in transcript(result, "<")


# --- SOCKS -----------------------------------------------------------------------------------


def test_open_dante_is_confirmed_over_socks5_and_socks4() -> None:
    run = run_against(
        "dante", "open", "127.0.71.14", proxy(probe_socks5), proxy(probe_socks4), v6=True
    )
    socks5, socks4 = run.results
    for result in run.results:
        assert result.verdict is Verdict.CONFIRMED_OPEN
        assert result.evidence_level is EvidenceLevel.STRONG
        for reason in (Reason.CANARY_HIT, Reason.SECRET_RETURNED, Reason.SOCKS_GRANTED):
            assert reason in result.reasons
        # A SOCKS handshake names no product; no family is guessed from behaviour alone.
        assert result.software is None
        assert result.details["exit_ips"] == [run.peer.host]
        assert_redacted(result, run)
    tests5 = probe_tests(socks5)
    assert tests5["socks5-ipv4"]["secret_returned"] and tests5["socks5-name"]["secret_returned"]
    # Dante's external interface is IPv4 only: "address type not supported" for ::1.
    assert tests5["socks5-ipv6"]["status"] == 8 and not tests5["socks5-ipv6"]["granted"]
    assert "05 00" in transcript(socks5, "<")
    assert probe_tests(socks4)["socks4"]["secret_returned"]


def test_dante_that_wants_a_password_is_auth_required() -> None:
    run = run_against("dante", "auth", "127.0.71.15", proxy(probe_socks5))
    (result,) = run.results
    assert result.verdict is Verdict.AUTH_REQUIRED
    assert result.reasons == [Reason.PROXY_AUTH_REQUIRED]
    assert transcript(result, "<") == "05 ff"  # no acceptable method: only 02 would do
    assert result.duration_ms < 500  # no wait for canary hits after a refused greeting


def test_closed_dante_drops_the_probe_which_is_inconclusive() -> None:
    # Dante's client block resets the connection before any SOCKS reply. docs/probes.md puts
    # "resets" under inconclusive for proxies (nothing was refused in the protocol), so the
    # fixed Dante is not "closed", but it is no finding either.
    run = run_against("dante", "closed", "127.0.71.16", proxy(probe_socks5))
    (result,) = run.results
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.reasons == [Reason.CONNECTION_RESET]


def test_open_microsocks_is_confirmed() -> None:
    run = run_against("microsocks", "open", "127.0.71.17", proxy(probe_socks5), v6=True)
    (result,) = run.results
    assert result.verdict is Verdict.CONFIRMED_OPEN
    assert Reason.SECRET_RETURNED in result.reasons and Reason.SOCKS_GRANTED in result.reasons
    assert result.software is None
    tests = probe_tests(result)
    # microsocks can't restrict destinations: IPv4, name and IPv6 (::1) all reach the canary.
    assert all(tests[n]["secret_returned"] for n in ("socks5-ipv4", "socks5-name", "socks5-ipv6"))
    assert tests["socks5-ipv4"]["exit_ip"] == run.peer.host  # -b binds outgoing connections
    assert_redacted(result, run)


def test_microsocks_with_a_password_is_auth_required() -> None:
    run = run_against("microsocks", "auth", "127.0.71.18", proxy(probe_socks5))
    (result,) = run.results
    assert result.verdict is Verdict.AUTH_REQUIRED
    assert result.reasons == [Reason.PROXY_AUTH_REQUIRED]
    assert transcript(result, "<") == "05 ff"
    assert result.duration_ms < 500


# --- the fix, as the remediation guides describe it ------------------------------------------


def test_fixing_postfix_turns_confirmed_open_into_closed() -> None:
    # main.cf.open and main.cf.closed differ in one line: "mynetworks = 0.0.0.0/0" becomes
    # "mynetworks = <own address>/32" (smtpd_relay_restrictions stay "permit_mynetworks,
    # reject_unauth_destination"); then "postfix reload".
    run = run_against(
        "postfix",
        "open",
        "127.0.71.19",
        smtp(confirm=True),
        reconfigure("closed"),
        smtp(confirm=True),
    )
    before, after = run.results
    assert before.verdict is Verdict.CONFIRMED_OPEN
    assert after.verdict is Verdict.CLOSED
    assert "Relay access denied" in transcript(after, "<")
    assert not sink_hits(run, after)


def test_fixing_squid_turns_confirmed_open_into_closed() -> None:
    # squid.open.conf's "http_access allow all" becomes "acl own_clients src <own address>/32",
    # "http_access allow own_clients", "http_access deny all"; then "squid -k reconfigure".
    run = run_against(
        "squid",
        "open",
        "127.0.71.20",
        proxy(probe_http_proxy),
        reconfigure("closed"),
        proxy(probe_http_proxy),
    )
    before, after = run.results
    assert before.verdict is Verdict.CONFIRMED_OPEN
    assert after.verdict is Verdict.CLOSED
    assert after.reasons == [Reason.PROXY_REFUSED]
    assert not any(t["canary_hit"] for t in after.details["tests"])
