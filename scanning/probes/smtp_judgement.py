"""What an SMTP probe's observations mean: reasons, the verdict and the finding (docs/probes.md).

The conversation (scanning.probes.smtp_relay) records what the server said in an
`SmtpObservations`; this module turns that record into a Verdict, its reasons and a ProbeResult,
and upgrades a result once the canary sink receives the test message after the session.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from scanning.probes.base import (
    ProbeResult,
    Protocol,
    Reason,
    Target,
    Transcript,
    Transport,
    TransportStatus,
    Verdict,
)
from scanning.probes.canary import CanaryHit
from scanning.probes.smtp_fingerprint import smtp_software
from scanning.probes.smtp_framing import Stop

DEFAULT_RETRY_AFTER = 300  # docs/probes.md: retry a temporarily refused pair after >= 5 minutes

_TLS_TEXT = re.compile(r"STARTTLS|\bTLS\b|\bSSL\b|encrypt", re.I)
_AUTH_TEXT = re.compile(r"auth|login|credential", re.I)
_RETRY_SECONDS = re.compile(r"(\d{1,6})\s*(s\b|sec|second|min)", re.I)


@dataclass
class Variant:
    """One MAIL FROM / RCPT TO pair tried, and how the server answered it."""

    name: str
    kind: str  # control, sender, recipient
    mail_from: str
    rcpt_to: str
    mail_code: int | None = None
    mail_text: str | None = None
    rcpt_code: int | None = None
    rcpt_text: str | None = None
    outcome: str = "untested"  # accepted, refused, temp, auth, tls-required, error, untested


@dataclass
class SmtpObservations:
    """Everything one probe saw, kept for the judgement."""

    token: str
    confirm: bool  # was the test message to be sent at all?
    transport: Transport
    reasons: list[Reason] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    banner: str | None = None
    hostname: str | None = None
    ehlo: list[str] | None = None
    tls_facts: dict[str, Any] | None = None
    variants: list[Variant] = field(default_factory=list)
    stop: Stop | None = None
    not_smtp: bool = False
    completed: bool = False
    temp_retry: int | None = None
    data: dict[str, Any] | None = None
    data_accepted: bool = False
    hits: list[CanaryHit] = field(default_factory=list)
    connections: int = 0

    def reason(self, reason: Reason) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)

    def note_retry(self, text: str) -> None:
        """A temporary refusal: remember when it says to come back (or the default)."""
        m = _RETRY_SECONDS.search(text)
        scale = 60 if m and m.group(2).lower() == "min" else 1
        seconds = max(int(m.group(1)) * scale, 1) if m else DEFAULT_RETRY_AFTER
        self.temp_retry = max(self.temp_retry or 0, seconds)


def variant_outcome(obs: SmtpObservations, code: int, text: str) -> str:
    """What a reply to MAIL or RCPT says about the pair, with the reason it earns."""
    if 200 <= code < 300:
        return "accepted"
    if code == 530 and _TLS_TEXT.search(text) and not _AUTH_TEXT.search(text):
        obs.reason(Reason.TLS_REQUIRED)
        return "tls-required"
    auth_code = code in (530, 535) or "5.7.57" in text
    if auth_code and _AUTH_TEXT.search(text):
        obs.reason(Reason.AUTH_REQUIRED_530)
        return "auth"
    if 400 <= code < 500:
        obs.reason(Reason.TEMP_REJECT_4XX)
        obs.note_retry(text)
        return "temp"
    if 500 <= code < 600:
        return "refused"
    return "error"


def judge(obs: SmtpObservations) -> tuple[Verdict, TransportStatus]:
    status = obs.stop.status if obs.stop else TransportStatus.SUCCESS
    if obs.stop:
        obs.reason(obs.stop.reason)
    if obs.not_smtp:
        return Verdict.NOT_APPLICABLE, status
    control = next((v for v in obs.variants if v.kind == "control"), None)
    control_accepted: bool | None = None
    if control is not None and control.outcome == "accepted":
        control_accepted = True
        obs.reason(Reason.CONTROL_INVALID_ACCEPTED)
    elif control is not None and control.rcpt_code and 500 <= control.rcpt_code < 600:
        control_accepted = False
        obs.reason(Reason.CONTROL_INVALID_REFUSED)
    obs.details["control_accepted"] = control_accepted
    tested = [v for v in obs.variants if v.kind != "control" and v.outcome != "untested"]
    accepted = [v for v in tested if v.outcome == "accepted"]
    if accepted:
        obs.reason(Reason.RCPT_2XX_EXTERNAL)
        if obs.hits:
            obs.reason(Reason.DELIVERED_TO_CANARY)
            return Verdict.CONFIRMED_OPEN, status
        if obs.data_accepted:
            obs.reason(Reason.ACCEPTED_NOT_DELIVERED)
        if not obs.confirm:
            obs.reason(Reason.CONFIRMATION_SKIPPED)
        if control_accepted is False:
            return Verdict.LIKELY_OPEN, status
        return Verdict.LIKELY_OPEN_WEAK, status
    outcomes = {v.outcome for v in tested}
    if obs.stop or not obs.completed or outcomes - {"refused", "auth"} or not tested:
        if not obs.completed:
            obs.reason(Reason.SMTP_SESSION_INCOMPLETE)
        return Verdict.INCONCLUSIVE, status
    if "auth" in outcomes:
        return Verdict.AUTH_REQUIRED, status
    obs.reason(Reason.RCPT_5XX_ALL)
    return Verdict.CLOSED, status


def finding(
    target: Target,
    obs: SmtpObservations,
    transcript: Transcript,
    *,
    replies: list[str],
    bytes_read: int,
    started: float,
) -> ProbeResult:
    """The judged result of one probe, with the token redacted from everything stored."""
    verdict, status = judge(obs)
    retry_after = None
    if verdict is Verdict.INCONCLUSIVE and (
        Reason.TEMP_REJECT_4XX in obs.reasons or Reason.SERVICE_UNAVAILABLE_421 in obs.reasons
    ):
        retry_after = obs.temp_retry or DEFAULT_RETRY_AFTER
    details: dict[str, Any] = {
        "banner": obs.banner,
        "hostname": obs.hostname,
        "ehlo": obs.ehlo or [],
        "capabilities": sorted({line.split(" ", 1)[0].upper() for line in (obs.ehlo or [])[1:]}),
        "auth_mechanisms": auth_mechanisms(obs.details.get("ehlo_after_tls") or obs.ehlo or []),
        "tls": obs.tls_facts,
        **obs.details,
        "variants": [asdict(v) for v in obs.variants if v.outcome != "untested"],
        "data": obs.data,
        "delivered": bool(obs.hits),
        "canary_hits": [{"peer_ip": h.peer_ip, "detail": h.detail} for h in obs.hits],
        "connections": obs.connections,
        "bytes_read": bytes_read,
        "stopped": obs.stop.note if obs.stop else None,
    }
    pattern = re.compile(re.escape(obs.token), re.I)  # a server may echo it upper-cased
    return ProbeResult(
        target=target.given,
        ip=target.ip,
        port=target.port,
        protocol=Protocol.SMTP,
        verdict=verdict,
        reasons=list(obs.reasons),
        transport=obs.transport,
        transport_status=status,
        software=smtp_software(obs.banner or "", obs.ehlo or [], replies),
        duration_ms=int((time.monotonic() - started) * 1000),
        retry_after=retry_after,
        token=obs.token,
        details=redact(details, pattern),
        transcript=transcript.redacted(),
        transcript_truncated=transcript.truncated,
    )


def auth_mechanisms(ehlo: list[str]) -> list[str]:
    mechanisms: list[str] = []
    for line in ehlo[1:]:
        m = re.match(r"AUTH[ =](.*)", line.strip(), re.I)
        if m:
            mechanisms += [w.upper() for w in m.group(1).split() if w.upper() not in mechanisms]
    return mechanisms


def redact(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub("[REDACTED]", value)
    if isinstance(value, list):
        return [redact(v, pattern) for v in value]
    if isinstance(value, dict):
        return {k: redact(v, pattern) for k, v in value.items()}
    return value


def awaits_confirmation(result: ProbeResult) -> bool:
    """An SMTP result whose test message was accepted but not (yet) seen by our sink: a later
    delivery would make it `confirmed-open`."""
    return (
        result.protocol is Protocol.SMTP
        and Reason.ACCEPTED_NOT_DELIVERED in result.reasons
        and bool(result.token)
    )


def confirm_with_hits(result: ProbeResult, hits: list[CanaryHit]) -> ProbeResult:
    """The same result, now that our sink received the test message it carried."""
    reasons: list[Reason] = [r for r in result.reasons if r is not Reason.ACCEPTED_NOT_DELIVERED]
    if Reason.DELIVERED_TO_CANARY not in reasons:
        reasons.append(Reason.DELIVERED_TO_CANARY)
    pattern = re.compile(re.escape(result.token or ""), re.I)
    seen = [{"peer_ip": h.peer_ip, "detail": h.detail} for h in hits]
    details = {**result.details, "delivered": True, "canary_hits": redact(seen, pattern)}
    note = {
        "t_ms": result.duration_ms,
        "direction": "!",
        "text": f"canary sink received the test message ({len(hits)} hit(s)), after the session",
    }
    return dataclasses.replace(
        result,
        verdict=Verdict.CONFIRMED_OPEN,
        reasons=reasons,
        details=details,
        transcript=[*result.transcript, note],
    )
