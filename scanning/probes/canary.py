"""The scanner's own canary: what probes aim at, and the record of what reached it.

A probe sends a per-probe random token through the server under test towards the canary. The
canary logs each token it sees (a "hit") and, over HTTP, answers with HMAC(secret, token): a value
that never travels in the request, so only a proxy that really reached us can return it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class CanaryConfig:
    domain: str  # mail domain the SMTP sink answers for, and the HTTP Host the canary expects
    http_addr: tuple[str, int]  # plain HTTP canary (GET /c/<token>)
    tls_addr: tuple[str, int]  # the same over TLS (CONNECT CANARY:443 lands here)
    smtp_addr: tuple[str, int]  # SMTP sink (relayed test messages, CONNECT CANARY:25)
    secret: bytes  # HMAC key; CANARY_SECRET in deployments
    # A canary port known not to be a proxy, for the batch self-check (docs/probes.md).
    selfcheck_addr: tuple[str, int] | None = None
    # The HTTP canary over IPv6, for the SOCKS5 ATYP 4 test (docs/probes.md); None: no such test.
    http_addr6: tuple[str, int] | None = None


def new_token() -> str:
    # 128 bits, lower-case hex: safe in a mail local part, a DNS label and a URL path.
    return secrets.token_hex(16)


def canary_answer(secret: bytes, token: str) -> str:
    return hmac.new(secret, token.encode(), hashlib.sha256).hexdigest()


@dataclass
class CanaryHit:
    token: str
    kind: str  # "http", "tls", "smtp"
    peer_ip: str  # the address that connected to the canary: a proxy's exit IP, a relay's sender
    headers: dict[str, str] = field(default_factory=dict)  # HTTP request headers, or mail headers
    detail: str = ""  # e.g. the request line, or "MAIL FROM ... RCPT TO ..."
    at: float = field(default_factory=time.time)


class HitStore(Protocol):
    """Where canary hits are kept: memory inside one process, a database table in deployments.

    Every method is a coroutine: a store may talk to a database, and 64 probes share the event
    loop, so no store may block it. The canary awaits `record` before it answers, so a probe that
    read the answer always finds its hit.
    """

    async def record(self, hit: CanaryHit) -> None: ...

    async def hits(self, token: str) -> list[CanaryHit]: ...

    async def wait_for(
        self, token: str, *, kind: str | None, timeout: float
    ) -> list[CanaryHit]: ...


class MemoryHitStore:
    """Hits of a canary running in the same process (the `probe` command, tests)."""

    def __init__(self) -> None:
        self._hits: dict[str, list[CanaryHit]] = defaultdict(list)
        self._changed = asyncio.Event()

    async def record(self, hit: CanaryHit) -> None:
        self._hits[hit.token].append(hit)
        self._changed.set()

    async def hits(self, token: str) -> list[CanaryHit]:
        return self.recorded(token)

    def recorded(self, token: str) -> list[CanaryHit]:
        """The hits for `token` so far; memory is read at once, with or without an event loop."""
        return list(self._hits.get(token, ()))

    async def wait_for(self, token: str, *, kind: str | None, timeout: float) -> list[CanaryHit]:
        deadline = time.monotonic() + timeout
        while True:
            found = [h for h in self.recorded(token) if kind is None or h.kind == kind]
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.5))
            except TimeoutError:
                pass
