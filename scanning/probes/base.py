"""Shared vocabulary of the probes: verdicts, evidence levels, reason codes and results."""

from __future__ import annotations

import contextlib
import contextvars
import enum
import ipaddress
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from scanning.probes.canary import CanaryConfig, HitStore

# How the scanner introduces itself (EHLO, the test message) and its HTTP User-Agent, unless a
# deployment names its own; the User-Agent points at the public page explaining the scan.
DEFAULT_SCANNER_NAME = "scanner.secure-your-server.invalid"
DEFAULT_USER_AGENT = (
    "SecureYourServer-Scanner (+https://scanner.secure-your-server.invalid/scanning/)"
)

# Bumped whenever a test is added, removed or judged differently, so a stored finding says which
# rules produced it.
CATALOGUE_VERSION = "2026.11.1"


class Verdict(enum.StrEnum):
    CONFIRMED_OPEN = "confirmed-open"
    LIKELY_OPEN = "likely-open"
    LIKELY_OPEN_WEAK = "likely-open-weak"
    AUTH_REQUIRED = "auth-required"
    CLOSED = "closed"
    INCONCLUSIVE = "inconclusive"
    NOT_APPLICABLE = "not-applicable"


# docs/probes.md: confirmed > likely > likely-weak > inconclusive > auth-required > closed.
VERDICT_PRECEDENCE: dict[Verdict, int] = {
    Verdict.CONFIRMED_OPEN: 6,
    Verdict.LIKELY_OPEN: 5,
    Verdict.LIKELY_OPEN_WEAK: 4,
    Verdict.INCONCLUSIVE: 3,
    Verdict.AUTH_REQUIRED: 2,
    Verdict.CLOSED: 1,
    Verdict.NOT_APPLICABLE: 0,
}


# The one ordering of verdicts, strongest first (exports, summaries and the admin use it too).
VERDICTS_STRONGEST_FIRST: tuple[Verdict, ...] = tuple(
    sorted(Verdict, key=VERDICT_PRECEDENCE.__getitem__, reverse=True)
)


# While a probe holds its turn (its IP's one connection, a concurrency slot), the runner puts a
# release function here. A probe that is done with the network calls `release_turn()` before it
# waits for the canary, so that wait never keeps the next probe of the same IP, or any other
# target, from starting.
_turn_release: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "probe_turn_release", default=None
)


def release_turn() -> None:
    """Give up this probe's IP turn and concurrency slot: it will not connect again."""
    release = _turn_release.get()
    if release is not None:
        release()


@contextlib.contextmanager
def holding_turn(release: Callable[[], None]) -> Iterator[None]:
    reset = _turn_release.set(release)
    try:
        yield
    finally:
        _turn_release.reset(reset)


def host_port(host: str, port: int) -> str:
    """``host:port`` as people and URLs write it: IPv6 addresses in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def strongest(verdicts: list[Verdict]) -> Verdict:
    return max(verdicts, key=VERDICT_PRECEDENCE.__getitem__, default=Verdict.NOT_APPLICABLE)


class EvidenceLevel(enum.StrEnum):
    STRONG = "strong"
    MEDIUM = "medium"
    WEAK = "weak"
    NONE = "none"


EVIDENCE_FOR_VERDICT: dict[Verdict, EvidenceLevel] = {
    Verdict.CONFIRMED_OPEN: EvidenceLevel.STRONG,
    Verdict.LIKELY_OPEN: EvidenceLevel.MEDIUM,
    Verdict.LIKELY_OPEN_WEAK: EvidenceLevel.WEAK,
    Verdict.AUTH_REQUIRED: EvidenceLevel.NONE,
    Verdict.CLOSED: EvidenceLevel.NONE,
    Verdict.INCONCLUSIVE: EvidenceLevel.NONE,
    Verdict.NOT_APPLICABLE: EvidenceLevel.NONE,
}


class Protocol(enum.StrEnum):
    SMTP = "smtp"
    HTTP = "http"
    SOCKS4 = "socks4"
    SOCKS5 = "socks5"


class Transport(enum.StrEnum):
    PLAIN = "plain"
    IMPLICIT_TLS = "implicit-tls"
    STARTTLS = "starttls"


class TransportStatus(enum.StrEnum):
    SUCCESS = "success"
    CONNECTION_REFUSED = "connection-refused"
    CONNECTION_TIMEOUT = "connection-timeout"
    CONNECTION_CLOSED = "connection-closed"
    IO_TIMEOUT = "io-timeout"
    PROTOCOL_ERROR = "protocol-error"


class Reason(enum.StrEnum):
    """The one catalogue of machine-readable reasons; docs/probes.md explains each."""

    # SMTP
    NO_SMTP_GREETING = "no_smtp_greeting"
    GREETING_REJECTED = "greeting_rejected"
    HELO_FALLBACK = "helo_fallback"
    STARTTLS_USED = "starttls_used"
    STARTTLS_FAILED = "starttls_failed"
    TLS_REQUIRED = "tls_required"
    CONTROL_INVALID_ACCEPTED = "control_invalid_accepted"
    CONTROL_INVALID_REFUSED = "control_invalid_refused"
    RCPT_2XX_EXTERNAL = "rcpt_2xx_external"
    RCPT_5XX_ALL = "rcpt_5xx_all"
    AUTH_REQUIRED_530 = "auth_required_530"
    TEMP_REJECT_4XX = "temp_reject_4xx"
    SERVICE_UNAVAILABLE_421 = "service_unavailable_421"
    DATA_ACCEPTED = "data_accepted"
    DATA_REFUSED = "data_refused"
    DELIVERED_TO_CANARY = "delivered_to_canary"
    ACCEPTED_NOT_DELIVERED = "accepted_not_delivered"
    CONFIRMATION_SKIPPED = "confirmation_skipped"
    TLS_HANDSHAKE_FAILED = "tls_handshake_failed"
    SMTP_SESSION_INCOMPLETE = "smtp_session_incomplete"
    # Proxies
    NOT_A_PROXY = "not_a_proxy"
    SAME_PAGE_FOR_BOGUS_HOST = "same_page_for_bogus_host"
    PROXY_AUTH_REQUIRED = "proxy_auth_required"
    PROXY_REFUSED = "proxy_refused"
    CONNECT_GRANTED = "connect_granted"
    SOCKS_GRANTED = "socks_granted"
    PROXY_HEADERS_2XX = "proxy_headers_2xx"
    CANARY_HIT = "canary_hit"
    SECRET_RETURNED = "secret_returned"
    SECRET_MISSING = "secret_missing"
    TLS_TO_CANARY = "tls_to_canary"
    SINK_BANNER_SEEN = "sink_banner_seen"
    SELFCHECK_FAILED = "selfcheck_failed"
    REPLY_2XX_NO_CANARY = "reply_2xx_no_canary"  # a 2xx with no proxy headers, canary untouched
    # Either
    CONNECT_FAILED = "connect_failed"
    TIMEOUT = "timeout"
    CONNECTION_RESET = "connection_reset"
    OVERSIZED_REPLY = "oversized_reply"
    GARBAGE_REPLY = "garbage_reply"
    EXCLUDED = "excluded"


@dataclass(frozen=True)
class Software:
    family: str
    version: str | None
    source: str  # what it was read from: banner, ehlo, error-page, header, ...


@dataclass
class TranscriptLine:
    t_ms: int  # milliseconds since the probe started
    direction: str  # ">" sent by us, "<" received, "!" a note of ours (timeout, TLS, reconnect)
    text: str


# A finding's transcript is evidence shown to staff and owners; the cap keeps a hostile server
# from filling the database, and redaction keeps tokens and canary secrets out of it.
TRANSCRIPT_MAX_LINES = 400
TRANSCRIPT_MAX_LINE_CHARS = 512


@dataclass
class Transcript:
    started: float = field(default_factory=time.monotonic)
    lines: list[TranscriptLine] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    truncated: bool = False

    def add(self, direction: str, text: str) -> None:
        if len(self.lines) >= TRANSCRIPT_MAX_LINES:
            self.truncated = True
            return
        if self.secrets:  # before the cap, which could cut a secret and leave its head readable
            text = self._pattern().sub("[REDACTED]", text)
        if len(text) > TRANSCRIPT_MAX_LINE_CHARS:
            text = text[:TRANSCRIPT_MAX_LINE_CHARS] + "…"
        t_ms = int((time.monotonic() - self.started) * 1000)
        self.lines.append(TranscriptLine(t_ms, direction, text))

    def sent(self, text: str) -> None:
        self.add(">", text)

    def received(self, text: str) -> None:
        self.add("<", text)

    def note(self, text: str) -> None:
        self.add("!", text)

    def _pattern(self) -> re.Pattern[str]:
        # Case-insensitive: a server may echo a hex token or answer upper-cased.
        return re.compile(
            "|".join(re.escape(s) for s in sorted(self.secrets, key=len, reverse=True)), re.I
        )

    def redacted(self) -> list[dict[str, Any]]:
        if not self.secrets:
            return [asdict(line) for line in self.lines]
        pattern = self._pattern()
        return [
            {
                "t_ms": line.t_ms,
                "direction": line.direction,
                "text": pattern.sub("[REDACTED]", line.text),
            }
            for line in self.lines
        ]


@dataclass
class ProbeResult:
    target: str  # as given, e.g. "[::1]:25"
    ip: str
    port: int
    protocol: Protocol
    verdict: Verdict
    reasons: list[Reason] = field(default_factory=list)
    transport: Transport = Transport.PLAIN
    transport_status: TransportStatus = TransportStatus.SUCCESS
    software: Software | None = None
    duration_ms: int = 0
    retry_after: int | None = None
    token: str | None = None  # logged so a complaint can be traced; redacted from transcripts
    details: dict[str, Any] = field(
        default_factory=dict
    )  # protocol facts: banner, ehlo, variants, tests
    transcript: list[dict[str, Any]] = field(default_factory=list)
    transcript_truncated: bool = False
    catalogue_version: str = CATALOGUE_VERSION

    @property
    def evidence_level(self) -> EvidenceLevel:
        return EVIDENCE_FOR_VERDICT[self.verdict]

    @property
    def ip_version(self) -> int:
        return 6 if ":" in self.ip else 4

    def as_json(self) -> dict[str, Any]:
        """The `probe` command's JSON object; its keys are a public interface."""
        out: dict[str, Any] = {
            "target": self.target,
            "ip": self.ip,
            "port": self.port,
            "protocol": str(self.protocol),
            "transport": str(self.transport),
            "verdict": str(self.verdict),
            "evidence_level": str(self.evidence_level),
            "reasons": [str(r) for r in self.reasons],
            "software": asdict(self.software) if self.software else None,
            "duration_ms": self.duration_ms,
            "transport_status": str(self.transport_status),
            "token": self.token,
            "catalogue_version": self.catalogue_version,
            "details": self.details,
            "transcript": self.transcript,
        }
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


@dataclass(frozen=True)
class Limits:
    """The bounds of docs/probes.md ("Manners and bounds"); tests shrink them, never remove them."""

    connect_timeout: float = 10.0
    reply_timeout: float = 10.0
    exchange_timeout: float = 30.0  # one probe's whole conversation, confirmation wait excluded
    confirm_wait: float = 60.0
    tunnel_read_bytes: int = 4 * 1024
    http_body_bytes: int = 64 * 1024
    host_bytes: int = 96 * 1024
    max_refused_rcpt_per_connection: int = 8


@dataclass(frozen=True)
class Target:
    """One address and port to probe."""

    given: str  # exactly as written, echoed in results ("[::1]:25")
    ip: str  # normalised IP literal
    port: int

    @classmethod
    def at(cls, ip: str, port: int) -> Target:
        """The target `ip`:`port`, written as people write it (IPv6 in brackets)."""
        return cls(host_port(ip, port), ip, port)

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.ip)


@dataclass(frozen=True)
class ProbeContext:
    """What every probe is given besides its target; one per scan, shared by all its probes."""

    canary: CanaryConfig  # where the probe aims its tests
    hits: HitStore  # where the canary's hits are read
    limits: Limits = field(default_factory=Limits)
    source: str | None = None  # local address every connection is bound to; None: any
    scanner_name: str = DEFAULT_SCANNER_NAME  # SMTP EHLO name, and named in the test message
    user_agent: str = DEFAULT_USER_AGENT  # proxy requests
    contact: str | None = None  # named in the relay test message; None: postmaster@CANARY
    confirm: bool = False  # SMTP: send the test message (DATA) towards the canary sink
    full: bool = False  # SMTP: try every variant, not only until one is accepted
