"""A proxy finding judged before the canary logged its request is re-judged when the hit
arrives (scanning.probes.proxy_judgement.rejudge_with_hits), never downgraded, never guessed."""

from __future__ import annotations

import asyncio

from fakes.proxy_traps import run_trap, running_canary
from scanning.probes.base import Limits, ProbeContext, ProbeResult, Reason, Target, Verdict
from scanning.probes.canary import CanaryHit
from scanning.probes.open_proxy import probe_socks5
from scanning.probes.proxy_judgement import awaited_tokens, awaits_canary, rejudge_with_hits

TRAP_HOST = "127.0.31.1"
LIMITS = Limits(connect_timeout=1.0, reply_timeout=0.5, exchange_timeout=5.0)


def _socks5(kind: str, *, canary_records: bool = True) -> ProbeResult:
    """probe_socks5 against a trap; with canary_records=False the canary answers (and hands
    back its secret) but its log stays empty, as a deployed canary's may for a moment."""
    with run_trap(kind, TRAP_HOST) as (host, port):

        async def go() -> ProbeResult:
            async with running_canary() as (canary, hits):
                if not canary_records:

                    async def dropped(hit: CanaryHit) -> None:
                        return None

                    hits.record = dropped  # type: ignore[method-assign]
                ctx = ProbeContext(canary=canary, hits=hits, limits=LIMITS)
                return await probe_socks5(Target.at(host, port), ctx)

        return asyncio.run(go())


def _hit(token: str, peer: str = TRAP_HOST) -> CanaryHit:
    return CanaryHit(token=token, kind="http", peer_ip=peer, headers={}, detail="GET /c/… HTTP/1.1")


def test_a_grant_that_reaches_the_canary_late_becomes_likely_open() -> None:
    result = _socks5("socks_grant_all")
    assert result.verdict is Verdict.LIKELY_OPEN_WEAK  # granted, nothing seen by the canary
    assert awaits_canary(result)
    waiting = awaited_tokens(result)
    assert f"{result.token}-ipv4" in waiting and all(
        t.startswith(f"{result.token}-") for t in waiting
    )

    later = rejudge_with_hits(result, [_hit(f"{result.token}-ipv4", "127.0.55.5")])
    assert later.verdict is Verdict.LIKELY_OPEN  # a hit without the secret handed back
    assert Reason.CANARY_HIT in later.reasons and Reason.SECRET_MISSING in later.reasons
    tests = {t["name"]: t for t in later.details["tests"]}
    assert tests["socks5-ipv4"]["canary_hit"] and tests["socks5-ipv4"]["exit_ip"] == "127.0.55.5"
    assert not tests["socks5-name"]["canary_hit"]  # only the test whose token came
    assert later.details["exit_ips"] == ["127.0.55.5"]
    assert later.details["late_canary_hit"] is True
    assert "after the session" in later.transcript[-1]["text"]
    # The stored result is not touched: the caller stores the new one.
    assert result.verdict is Verdict.LIKELY_OPEN_WEAK
    assert not any(t["canary_hit"] for t in result.details["tests"])


def test_a_returned_secret_with_the_hit_logged_late_becomes_confirmed() -> None:
    result = _socks5("socks5", canary_records=False)
    assert result.verdict is Verdict.LIKELY_OPEN_WEAK  # the secret alone is not enough
    assert awaits_canary(result)
    hits = [_hit(token) for token in awaited_tokens(result)]
    later = rejudge_with_hits(result, hits)
    assert later.verdict is Verdict.CONFIRMED_OPEN
    assert {Reason.CANARY_HIT, Reason.SECRET_RETURNED} <= set(later.reasons)
    assert not awaits_canary(later)  # confirmed is final


def test_hits_for_other_tokens_change_nothing() -> None:
    result = _socks5("socks_grant_all")
    stranger = rejudge_with_hits(result, [_hit("0" * 32 + "-ipv4"), _hit(f"{result.token}x-ipv4")])
    assert stranger is result


def test_settled_verdicts_do_not_wait_for_the_canary() -> None:
    confirmed = _socks5("socks5")
    assert confirmed.verdict is Verdict.CONFIRMED_OPEN and not awaits_canary(confirmed)
    auth = _socks5("socks5_auth")
    assert auth.verdict is Verdict.AUTH_REQUIRED and not awaits_canary(auth)
    assert awaited_tokens(auth) == []
