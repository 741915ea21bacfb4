"""Real servers (Postfix, Exim, Squid, tinyproxy, Dante, microsocks) started on loopback for tests.

    with start_peer("postfix", "open", listen="127.0.0.41", canary_smtp=("127.0.0.40", 2525),
                    canary_domain="canary.test") as peer:
        ...  # probe peer.host, peer.port
        peer.reconfigure("closed")  # the fix, applied to the running server

Configurations (CONFIGS): postfix and exim open/closed/auth, squid open/closed/auth, tinyproxy
open/closed, dante open/closed/auth, microsocks open/auth. "closed" lets only the peer's own
address use it; "auth" accepts AUTH_USER/AUTH_PASSWORD. Each peer gets its own instance directory
(configs, queue, logs) under a temp dir and its own 127.0.0.x address, and is stopped by its own
PID. It runs in a private mount namespace whose /etc/hosts, resolv.conf and nsswitch.conf are the
instance's: names resolve only from that hosts file (the canary domain to the canary address) and
the only name server is a loopback NXDOMAIN responder, so no peer can reach the machine's
resolver. Templates live in tests/peers/<server>/; their @@NAME@@ placeholders are filled at
start.

Plain Python, no Django: the tests and the benchmarks (bench/probe_bench.py) share it.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fakes.peers.common import (  # noqa: F401  (the package's public names)
    AUTH_PASSWORD,
    AUTH_USER,
    CONFIGS,
    DEFAULT_PORTS,
    EXIM_ROOT,
    INSTALL_HINT,
    NOWHERE,
    NX_RESOLVER,
    PEERS_DIR,
    POSTFIX_DAEMON_DIR,
    REPO_ROOT,
    PeerError,
    PeerUnavailable,
    _check_config,
    _start_nx_resolver,
    _write_resolver_files,
    peer_available,
    peer_unavailable_reason,
    render,
    require_peer,
)
from fakes.peers.drivers import DRIVERS, _Driver


@dataclass(eq=False)
class Peer:
    name: str
    config: str
    host: str
    port: int
    dir: Path
    canary_domain: str
    canary_smtp: tuple[str, int] | None
    hosts: dict[str, str]
    hostname: str
    # Credentials the "auth" configuration accepts (None for configs without authentication).
    auth: tuple[str, str] | None = None
    pid: int | None = None
    start_seconds: float = 0.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _driver: _Driver | None = field(default=None, repr=False)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def reconfigure(self, config: str) -> None:
        """Switch a running peer to another configuration and wait until it is in force."""
        assert self._driver is not None
        _check_config(self.name, config)
        self.config = config
        self.auth = (AUTH_USER, AUTH_PASSWORD) if config == "auth" else None
        self._driver.write_config(self)
        self._driver.reload(self)

    def stop(self) -> None:
        if self._driver is not None:
            self._driver.stop(self)

    def log(self) -> str:
        """The peer's own logs, concatenated (for assertion messages)."""
        parts = []
        for path in sorted(self.dir.rglob("*")):
            if path.is_file() and (
                path.suffix == ".log" or path.name in ("maillog", "mainlog", "paniclog")
            ):
                parts.append(f"== {path.name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)


@contextlib.contextmanager
def start_peer(
    name: str,
    config: str,
    *,
    listen: str,
    port: int | None = None,
    canary_smtp: tuple[str, int] | None = None,
    canary_domain: str = "canary.test",
    canary_ip: str | None = None,
    hosts: dict[str, str] | None = None,
    base_dir: str | Path | None = None,
    keep_dir: bool = False,
    timeout: float = 20.0,
) -> Iterator[Peer]:
    """Start ``name`` in ``config`` on ``listen``:``port`` and stop it (by its PID) on exit.

    ``canary_smtp`` is where an MTA delivers mail for ``canary_domain`` (an IP literal route);
    without it the MTA routes the canary domain to a dead loopback port. In the peer's private
    hosts file the canary domain names ``canary_ip`` (default: the ``canary_smtp`` host), so a
    proxy asked for ``http://canary.test:PORT/`` reaches the canary; ``hosts`` adds more names.
    """
    reason = peer_available(name)
    if reason:
        raise PeerUnavailable(reason)
    _check_config(name, config)
    if not listen.startswith("127."):
        raise ValueError(f"peers listen on loopback only, not {listen!r}")
    canary_ip = canary_ip or (canary_smtp[0] if canary_smtp else NOWHERE[0])
    peer_hosts = {canary_domain: canary_ip, **(hosts or {})}
    for ip in [*peer_hosts.values(), *(canary_smtp[:1] if canary_smtp else [])]:
        if not ip.startswith("127."):
            raise ValueError(f"a peer may only reach loopback addresses, not {ip!r}")
    instance = Path(tempfile.mkdtemp(prefix=f"peer-{name}-{config}-", dir=base_dir))
    instance.chmod(0o755)  # unprivileged daemon users must reach their files in here
    peer = Peer(
        name=name,
        config=config,
        host=listen,
        port=port or DEFAULT_PORTS[name],
        dir=instance,
        canary_domain=canary_domain,
        canary_smtp=canary_smtp,
        hosts=peer_hosts,
        hostname=f"{name}-{listen.replace('.', '-')}.peer.test",
        auth=(AUTH_USER, AUTH_PASSWORD) if config == "auth" else None,
        _driver=(driver := DRIVERS[name](timeout)),
    )
    _start_nx_resolver()
    try:
        started = time.monotonic()
        _write_resolver_files(peer)
        driver.prepare(peer)
        driver.write_config(peer)
        _running.add(peer)
        driver.start(peer)
        peer.start_seconds = time.monotonic() - started
        yield peer
    finally:
        peer.stop()
        _running.discard(peer)
        if not keep_dir:
            shutil.rmtree(instance, ignore_errors=True)


_running: set[Peer] = set()


@atexit.register
def _stop_all() -> None:
    for peer in list(_running):
        peer.stop()
