"""The `probe` command's logic, free of Django; its options and JSON keys are a public interface.

`manage.py probe` adds these arguments to its parser and calls `run()` with the settings it read.
Exit status: 2 for bad arguments or a refused target (before anything is sent), else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import re
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TextIO

from scanning.probes.base import Limits, ProbeResult
from scanning.probes.canary import CanaryConfig, HitStore, MemoryHitStore
from scanning.probes.canary_http import start_http_canary, start_selfcheck_port
from scanning.probes.runner import (
    AUTO,
    PROTOCOL_CHOICES,
    Scanner,
    ScanOptions,
    Target,
    TargetError,
    canary_reachable,
    parse_target,
    refuse_reason,
    split_host_port,
)
from scanning.probes.smtp_relay import awaits_confirmation, confirm_with_hits
from scanning.probes.smtp_sink import start_smtp_sink

EXIT_USAGE = 2
# The command's own canary answers for this domain unless told otherwise. `.test` never resolves
# on the Internet (RFC 6761), so a stray relay attempt towards it can reach no third party.
DEFAULT_CANARY_DOMAIN = "canary.secure-your-server.test"
# After the last session ends, how long the command waits for late deliveries to its sink.
DEFAULT_WAIT = 10.0
MAX_WAIT = 3600.0
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$"
)

Addr = tuple[str, int]


class UsageError(Exception):
    """Bad arguments or configuration; the message names the culprit. Exit status 2."""


@dataclass(frozen=True)
class ProbeEnvironment:
    """What the command reads from settings."""

    scanner_name: str = "scanner.secure-your-server.invalid"
    public_base_url: str = "http://127.0.0.1:8000"
    contact: str | None = None
    canary_domain: str = ""
    canary_http_addr: Addr | None = None
    canary_tls_addr: Addr | None = None
    canary_smtp_addr: Addr | None = None
    canary_selfcheck_addr: Addr | None = None
    canary_secret: str = ""
    # The deployed canary's hits (a database table); called only when a canary is configured.
    deployed_hits: Callable[[], HitStore] | None = None
    limits: Limits = dataclasses.field(default_factory=Limits)

    @property
    def canary_configured(self) -> bool:
        return any((self.canary_http_addr, self.canary_tls_addr, self.canary_smtp_addr))

    @property
    def user_agent(self) -> str:
        # Names the scanner and points at the public page explaining the scan, with its opt-out.
        return f"SecureYourServer-Scanner (+{self.public_base_url.rstrip('/')}/scanning/)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "targets", nargs="+", metavar="HOST:PORT", help="IP:PORT or [IPv6]:PORT, as many as needed"
    )
    parser.add_argument(
        "--allow-private",
        action="store_true",
        help="allow loopback, private and reserved addresses",
    )
    parser.add_argument(
        "--confirm", action="store_true", help="run the relay confirmation step (DATA to canary)"
    )
    parser.add_argument("--protocol", choices=PROTOCOL_CHOICES, default=AUTO)
    parser.add_argument("--source", metavar="ADDR", help="bind probes to this source address")
    parser.add_argument(
        "--canary-domain", metavar="DOMAIN", help="the mail domain the canary sink answers for"
    )
    parser.add_argument(
        "--canary-smtp", metavar="HOST:PORT", help="where the command's own SMTP sink listens"
    )
    parser.add_argument(
        "--wait",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_WAIT,
        help="how long to wait for late canary confirmations after the last session ends "
        f"(default {DEFAULT_WAIT:g}; 0 returns at once)",
    )
    parser.add_argument(
        "--json", action="store_true", default=True, help="JSON Lines output (the default)"
    )


@dataclass(frozen=True)
class _Plan:
    targets: list[Target]
    options: ScanOptions
    canary_domain: str
    canary_smtp: Addr | None
    wait: float = 0.0


def _ip_literal(text: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise UsageError(f"{what} {text!r}: not an IP address") from None


def _can_bind(host: str, port: int) -> OSError | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def check_canary_settings(
    env: ProbeEnvironment, *, domain: str | None = None, smtp: Addr | None = None
) -> None:
    """A deployed canary is configured whole or not at all; UsageError names what is missing."""
    if not env.canary_configured:
        return
    missing = [
        name
        for name, value in (
            ("CANARY_HTTP_ADDR", env.canary_http_addr),
            ("CANARY_TLS_ADDR", env.canary_tls_addr),
            ("CANARY_SMTP_ADDR", env.canary_smtp_addr or smtp),
            ("CANARY_SECRET", env.canary_secret),
            ("CANARY_DOMAIN", domain or env.canary_domain),
        )
        if not value
    ]
    if missing:
        raise UsageError(f"the deployed canary is half configured: set {', '.join(missing)}")


def plan(options: dict[str, Any], env: ProbeEnvironment) -> _Plan:
    """Check every argument before anything is started or sent; UsageError names what is wrong."""
    targets: list[Target] = []
    for text in options["targets"]:
        try:
            targets.append(parse_target(text))
        except TargetError as exc:
            raise UsageError(f"bad target {exc}") from None
    protocol = options.get("protocol") or AUTO
    if protocol not in PROTOCOL_CHOICES:
        raise UsageError(f"--protocol {protocol!r}: use one of {', '.join(PROTOCOL_CHOICES)}")
    source = options.get("source")
    if source:
        source = _ip_literal(source, "--source")
        problem = _can_bind(source, 0)
        if problem:
            raise UsageError(f"--source {source}: not an address of this machine ({problem})")
        family = ipaddress.ip_address(source).version
        for target in targets:
            if target.address.version != family:
                raise UsageError(
                    f"--source {source} is IPv{family} but target {target.given} is not"
                )
    domain = (options.get("canary_domain") or env.canary_domain or DEFAULT_CANARY_DOMAIN).strip()
    if not _HOSTNAME.match(domain) or "." not in domain.rstrip("."):
        raise UsageError(f"--canary-domain {domain!r}: not a domain name")
    if domain.lower().rstrip(".").endswith(".invalid"):
        raise UsageError(f"--canary-domain {domain}: a .invalid domain is the control, never ours")
    canary_smtp: Addr | None = None
    if options.get("canary_smtp"):
        text = options["canary_smtp"]
        try:
            host, port = split_host_port(text)
        except TargetError as exc:
            raise UsageError(f"--canary-smtp {exc}") from None
        host = _ip_literal(host, "--canary-smtp")
        problem = _can_bind(host, port)
        if problem:
            raise UsageError(f"--canary-smtp {text}: cannot listen there ({problem})")
        canary_smtp = (host, port)
    wait = options.get("wait")
    wait = DEFAULT_WAIT if wait is None else wait
    if not (isinstance(wait, int | float) and 0 <= wait <= MAX_WAIT):
        raise UsageError(f"--wait {wait!r}: seconds from 0 to {MAX_WAIT:g}")
    check_canary_settings(env, domain=options.get("canary_domain"), smtp=canary_smtp)
    allow_private = bool(options.get("allow_private"))
    refused = []
    canary_host = (
        env.canary_http_addr[0] if env.canary_configured and env.canary_http_addr else ("127.0.0.1")
    )
    for target in targets:
        why = refuse_reason(target.ip, allow_private)
        if why:
            refused.append(f"{target.given} ({why}; --allow-private permits it)")
        elif not canary_reachable(target, protocol, canary_host):
            refused.append(
                f"{target.given} (a proxy test needs a canary it can reach: set CANARY_* or "
                "use --protocol smtp)"
            )
    if refused:
        raise UsageError("refused, nothing sent: " + ", ".join(refused))
    scan = ScanOptions(
        protocol=protocol,
        allow_private=allow_private,
        confirm=bool(options.get("confirm")),
        source=source or None,
        # Sessions never wait for the sink: a delivery that comes later upgrades the line then.
        limits=dataclasses.replace(env.limits, confirm_wait=0),
        scanner_name=env.scanner_name,
        user_agent=env.user_agent,
        contact=env.contact,
    )
    return _Plan(
        targets=targets,
        options=scan,
        canary_domain=domain,
        canary_smtp=canary_smtp,
        wait=float(wait),
    )


@contextlib.asynccontextmanager
async def open_canary(
    env: ProbeEnvironment, *, domain: str | None = None, smtp: Addr | None = None
) -> AsyncIterator[tuple[CanaryConfig, HitStore]]:
    """The deployed canary when configured, else our own on free loopback ports, in this loop.

    `smtp` starts our own SMTP sink at that address (feeding the same hit store), `domain`
    overrides the canary's mail domain.
    """
    check_canary_settings(env, domain=domain, smtp=smtp)
    domain = domain or env.canary_domain or DEFAULT_CANARY_DOMAIN
    servers: list[asyncio.Server] = []

    def port_of(server: asyncio.Server) -> int:
        return int(server.sockets[0].getsockname()[1])

    hits: HitStore | None = None
    try:
        if env.canary_configured and env.deployed_hits is not None:
            hits = env.deployed_hits()
            assert env.canary_http_addr and env.canary_tls_addr  # checked above
            canary = CanaryConfig(
                domain=domain,
                http_addr=env.canary_http_addr,
                tls_addr=env.canary_tls_addr,
                smtp_addr=smtp or env.canary_smtp_addr or ("127.0.0.1", 25),
                secret=env.canary_secret.encode(),
                selfcheck_addr=env.canary_selfcheck_addr,
            )
            if smtp:  # our own sink, feeding the same table
                servers.append(await start_smtp_sink(canary, hits, *smtp))
        else:
            hits = MemoryHitStore()
            host = "127.0.0.1"
            draft = CanaryConfig(
                domain=domain,
                http_addr=(host, 0),
                tls_addr=(host, 0),
                smtp_addr=(host, 0),
                secret=secrets.token_bytes(32),  # fresh per run: nothing to configure or leak
            )
            http = await start_http_canary(draft, hits, host, 0)
            tls = await start_http_canary(draft, hits, host, 0, tls=True)
            sink_host, sink_port = smtp or (host, 0)
            sink = await start_smtp_sink(draft, hits, sink_host, sink_port)
            check = await start_selfcheck_port(host, 0)
            servers += [http, tls, sink, check]
            http6: Addr | None = None
            try:  # for the SOCKS5 IPv6 test; a host without ::1 just skips it
                six = await start_http_canary(draft, hits, "::1", 0)
                servers.append(six)
                http6 = ("::1", port_of(six))
            except OSError:
                pass
            canary = dataclasses.replace(
                draft,
                http_addr=(host, port_of(http)),
                tls_addr=(host, port_of(tls)),
                smtp_addr=(sink_host, port_of(sink)),
                selfcheck_addr=(host, port_of(check)),
                http_addr6=http6,
            )
        yield canary, hits
    finally:
        for server in servers:
            server.close()
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        close = getattr(hits, "close", None)  # a database store holds a thread and a connection
        if callable(close):
            await asyncio.to_thread(close)


async def _probe_all(plan_: _Plan, env: ProbeEnvironment, out: TextIO) -> None:
    async with open_canary(env, domain=plan_.canary_domain, smtp=plan_.canary_smtp) as (
        canary,
        hits,
    ):
        scanner = Scanner(canary=canary, hits=hits, options=plan_.options)
        pending: list[ProbeResult] = []

        def emit(result: ProbeResult, *, final: bool) -> None:
            line = {**result.as_json(), "final": final}
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
            out.flush()  # one line per finished target, while the others still run

        def on_result(result: ProbeResult) -> None:
            waiting = awaits_confirmation(result)
            if waiting:
                pending.append(result)
            emit(result, final=not waiting)

        await scanner.run(plan_.targets, on_result=on_result)
        if pending and plan_.wait > 0:
            # Real MTAs queue before they deliver: the sink may hear from them seconds later.
            deadline = time.monotonic() + plan_.wait

            async def settle(result: ProbeResult) -> None:
                left = max(deadline - time.monotonic(), 0)
                found = await hits.wait_for(result.token or "", kind="smtp", timeout=left)
                emit(confirm_with_hits(result, found) if found else result, final=True)

            await asyncio.gather(*(settle(r) for r in pending))


def run(options: dict[str, Any], env: ProbeEnvironment, stdout: TextIO | None = None) -> None:
    """Probe every target and print one JSON line per target and protocol spoken.

    Raises UsageError (exit status 2) before anything is started or sent.
    """
    plan_ = plan(options, env)
    asyncio.run(_probe_all(plan_, env, stdout or sys.stdout))
