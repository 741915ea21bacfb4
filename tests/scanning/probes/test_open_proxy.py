"""Open proxy probes against the trap servers of fakes/proxy_traps.py (loopback only)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import Awaitable, Callable

from fakes.proxy_traps import run_trap, running_canary
from scanning.probes.base import (
    EvidenceLevel,
    Limits,
    ProbeContext,
    ProbeResult,
    Reason,
    Target,
    Verdict,
)
from scanning.probes.canary import CanaryConfig, canary_answer
from scanning.probes.open_proxy import probe_http_proxy, probe_socks4, probe_socks5, selfcheck
from scanning.probes.smtp_sink import SINK_BANNER_MARKER

TRAP_HOST = "127.0.31.1"
SOURCE = "127.0.32.1"
LIMITS = Limits(connect_timeout=1.0, reply_timeout=0.5, exchange_timeout=5.0)
Probe = Callable[..., Awaitable[ProbeResult]]


def _run(kind: str, probe: Probe, limits: Limits = LIMITS) -> tuple[ProbeResult, CanaryConfig]:
    with run_trap(kind, TRAP_HOST) as (host, port):

        async def go() -> tuple[ProbeResult, CanaryConfig]:
            async with running_canary() as (canary, hits):
                result = await probe(
                    Target.at(host, port),
                    ProbeContext(canary=canary, hits=hits, limits=limits, source=SOURCE),
                )
                return result, canary

        return asyncio.run(go())


def _tests(result: ProbeResult) -> dict[str, dict]:
    return {t["name"]: t for t in result.details["tests"]}


def _assert_redacted(result: ProbeResult, canary: CanaryConfig) -> None:
    transcript = json.dumps(result.transcript)
    everything = json.dumps(result.as_json())
    assert result.token and result.token not in transcript
    for name, test in _tests(result).items():
        for hit in test["canary_hits"]:
            token = hit["request"].split("/c/")[1].split()[0]
            answer = canary_answer(canary.secret, token)
            assert answer not in everything, name  # the secret is never stored, anywhere
            assert token not in transcript


def test_it_confirms_an_open_http_proxy() -> None:
    result, canary = _run("open_http", probe_http_proxy)
    assert result.verdict is Verdict.CONFIRMED_OPEN
    assert result.evidence_level is EvidenceLevel.STRONG
    for reason in (Reason.CANARY_HIT, Reason.SECRET_RETURNED, Reason.TLS_TO_CANARY):
        assert reason in result.reasons
    tests = _tests(result)
    assert tests["get"]["secret_returned"] and tests["get"]["exit_ip"] == TRAP_HOST
    assert tests["get"]["anonymity"] == "transparent"  # X-Forwarded-For carried our source
    assert tests["connect-tls"]["tls"] == "ok" and tests["connect-tls"]["secret_returned"]
    assert tests["connect-tls"]["canary_hits"][0]["kind"] == "tls"
    assert SINK_BANNER_MARKER in tests["connect-smtp"]["banner"]
    assert sorted(result.details["reachable_destinations"]) == sorted(
        f"{h}:{p}" for h, p in (canary.http_addr, canary.tls_addr, canary.smtp_addr)
    )
    assert result.details["exit_ips"] == [TRAP_HOST]
    assert result.details["probe_source_ips"] == [SOURCE]
    assert tests["baseline-bogus"]["status"] == 502
    transcript = json.dumps(result.transcript)
    assert "[REDACTED]" in transcript and "CONNECT " in transcript
    _assert_redacted(result, canary)
    assert result.duration_ms < 2000


def test_it_grades_an_elite_proxy() -> None:
    result, _ = _run("open_http_elite", probe_http_proxy)
    assert result.verdict is Verdict.CONFIRMED_OPEN
    assert result.details["anonymity"] == "elite"


def test_it_calls_a_connect_grant_without_canary_weak() -> None:
    result, canary = _run("connect_only", probe_http_proxy)
    assert result.verdict is Verdict.LIKELY_OPEN_WEAK
    assert result.evidence_level is EvidenceLevel.WEAK
    assert result.reasons == [Reason.CONNECT_GRANTED]
    tests = _tests(result)
    assert tests["connect-tls"]["granted"] and tests["connect-tls"]["tls"].startswith("failed")
    assert not any(t["canary_hit"] for t in tests.values())
    assert result.details["reachable_destinations"] == []
    _assert_redacted(result, canary)
    assert result.duration_ms < 4000


def test_it_calls_a_body_stripping_proxy_likely_open() -> None:
    result, canary = _run("strip_body", probe_http_proxy)
    assert result.verdict is Verdict.LIKELY_OPEN
    assert result.evidence_level is EvidenceLevel.MEDIUM
    assert result.reasons == [Reason.CANARY_HIT, Reason.SECRET_MISSING]
    assert _tests(result)["get"]["canary_hit"] and not _tests(result)["get"]["secret_returned"]
    _assert_redacted(result, canary)
    assert result.duration_ms < 2000


def test_it_reports_proxy_authentication() -> None:
    result, _ = _run("auth_407", probe_http_proxy)
    assert result.verdict is Verdict.AUTH_REQUIRED
    assert result.reasons == [Reason.PROXY_AUTH_REQUIRED]
    assert result.software is not None and result.software.family == "tinyproxy"
    assert result.software.version == "1.11.1"
    assert result.duration_ms < 1000


def test_it_closes_a_refusing_proxy_and_names_squid() -> None:
    result, _ = _run("refuse_403", probe_http_proxy)
    assert result.verdict is Verdict.CLOSED
    assert result.reasons == [Reason.PROXY_REFUSED]
    assert result.software is not None
    assert (result.software.family, result.software.version) == ("Squid", "6.10")
    assert {t["status"] for t in result.details["tests"]} == {403}


def test_it_does_not_call_a_captive_portal_open() -> None:
    # nmap's http-open-proxy trusts a 200 here; the bogus-host baseline shows it's no proxy.
    result, _ = _run("captive", probe_http_proxy)
    assert result.verdict is Verdict.CLOSED
    assert Reason.NOT_A_PROXY in result.reasons
    assert Reason.SAME_PAGE_FOR_BOGUS_HOST in result.reasons
    tests = _tests(result)
    assert tests["baseline-root"]["body_sha256"] == tests["baseline-bogus"]["body_sha256"]
    assert tests["connect-tls"]["granted"]  # it "granted" CONNECT too, and still isn't open


def test_it_ends_a_tarpit_inconclusive_in_time() -> None:
    result, _ = _run("tarpit", probe_http_proxy)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.reasons == [Reason.TIMEOUT]
    assert result.transport_status == "io-timeout"
    assert result.duration_ms < LIMITS.reply_timeout * 1000 + 500


def test_it_ends_a_slow_drip_inconclusive_in_time() -> None:
    result, _ = _run("dripping", probe_http_proxy)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.duration_ms < LIMITS.reply_timeout * 1000 + 500


def test_it_calls_binary_garbage_not_applicable() -> None:
    result, _ = _run("garbage", probe_http_proxy)
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert result.reasons == [Reason.GARBAGE_REPLY]
    assert result.transport_status == "protocol-error"
    assert result.details["bytes_received"] <= LIMITS.host_bytes
    assert result.duration_ms < 1000


def test_it_stops_at_the_host_byte_budget() -> None:
    result, _ = _run("refuse_403", probe_http_proxy, dataclasses.replace(LIMITS, host_bytes=400))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert Reason.OVERSIZED_REPLY in result.reasons
    assert result.details["bytes_received"] <= 400 + 4096


def test_it_keeps_to_the_exchange_bound() -> None:
    limits = dataclasses.replace(LIMITS, exchange_timeout=0.8)
    result, _ = _run("connect_only", probe_http_proxy, limits)
    assert result.details.get("exchange_timed_out")
    assert result.duration_ms < 800 + 500 + 300  # exchange, hit lookup grace, slack


def test_it_closes_a_refused_port() -> None:
    with socket.socket() as sock:
        sock.bind((TRAP_HOST, 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused

        async def go() -> ProbeResult:
            async with running_canary(v6=False) as (canary, hits):
                return await probe_http_proxy(
                    Target.at(TRAP_HOST, port),
                    ProbeContext(canary=canary, hits=hits, limits=LIMITS, source=SOURCE),
                )

        result = asyncio.run(go())
    assert result.verdict is Verdict.CLOSED
    assert result.reasons == [Reason.CONNECT_FAILED]
    assert result.transport_status == "connection-refused"


def test_it_confirms_open_socks4_and_socks4a() -> None:
    result, canary = _run("socks4", probe_socks4)
    assert result.verdict is Verdict.CONFIRMED_OPEN
    assert result.protocol == "socks4"
    assert Reason.SOCKS_GRANTED in result.reasons
    tests = _tests(result)
    assert set(tests) == {"socks4", "socks4a"}
    assert all(t["secret_returned"] and t["exit_ip"] == TRAP_HOST for t in tests.values())
    assert "SOCKS4A CONNECT" in json.dumps(result.transcript)
    _assert_redacted(result, canary)
    assert result.duration_ms < 1000


def test_it_confirms_open_socks5_by_ipv4_name_and_ipv6() -> None:
    result, canary = _run("socks5", probe_socks5)
    assert result.verdict is Verdict.CONFIRMED_OPEN
    assert result.protocol == "socks5"
    tests = _tests(result)
    assert set(tests) == {"socks5-ipv4", "socks5-name", "socks5-ipv6"}
    assert all(t["secret_returned"] for t in tests.values())
    assert tests["socks5-ipv6"]["exit_ip"] == "::1"
    assert tests["socks5-ipv6"]["destination"].startswith("[::1]:")
    _assert_redacted(result, canary)
    assert result.duration_ms < 1000


def test_it_reports_socks5_authentication() -> None:
    for kind in ("socks5_auth", "socks5_auth02"):  # 0xFF (RFC) and servers that insist on 0x02
        result, _ = _run(kind, probe_socks5)
        assert result.verdict is Verdict.AUTH_REQUIRED, kind
        assert result.reasons == [Reason.PROXY_AUTH_REQUIRED]
        assert "05 01 00" in json.dumps(result.transcript)  # only "no authentication" offered


def test_it_calls_a_socks_grant_without_canary_weak() -> None:
    for probe in (probe_socks4, probe_socks5):
        result, _ = _run("socks_grant_all", probe)
        assert result.verdict is Verdict.LIKELY_OPEN_WEAK
        assert result.reasons == [Reason.SOCKS_GRANTED]
        assert result.duration_ms < 4000


def test_socks_probes_end_hostile_peers_in_time() -> None:
    garbage, _ = _run("garbage", probe_socks5)
    assert garbage.verdict is Verdict.NOT_APPLICABLE
    tarpit, _ = _run("tarpit", probe_socks4)
    assert tarpit.verdict is Verdict.INCONCLUSIVE and tarpit.reasons == [Reason.TIMEOUT]
    assert tarpit.duration_ms < LIMITS.reply_timeout * 1000 + 500


def test_socks_probe_does_not_call_an_http_proxy_open() -> None:
    result, _ = _run("open_http", probe_socks5)
    assert result.verdict is Verdict.INCONCLUSIVE


def test_selfcheck_passes_on_a_clean_path() -> None:
    async def go() -> bool:
        async with running_canary(v6=False) as (canary, hits):
            return await selfcheck(
                ProbeContext(canary=canary, hits=hits, limits=LIMITS, source=SOURCE)
            )

    assert asyncio.run(go()) is True


def test_selfcheck_fails_when_something_intercepts() -> None:
    # The interceptor stands in for a box on the scanner's side that answers for everyone.
    with run_trap("interceptor", TRAP_HOST) as addr:

        async def go() -> bool:
            async with running_canary(v6=False) as (canary, hits):
                canary = dataclasses.replace(canary, selfcheck_addr=addr)
                return await selfcheck(
                    ProbeContext(canary=canary, hits=hits, limits=LIMITS, source=SOURCE)
                )

        assert asyncio.run(go()) is False
