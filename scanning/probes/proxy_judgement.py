"""What the proxy probes' tests mean: per-test verdicts, the probe's verdict, and anonymity.

A handshake proves nothing: a test is `confirmed-open` only when the canary logged its token and
the proxy handed back HMAC(secret, token), which only the canary knows (docs/probes.md).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from scanning.probes.base import (
    VERDICT_PRECEDENCE,
    ProbeResult,
    Protocol,
    Reason,
    TransportStatus,
    Verdict,
    strongest,
)
from scanning.probes.canary import CanaryHit
from scanning.probes.proxy_wire import Fail

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


@dataclass
class ProxyTest:
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
            # The test's token is the probe's token, "-", this suffix: a late hit finds its test.
            "token_suffix": self.token.rsplit("-", 1)[1]
            if self.token and "-" in self.token
            else None,
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


def has_proxy_headers(headers: dict[str, str]) -> bool:
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
    if has_proxy_headers(hit_headers) or any(h in lower for h in CLIENT_ADDRESS_HEADERS):
        return "anonymous"
    return "elite"


def is_2xx(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def dedupe(reasons: list[Reason]) -> list[Reason]:
    seen: list[Reason] = []
    for reason in reasons:
        if reason not in seen:
            seen.append(reason)
    return seen


def test_verdict(
    test: ProxyTest, protocol: Protocol, not_proxy: bool
) -> tuple[Verdict, list[Reason]]:
    grant = Reason.SOCKS_GRANTED if protocol is not Protocol.HTTP else Reason.CONNECT_GRANTED
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
    elif is_2xx(test.status) and has_proxy_headers(test.headers):
        weak.append(Reason.PROXY_HEADERS_2XX)
    if weak:
        if not_proxy:
            return Verdict.CLOSED, [Reason.NOT_A_PROXY]
        return Verdict.LIKELY_OPEN_WEAK, weak
    if test.auth_required:
        return Verdict.AUTH_REQUIRED, [Reason.PROXY_AUTH_REQUIRED]
    if test.error:
        return Verdict.INCONCLUSIVE, [test.error]
    if is_2xx(test.status):
        if not_proxy:
            return Verdict.CLOSED, [Reason.NOT_A_PROXY]
        return Verdict.INCONCLUSIVE, [Reason.REPLY_2XX_NO_CANARY]
    return Verdict.CLOSED, [Reason.PROXY_REFUSED]


def judge(
    protocol: Protocol,
    tests: list[ProxyTest],
    *,
    fatal: Fail | None,
    exchange_timed_out: bool,
) -> tuple[Verdict, list[Reason], TransportStatus]:
    """The probe's verdict from its tests (baselines first), the error that ended it, if any,
    and whether its time ran out."""
    judged = [t for t in tests if not t.name.startswith("baseline") and t.handshake != "not-run"]
    if fatal:  # the failed first request is the fatal error, not a judged test
        judged = [t for t in judged if t.handshake != "failed" or t is not tests[0]]
    not_proxy = False
    reasons: list[Reason] = []
    baseline = {t.name: t for t in tests if t.name.startswith("baseline")}
    root, bogus = baseline.get("baseline-root"), baseline.get("baseline-bogus")
    if bogus and bogus.status is not None and bogus.status < 400:
        # No forward proxy can fetch a .invalid host: whatever answered 2xx/3xx is not one.
        not_proxy = True
        reasons.append(Reason.NOT_A_PROXY)
        if root and root.status == bogus.status and root.body_sha256 == bogus.body_sha256:
            reasons.append(Reason.SAME_PAGE_FOR_BOGUS_HOST)
    if fatal and not judged:
        # A refused port is closed; a port that answered and then refused is only in the way.
        answered = any(t.handshake not in ("not-run", "failed") for t in tests)
        if fatal.status is TransportStatus.CONNECTION_REFUSED and not answered:
            return Verdict.CLOSED, [Reason.CONNECT_FAILED], fatal.status
        if fatal.reason is Reason.GARBAGE_REPLY:
            return Verdict.NOT_APPLICABLE, [Reason.GARBAGE_REPLY], fatal.status
        extra = [Reason.CONNECT_FAILED] if fatal.note in ("connect", "refused") else []
        return Verdict.INCONCLUSIVE, [*extra, fatal.reason], fatal.status
    verdicts: list[Verdict] = []
    per_test: list[tuple[Verdict, list[Reason]]] = []
    for test in judged:
        verdict, why = test_verdict(test, protocol, not_proxy)
        verdicts.append(verdict)
        per_test.append((verdict, why))
    if exchange_timed_out:
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


def request_succeeded(test: dict[str, Any]) -> bool:
    return bool(
        test["granted"] or test["secret_returned"] or test["canary_hit"] or is_2xx(test["status"])
    )


# --- late hits: a finding judged before the canary logged its request ----------------------

# Verdicts a canary hit could still raise (a closed "not a proxy" or an auth demand cannot).
_UPGRADABLE = frozenset({Verdict.INCONCLUSIVE, Verdict.LIKELY_OPEN_WEAK, Verdict.LIKELY_OPEN})


def _asked_canary_unanswered(test: dict[str, Any]) -> bool:
    """The test sent its token towards the canary and no hit was seen (yet)."""
    if not test.get("token_suffix") or test.get("canary_hit"):
        return False
    return bool(
        test.get("granted")
        or test.get("secret_returned")
        or is_2xx(test.get("status"))
        or test.get("error") == str(Reason.TIMEOUT)
    )


def awaits_canary(result: ProbeResult) -> bool:
    """A proxy result a later canary hit could upgrade: it is not confirmed, and one of its
    tests sent a request to the canary that the canary had not logged when it was judged (a
    deployed canary records after it answers; a slow proxy forwards after our reply timeout)."""
    if result.protocol is Protocol.SMTP or not result.token:
        return False
    if result.verdict not in _UPGRADABLE:
        return False
    return any(_asked_canary_unanswered(t) for t in result.details.get("tests") or [])


def awaited_tokens(result: ProbeResult) -> list[str]:
    """The canary tokens of the tests `awaits_canary` is waiting for."""
    if not awaits_canary(result):
        return []
    tests = result.details.get("tests") or []
    return [f"{result.token}-{t['token_suffix']}" for t in tests if _asked_canary_unanswered(t)]


def rejudge_with_hits(result: ProbeResult, hits: list[CanaryHit]) -> ProbeResult:
    """The same proxy result, judged again now that the canary logged `hits` (any of the probe's
    tests' tokens). Hits only add evidence, so the verdict can only rise: each test that gained
    a hit is judged by the probe's own rule (`test_verdict`), and the strongest verdict wins."""
    by_token: dict[str, list[CanaryHit]] = {}
    for hit in hits:
        by_token.setdefault(hit.token, []).append(hit)
    probe_ips = set(result.details.get("probe_source_ips") or [])
    tests = [dict(t) for t in result.details.get("tests") or []]
    gained: list[tuple[Verdict, list[Reason]]] = []
    for entry in tests:
        suffix = entry.get("token_suffix")
        new = by_token.get(f"{result.token}-{suffix}", []) if suffix else []
        if not new or entry.get("canary_hit"):
            continue
        test = ProxyTest(
            name=str(entry.get("name", "")),
            destination=str(entry.get("destination", "")),
            token=f"{result.token}-{suffix}",
            tunnel=bool(entry.get("granted")) or entry.get("name", "").startswith("socks"),
            status=entry.get("status"),
            granted=bool(entry.get("granted")),
            secret_returned=bool(entry.get("secret_returned")),
            tls=entry.get("tls"),
            hits=new,
        )
        if test.tunnel or not any(h.kind == "http" for h in new):
            test.anonymity = "elite"  # a tunnel carries only our own request headers
        else:
            test.anonymity = anonymity(new[0].headers, probe_ips)
        gained.append(test_verdict(test, result.protocol, not_proxy=False))
        entry["canary_hit"] = True
        entry["canary_hits"] = [
            {"kind": h.kind, "exit_ip": h.peer_ip, "headers": h.headers, "request": h.detail}
            for h in new
        ]
        entry["exit_ip"] = sorted({h.peer_ip for h in new})[0]
        entry["anonymity"] = test.anonymity
    if not gained:
        return result
    best = strongest([result.verdict, *(v for v, _ in gained)])
    if VERDICT_PRECEDENCE[best] <= VERDICT_PRECEDENCE[result.verdict]:
        reasons = list(result.reasons)
    else:
        reasons = dedupe([r for v, why in gained if v is best for r in why])
    details = dict(result.details)
    details["tests"] = tests
    details["reachable_destinations"] = sorted(
        {
            *details.get("reachable_destinations", []),
            *(t["destination"] for t in tests if t.get("canary_hit")),
        }
    )
    details["exit_ips"] = sorted({*details.get("exit_ips", []), *(h.peer_ip for h in hits)})
    levels = [t["anonymity"] for t in tests if t.get("anonymity")]
    order = ["transparent", "anonymous", "elite"]
    details["anonymity"] = min(levels, key=order.index) if levels else None
    details["late_canary_hit"] = True
    note = {
        "t_ms": result.duration_ms,
        "direction": "!",
        "text": f"canary logged the probe's request ({len(hits)} hit(s)) after the session: "
        f"{result.verdict} -> {best}",
    }
    return dataclasses.replace(
        result,
        verdict=best,
        reasons=reasons,
        details=details,
        transcript=[*result.transcript, note],
    )
