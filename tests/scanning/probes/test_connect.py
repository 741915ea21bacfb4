"""Every probe reports a failed connect the same way: one helper, one mapping."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import pytest

from fakes.proxy_traps import running_canary
from scanning.probes import connect
from scanning.probes.base import Limits, ProbeContext, Reason, Target, TransportStatus, Verdict
from scanning.probes.open_proxy import probe_http_proxy, probe_socks4, probe_socks5
from scanning.probes.runner import Scanner, ScanOptions, parse_target
from scanning.probes.smtp_relay import probe_smtp

LIMITS = Limits(connect_timeout=2, reply_timeout=2, exchange_timeout=5, confirm_wait=1)
PROBES = {
    "smtp": probe_smtp,
    "http": probe_http_proxy,
    "socks4": probe_socks4,
    "socks5": probe_socks5,
}


def _unused_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])  # closed again: a connect is refused


def _each_probe(ip: str, port: int) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with running_canary("127.0.57.1", v6=False) as (canary, hits):
            out = {}
            for name, probe in PROBES.items():
                out[name] = await probe(
                    Target.at(ip, port), ProbeContext(canary=canary, hits=hits, limits=LIMITS)
                )
            return out

    return asyncio.run(main())


def test_it_maps_each_connect_error_once() -> None:
    timeout = connect.connect_failure(TimeoutError())
    assert (timeout.status, timeout.reasons) == (
        TransportStatus.CONNECTION_TIMEOUT,
        (Reason.CONNECT_FAILED, Reason.TIMEOUT),
    )
    refused = connect.connect_failure(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert refused.refused and refused.reasons == (Reason.CONNECT_FAILED,)
    unreachable = connect.connect_failure(OSError(errno.EHOSTUNREACH, "No route to host"))
    assert not unreachable.refused
    assert unreachable.status is TransportStatus.CONNECTION_CLOSED
    assert "No route to host" in unreachable.note


def test_every_probe_reports_an_unreachable_host_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EHOSTUNREACH, "No route to host")

    monkeypatch.setattr(connect.asyncio, "open_connection", unreachable)
    results = _each_probe("127.0.57.2", 2525)
    # The SMTP probe also says its session never got going; the connect itself reads the same.
    own = {Reason.SMTP_SESSION_INCOMPLETE}
    seen = {
        name: (r.transport_status, r.verdict, set(r.reasons) - own) for name, r in results.items()
    }
    expected = (TransportStatus.CONNECTION_CLOSED, Verdict.INCONCLUSIVE, {Reason.CONNECT_FAILED})
    assert seen == dict.fromkeys(PROBES, expected)


def test_every_probe_reports_a_refused_port_alike() -> None:
    port = _unused_port("127.0.57.3")
    results = _each_probe("127.0.57.3", port)
    statuses = {name: r.transport_status for name, r in results.items()}
    assert statuses == dict.fromkeys(PROBES, TransportStatus.CONNECTION_REFUSED)
    assert all(Reason.CONNECT_FAILED in r.reasons for r in results.values())


def test_the_port_sniffer_reports_an_unreachable_host_like_the_probes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EHOSTUNREACH, "No route to host")

    monkeypatch.setattr(connect.asyncio, "open_connection", unreachable)

    async def main() -> Any:
        async with running_canary("127.0.57.4", v6=False) as (canary, hits):
            options = ScanOptions(allow_private=True, limits=LIMITS)
            scanner = Scanner(canary=canary, hits=hits, options=options)
            return await scanner.run([parse_target("127.0.57.5:2600")])  # no port rule: sniffed

    [result] = asyncio.run(main())
    assert (result.transport_status, result.verdict, result.reasons) == (
        TransportStatus.CONNECTION_CLOSED,
        Verdict.INCONCLUSIVE,
        [Reason.CONNECT_FAILED],
    )
