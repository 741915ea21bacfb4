"""Worker hosts on one machine: each a real `celery worker` process under its own node name and
concurrency, sharing Redis and PostgreSQL with the others, as a second compose project or a
second machine would. Used by the `workers` bench section and the two-host integration test.

A host's log says which task ids it ran ("Task <name>[<id>] succeeded"); the rows' claims
(ScanBatch.claimed_by, Letter.claimed_by) hold those task ids, so the work each host did is read
from the rows themselves. Also: a loopback fleet of fake probe targets (fakes/fleet.py) served
from a thread of the calling process.

Safety: the fleet listens on 127.0.0.0/8 only; workers are started and stopped by their PID.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fakes.fleet import BEHAVIOURS, handler_for

ROOT = Path(__file__).resolve().parent.parent
_SUCCEEDED = re.compile(r"Task ([\w.]+)\[([0-9a-f-]+)\] succeeded")

# Fake targets that answer at once (no tarpits, no greylisting: those measure timeouts, not
# workers), with the Target protocol each is probed as.
QUICK_BEHAVIOURS: dict[str, str] = {
    "smtp_open_relay": "smtp",
    "smtp_catchall": "smtp",
    "smtp_closed": "smtp",
    "http_open_proxy": "http",
    "http_captive": "http",
    "http_closed_403": "http",
    "socks5_open": "socks5",
}

# What a scan worker host needs to probe the loopback fleet: private addresses allowed; no
# per-network rate (the fleet shares a few /24s, where a real campaign spreads over many); no
# attribution after the scan (its reverse DNS would ask the system's resolver).
LOOPBACK_SCAN_ENV = {
    "SCAN_ALLOW_PRIVATE": "true",
    "SCAN_NETWORK_RATE": "0",
    "ATTRIBUTE_AFTER_SCAN": "false",
    "SCAN_CONNECT_TIMEOUT": "5",
    "SCAN_REPLY_TIMEOUT": "5",
    "SCAN_EXCHANGE_TIMEOUT": "15",
}


def database_url() -> str:
    """The URL of the database the default connection uses now (a test's or a bench's own)."""
    from django.db import connection

    db = connection.settings_dict
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


@dataclass
class WorkerHost:
    name: str
    concurrency: int
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def succeeded(self, task_name: str) -> list[str]:
        """Ids of the tasks of this name this host ran to the end, in order."""
        return [m[2] for m in _SUCCEEDED.finditer(self.text()) if m[1] == task_name]

    def ready(self) -> bool:
        return " ready." in self.text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def start_host(
    name: str,
    *,
    queues: str,
    concurrency: int,
    log_dir: Path,
    env: dict[str, str] | None = None,
) -> WorkerHost:
    """One worker host: `celery worker -n <name>@%h -Q <queues> --concurrency <n>` (prefork),
    on the database the default connection uses now and the settings' Redis."""
    environment = dict(os.environ)
    environment.update(
        DATABASE_URL=database_url(),
        VAR_DIR=str(log_dir),
        MAIL_ESP="test",  # anymail's test backend: nothing leaves the machine
        CELERY_TASK_ALWAYS_EAGER="false",
    )
    environment.update(env or {})
    log = log_dir / f"{name}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            queues,
            "--concurrency",
            str(concurrency),
            "--prefetch-multiplier",
            "1",
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        ],  # fmt: skip
        cwd=ROOT,
        env=environment,
        stdout=open(log, "w"),  # noqa: SIM115 - the child holds it; closed when it exits
        stderr=subprocess.STDOUT,
    )
    return WorkerHost(name, concurrency, process, log)


def wait_ready(hosts: Iterable[WorkerHost], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    pending = list(hosts)
    while pending and time.monotonic() < deadline:
        for host in pending:
            if host.process.poll() is not None:
                raise RuntimeError(f"worker host {host.name} exited:\n{host.text()[-3000:]}")
        pending = [h for h in pending if not h.ready()]
        time.sleep(0.2)
    if pending:
        raise RuntimeError(f"worker host {pending[0].name} not ready:\n{pending[0].text()[-3000:]}")


def wait_logged(
    hosts: Iterable[WorkerHost], task_name: str, ids: set[str], timeout: float = 20
) -> None:
    """Wait until the hosts' logs show these task ids done: a task's rows commit before its
    worker logs the end."""
    hosts = list(hosts)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ids <= {i for host in hosts for i in host.succeeded(task_name)}:
            return
        time.sleep(0.1)


def purge_queues() -> None:
    """Drop messages a previous, interrupted run left in the broker."""
    from config.celery import app

    app.control.purge()


@dataclass
class LoopbackFleet:
    """Fake probe targets, one listener per loopback address on a free port, served by an
    asyncio loop in a daemon thread. `targets` lists (ip, port, behaviour, protocol)."""

    network: str
    count: int
    targets: list[tuple[str, int, str, str]] = field(default_factory=list)
    _servers: list[asyncio.Server] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> LoopbackFleet:
        net = ipaddress.ip_network(self.network)
        if not net.is_loopback:
            raise ValueError(f"the fleet listens on loopback only, not {self.network}")
        kinds = list(QUICK_BEHAVIOURS)
        started = threading.Event()
        errors: list[BaseException] = []
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def bind() -> None:
            handlers = {kind: handler_for(kind, None, 5.0) for kind in kinds}
            hosts = net.hosts()
            for i in range(self.count):
                ip, kind = str(next(hosts)), kinds[i % len(kinds)]
                assert BEHAVIOURS[kind].family in ("smtp", "http", "socks")
                server = await asyncio.start_server(handlers[kind], ip, 0, backlog=256)
                self._servers.append(server)
                port = int(server.sockets[0].getsockname()[1])
                self.targets.append((ip, port, kind, QUICK_BEHAVIOURS[kind]))

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(bind())
            except BaseException as exc:  # reported to the caller below
                errors.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()

        self._thread = threading.Thread(target=serve, name="loopback-fleet", daemon=True)
        self._thread.start()
        started.wait(60)
        if errors:
            raise errors[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:

            def close() -> None:
                for server in self._servers:
                    server.close()  # the addresses are free again at once
                assert self._loop is not None
                self._loop.stop()

            self._loop.call_soon_threadsafe(close)
        if self._thread is not None:
            self._thread.join(10)

    def open_ground_truth(self) -> dict[tuple[str, int], bool]:
        return {(ip, port): BEHAVIOURS[kind].open for ip, port, kind, _ in self.targets}
