"""Opening a probe's connection: one helper for every probe, and one mapping from the ways a
connect can fail to the transport status and reasons a finding records."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

from scanning.probes.base import Reason, TransportStatus
from scanning.probes.loop_lag import patient_wait_for


@dataclass(frozen=True)
class ConnectFailure(Exception):
    status: TransportStatus
    reasons: tuple[Reason, ...]
    note: str

    @property
    def refused(self) -> bool:
        """The host answered that nothing listens there: the one failure that says "closed"."""
        return self.status is TransportStatus.CONNECTION_REFUSED


def connect_failure(exc: BaseException) -> ConnectFailure:
    if isinstance(exc, TimeoutError):
        return ConnectFailure(
            TransportStatus.CONNECTION_TIMEOUT,
            (Reason.CONNECT_FAILED, Reason.TIMEOUT),
            "connect timed out",
        )
    if isinstance(exc, ssl.SSLError):
        return ConnectFailure(
            TransportStatus.PROTOCOL_ERROR,
            (Reason.TLS_HANDSHAKE_FAILED,),
            f"TLS handshake failed: {exc.reason or exc}",
        )
    if isinstance(exc, ConnectionRefusedError):
        return ConnectFailure(
            TransportStatus.CONNECTION_REFUSED, (Reason.CONNECT_FAILED,), "connection refused"
        )
    # Unreachable hosts and networks, resets during the handshake, no route: nothing answered
    # for the port itself, so this is no evidence either way.
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return ConnectFailure(
        TransportStatus.CONNECTION_CLOSED, (Reason.CONNECT_FAILED,), f"connect failed: {detail}"
    )


async def open_connection(
    ip: str, port: int, *, timeout: float, source: str | None = None, **kwargs: Any
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """`asyncio.open_connection` bounded by `timeout`, from `source` when given; raises
    ConnectFailure. Extra keyword arguments (ssl, limit, ...) go to asyncio."""
    if source:
        kwargs["local_addr"] = (source, 0)
    try:
        # The loop's own lateness does not count: under load a connect that the server
        # accepted at once must not read as a silent host.
        return await patient_wait_for(asyncio.open_connection(ip, port, **kwargs), timeout)
    except (TimeoutError, OSError) as exc:  # ssl.SSLError is an OSError
        raise connect_failure(exc) from exc
