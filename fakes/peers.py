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
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The configuration templates stay with the peer tests (the guide tests read them too).
PEERS_DIR = REPO_ROOT / "tests" / "peers"
EXIM_ROOT = Path(os.environ.get("PEERS_EXIM_ROOT", REPO_ROOT / "var" / "peers" / "exim"))
INSTALL_HINT = "run .ci/install-peers.sh"
# The only name server a peer knows: a loopback responder (started with the first peer) that
# answers NXDOMAIN to everything, as a real resolver does for ".invalid". Should it not be
# running, a query still stays on loopback and merely times out.
NX_RESOLVER = "127.0.40.253"
# Where a peer without a canary routes the canary domain: nothing listens there.
NOWHERE = ("127.0.40.254", 9)
POSTFIX_DAEMON_DIR = Path("/usr/lib/postfix/sbin")

DEFAULT_PORTS = {
    "postfix": 25,
    "exim": 25,
    "squid": 3128,
    "tinyproxy": 8888,
    "dante": 1080,
    "microsocks": 1080,
}
CONFIGS = {
    "postfix": ("open", "closed", "auth"),
    "exim": ("open", "closed", "auth"),
    "squid": ("open", "closed", "auth"),
    "tinyproxy": ("open", "closed"),
    "dante": ("open", "closed", "auth"),
    "microsocks": ("open", "auth"),
}
# The credentials an "auth" peer accepts (the probes never authenticate; tests of the peers do).
AUTH_USER = "peeruser"
AUTH_PASSWORD = "peer-Secret-1"


class PeerUnavailable(RuntimeError):
    """A server is not installed here (raised instead of skipping when CI=true)."""


class PeerError(RuntimeError):
    """A server did not start, reload or stop as expected; the message carries its log tail."""


def _binaries(name: str) -> list[Path]:
    return {
        "postfix": [
            Path("/usr/sbin/postfix"),
            POSTFIX_DAEMON_DIR / "master",
            Path("/usr/sbin/saslpasswd2"),
        ],
        "exim": [EXIM_ROOT / "usr/sbin/exim4"],
        "squid": [Path("/usr/sbin/squid"), Path("/usr/lib/squid/basic_ncsa_auth")],
        "tinyproxy": [Path("/usr/bin/tinyproxy")],
        "dante": [Path("/usr/sbin/danted")],
        "microsocks": [Path("/usr/bin/microsocks")],
    }[name]


def peer_unavailable_reason(name: str) -> str | None:
    """Why ``name`` cannot run here, or None. Never raises (see ``peer_available``)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown peer {name!r}; known: {', '.join(CONFIGS)}")
    if os.geteuid() != 0:
        return f"{name}: peers run as root (user switching, private /etc/hosts)"
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{name}: {tool} not found"
    for binary in _binaries(name):
        if not os.access(binary, os.X_OK):
            return f"{name}: {binary} not found ({INSTALL_HINT})"
    if name == "exim":
        try:
            import pwd

            pwd.getpwnam("Debian-exim")
        except KeyError:
            return f"exim: system user Debian-exim missing ({INSTALL_HINT})"
    return None


def peer_available(name: str) -> str | None:
    """None when ``name`` can run, else the reason; with CI=true a missing server raises instead."""
    reason = peer_unavailable_reason(name)
    if reason and os.environ.get("CI", "").lower() == "true":
        raise PeerUnavailable(f"{reason} (CI=true: a missing peer fails, it never skips)")
    return reason


def require_peer(name: str) -> None:
    """For tests: skip with the reason when ``name`` can't run, fail under CI=true."""
    reason = peer_available(name)
    if reason:
        import pytest

        pytest.skip(reason)


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


def _check_config(name: str, config: str) -> None:
    if config not in CONFIGS[name]:
        raise ValueError(
            f"{name} has no {config!r} configuration; known: {', '.join(CONFIGS[name])}"
        )


_nx_resolver: socket.socket | None = None
_nx_lock = threading.Lock()


def _start_nx_resolver() -> None:
    """Answer every UDP DNS query on NX_RESOLVER:53 with NXDOMAIN, from a daemon thread."""
    global _nx_resolver
    with _nx_lock:
        if _nx_resolver is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((NX_RESOLVER, 53))
        except OSError:  # another test process runs one already; either way nothing leaves
            sock.close()
            return
        _nx_resolver = sock
    threading.Thread(
        target=_serve_nxdomain, args=(sock,), name="peers-nx-resolver", daemon=True
    ).start()


def _serve_nxdomain(sock: socket.socket) -> None:
    while True:
        try:
            query, client = sock.recvfrom(512)
        except OSError:
            return
        if len(query) < 17 or query[2] & 0x80 or query[4:6] != b"\0\1":  # not a 1-question query
            continue
        end = 12
        while end < len(query) and query[end]:
            end += 1 + query[end]
        question = query[12 : end + 5]  # name, its zero byte, type and class; EDNS records dropped
        # Same id and question; QR=1, opcode and RD copied, RA=1, RCODE=3 (NXDOMAIN); no records.
        flags = bytes([0x80 | (query[2] & 0x79), 0x80 | 3])
        with contextlib.suppress(OSError):
            sock.sendto(query[:2] + flags + b"\0\1\0\0\0\0\0\0" + question, client)


def _write_resolver_files(peer: Peer) -> None:
    etc = peer.dir / "etc"
    etc.mkdir()
    lines = ["127.0.0.1 localhost", f"{peer.host} {peer.hostname}"]
    lines += [f"{ip} {name}" for name, ip in peer.hosts.items()]
    (etc / "hosts").write_text("\n".join(lines) + "\n")
    (etc / "resolv.conf").write_text(f"nameserver {NX_RESOLVER}\noptions timeout:1 attempts:1\n")
    (etc / "nsswitch.conf").write_text(
        "passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\n"
        "protocols: files\nservices: files\n"
    )
    for path in etc.iterdir():
        path.chmod(0o644)


def _isolated(peer: Peer, argv: list[str]) -> list[str]:
    """``argv`` in a private mount namespace with the instance's resolver files; same PID (exec)."""
    etc = peer.dir / "etc"
    script = (
        "set -e; for f in hosts resolv.conf nsswitch.conf; do "
        'if [ -e "/etc/$f" ]; then mount --bind "$0/$f" "/etc/$f"; fi; done; exec "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(etc), *argv]


def render(template: str, values: dict[str, object]) -> str:
    for key, value in values.items():
        template = template.replace(f"@@{key}@@", str(value))
    if "@@" in template.replace("@@@", ""):
        start = template.index("@@")
        raise PeerError(f"unfilled placeholder near {template[start : start + 40]!r}")
    return template


def _read(name: str, *parts: str) -> str:
    return (PEERS_DIR / name / Path(*parts)).read_text()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path.name}: no log)"


def _chown(path: Path, user: str, group: str | None = None) -> None:
    shutil.chown(path, user, group or user)


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and int(entry) != os.getpid():  # field 6 of stat: session id
            pids.append(int(entry))
    return pids


def _die_with_parent() -> None:
    # A test run killed outright (CI timeout, SIGKILL) must not leave a relay or proxy behind.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG; kept across exec


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _wait_port(host: str, port: int, deadline: float, *, banner: bool = False) -> bool:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                if not banner:
                    return True
                s.settimeout(2)
                if s.recv(64).startswith(b"220"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


class _Driver:
    kind = "proxy"  # "smtp" peers are ready when they greet with 220

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def prepare(self, peer: Peer) -> None:
        pass

    def write_config(self, peer: Peer) -> None:
        raise NotImplementedError

    def argv(self, peer: Peer) -> list[str]:
        raise NotImplementedError

    def values(self, peer: Peer) -> dict[str, object]:
        canary_host, canary_port = peer.canary_smtp or NOWHERE
        return {
            "LISTEN": peer.host,
            "PORT": peer.port,
            "DIR": peer.dir,
            "CONF_DIR": peer.dir / "conf",
            "HOSTNAME": peer.hostname,
            "CANARY_DOMAIN": peer.canary_domain,
            "CANARY_HOST": canary_host,
            "CANARY_PORT": canary_port,
            "NX_RESOLVER": NX_RESOLVER,
            "AUTH_USER": AUTH_USER,
            "AUTH_PASSWORD": AUTH_PASSWORD,
        }

    def start(self, peer: Peer) -> None:
        out = open(peer.dir / "stderr.log", "ab")
        try:
            peer._proc = subprocess.Popen(
                _isolated(peer, self.argv(peer)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,  # its children share the session: the sweep finds them
                close_fds=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            out.close()
        peer.pid = peer._proc.pid
        self.wait_ready(peer)

    def wait_ready(self, peer: Peer) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if peer._proc is not None and peer._proc.poll() is not None:
                raise PeerError(
                    f"{peer.name} exited with {peer._proc.returncode}:\n{self.log_tail(peer)}"
                )
            if self.is_ready(peer) and _wait_port(
                peer.host, peer.port, time.monotonic() + 2, banner=self.kind == "smtp"
            ):
                return
            time.sleep(0.05)
        raise PeerError(f"{peer.name} not ready on {peer.host}:{peer.port}:\n{self.log_tail(peer)}")

    def is_ready(self, peer: Peer) -> bool:
        return True

    def log_tail(self, peer: Peer) -> str:
        return "\n".join(
            f"== {path.name}\n{_tail(path)}"
            for path in sorted(peer.dir.rglob("*"))
            if path.is_file()
            and (path.suffix == ".log" or path.name in ("maillog", "mainlog", "paniclog"))
        )

    def reload(self, peer: Peer) -> None:
        # Servers without an in-place reload: restart on the same address and port.
        self.stop(peer)
        self.start(peer)

    def stop(self, peer: Peer) -> None:
        pid = peer.pid
        if pid is None:
            return
        peer.pid = None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            if peer._proc is not None:
                peer._proc.poll()
            time.sleep(0.05)
        # Whatever the server left in its session (helpers, workers): by PID, never by name.
        for leftover in [pid, *_session_pids(pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, signal.SIGKILL)
        if peer._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                peer._proc.wait(timeout=5)
            peer._proc = None


_POSTFIX_QUEUE = [
    *(
        (sub, 0o700, "root")
        for sub in (
            "active",
            "bounce",
            "corrupt",
            "defer",
            "deferred",
            "flush",
            "hold",
            "incoming",
            "private",
            "saved",
            "trace",
        )
    ),
    ("maildrop", 0o730, "postdrop"),
    ("public", 0o710, "postdrop"),
    ("pid", 0o755, "root"),
]


class _Postfix(_Driver):
    kind = "smtp"

    def prepare(self, peer: Peer) -> None:
        for sub in ("conf", "conf/sasl", "queue", "data"):
            (peer.dir / sub).mkdir()
        _chown(peer.dir / "data", "postfix")
        (peer.dir / "maillog").touch()

    def write_config(self, peer: Peer) -> None:
        values = self.values(peer)
        conf = peer.dir / "conf"
        main = (
            _read("postfix", "main.cf.common") + "\n" + _read("postfix", f"main.cf.{peer.config}")
        )
        (conf / "main.cf").write_text(render(main, values))
        (conf / "master.cf").write_text(render(_read("postfix", "master.cf"), values))
        # Postfix waits (in 0.3 s steps, ~1.5 s) until a just-written main.cf looks settled.
        past = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(conf / name, (past, past))
        if peer.config == "auth":
            sasl = conf / "sasl"  # Debian's Postfix reads <config_directory>/sasl/smtpd.conf
            (sasl / "smtpd.conf").write_text(render(_read("postfix", "smtpd.conf"), values))
            db = sasl / "sasldb2"
            if not db.exists():
                subprocess.run(
                    ["saslpasswd2", "-f", str(db), "-c", "-p", "-u", peer.hostname, AUTH_USER],
                    input=AUTH_PASSWORD.encode(),
                    check=True,
                    capture_output=True,
                )
                _chown(db, "postfix")
                db.chmod(0o600)

    def argv(self, peer: Peer) -> list[str]:
        # master stays in the foreground (it is the Popen PID); "postfix check" made the queue.
        return [str(POSTFIX_DAEMON_DIR / "master"), "-c", str(peer.dir / "conf")]

    def start(self, peer: Peer) -> None:
        # What "postfix check" would create (it takes ~2 s, most of a start): the queue tree.
        queue = peer.dir / "queue"
        if not (queue / "pid").exists():
            for sub, mode, group in _POSTFIX_QUEUE:
                path = queue / sub
                path.mkdir(exist_ok=True)
                if sub != "pid":
                    _chown(path, "postfix", group)
                path.chmod(mode)
        super().start(peer)

    def log_tail(self, peer: Peer) -> str:
        return _tail(peer.dir / "maillog") + "\n" + _tail(peer.dir / "stderr.log")

    def reload(self, peer: Peer) -> None:
        assert peer.pid is not None
        old_children = set(_children(peer.pid))
        marks = _count(peer.dir / "maillog", "reload -- version")
        subprocess.run(
            ["postfix", "-c", str(peer.dir / "conf"), "reload"], check=True, capture_output=True
        )
        deadline = time.monotonic() + self.timeout
        # In force once the master logged the reload and every pre-reload child has gone.
        while time.monotonic() < deadline:
            if _count(peer.dir / "maillog", "reload -- version") > marks and not (
                old_children & set(_children(peer.pid))
            ):
                break
            time.sleep(0.05)
        else:
            raise PeerError(f"postfix reload not in force:\n{self.log_tail(peer)}")
        self.wait_ready(peer)


class _Exim(_Driver):
    kind = "smtp"

    def prepare(self, peer: Peer) -> None:
        for sub in ("conf", "spool", "log"):
            (peer.dir / sub).mkdir()
            _chown(peer.dir / sub, "Debian-exim")

    def write_config(self, peer: Peer) -> None:
        values = {**self.values(peer), "EXIM_BIN": EXIM_ROOT / "usr/sbin/exim4"}
        text = _read("exim", "common.conf") + "\n" + _read("exim", f"{peer.config}.conf")
        text += "\n" + _read("exim", "routers.conf")
        path = peer.dir / "conf" / "exim.conf"
        path.write_text(render(text, values))
        path.chmod(0o644)

    def argv(self, peer: Peer) -> list[str]:
        # -bdf: daemon in the foreground; -q5s: a queue runner retries deferred canary mail soon.
        return [
            str(EXIM_ROOT / "usr/sbin/exim4"),
            "-C",
            str(peer.dir / "conf" / "exim.conf"),
            "-bdf",
            "-q5s",
        ]

    def is_ready(self, peer: Peer) -> bool:
        return (peer.dir / "exim.pid").exists()

    # reload: a restart. On SIGHUP the daemon re-execs itself, but an exec with -C outside
    # Debian's TRUSTED_CONFIG_LIST drops root, and it can no longer bind port 25.


class _Squid(_Driver):
    def prepare(self, peer: Peer) -> None:
        (peer.dir / "conf").mkdir()
        for name in ("cache.log", "access.log"):
            (peer.dir / name).touch()
            _chown(peer.dir / name, "proxy")
        _chown(peer.dir, "proxy")  # pid file and core dumps; squid writes them as proxy
        hosts = [f"{ip} {name}" for name, ip in peer.hosts.items()]
        (peer.dir / "hosts").write_text("\n".join(hosts) + "\n")
        htpasswd = (
            subprocess.run(
                ["openssl", "passwd", "-apr1", "-stdin"],
                input=AUTH_PASSWORD.encode(),
                check=True,
                capture_output=True,
            )
            .stdout.decode()
            .strip()
        )
        (peer.dir / "htpasswd").write_text(f"{AUTH_USER}:{htpasswd}\n")

    def write_config(self, peer: Peer) -> None:
        text = _read("squid", "common.conf") + "\n" + _read("squid", f"squid.{peer.config}.conf")
        (peer.dir / "conf" / "squid.conf").write_text(render(text, self.values(peer)))

    def argv(self, peer: Peer) -> list[str]:
        # -N: no daemon, no worker fork: the Popen PID is squid itself.
        return ["/usr/sbin/squid", "-N", "-f", str(peer.dir / "conf" / "squid.conf")]

    def is_ready(self, peer: Peer) -> bool:
        return _count(peer.dir / "cache.log", "Accepting HTTP Socket connections") > 0

    def reload(self, peer: Peer) -> None:
        assert peer.pid is not None
        marks = _count(peer.dir / "cache.log", "Accepting HTTP Socket connections")
        os.kill(peer.pid, signal.SIGHUP)  # what "squid -k reconfigure" sends
        deadline = time.monotonic() + self.timeout
        while _count(peer.dir / "cache.log", "Accepting HTTP Socket connections") <= marks:
            if time.monotonic() > deadline:
                raise PeerError(f"squid did not reconfigure:\n{self.log_tail(peer)}")
            time.sleep(0.05)
        self.wait_ready(peer)


class _Tinyproxy(_Driver):
    def prepare(self, peer: Peer) -> None:
        (peer.dir / "conf").mkdir()
        (peer.dir / "tinyproxy.log").touch()
        _chown(peer.dir / "tinyproxy.log", "nobody", "nogroup")

    def write_config(self, peer: Peer) -> None:
        values = self.values(peer)
        text = _read("tinyproxy", "common.conf") + "\n" + _read("tinyproxy", f"{peer.config}.conf")
        (peer.dir / "conf" / "tinyproxy.conf").write_text(render(text, values))
        values["CANARY_DOMAIN_RE"] = re.escape(peer.canary_domain)
        (peer.dir / "conf" / "filter").write_text(render(_read("tinyproxy", "filter"), values))
        # tinyproxy reads the config again as nobody on reload
        for path in (peer.dir / "conf").iterdir():
            path.chmod(0o644)

    def argv(self, peer: Peer) -> list[str]:
        return ["/usr/bin/tinyproxy", "-d", "-c", str(peer.dir / "conf" / "tinyproxy.conf")]


class _Dante(_Driver):
    def prepare(self, peer: Peer) -> None:
        (peer.dir / "conf").mkdir()

    def write_config(self, peer: Peer) -> None:
        text = _read("dante", "common.conf") + "\n" + _read("dante", f"{peer.config}.conf")
        (peer.dir / "conf" / "danted.conf").write_text(render(text, self.values(peer)))

    def argv(self, peer: Peer) -> list[str]:
        return [
            "/usr/sbin/danted",
            "-f",
            str(peer.dir / "conf" / "danted.conf"),
            "-p",
            str(peer.dir / "danted.pid"),
            "-N",
            "1",
        ]


class _Microsocks(_Driver):
    def write_config(self, peer: Peer) -> None:
        pass  # microsocks has only command-line options

    def argv(self, peer: Peer) -> list[str]:
        argv = ["/usr/bin/microsocks", "-i", peer.host, "-p", str(peer.port), "-b", peer.host]
        if peer.config == "auth":
            argv += ["-u", AUTH_USER, "-P", AUTH_PASSWORD]
        return argv


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _count(path: Path, needle: str) -> int:
    try:
        return path.read_text(errors="replace").count(needle)
    except OSError:
        return 0


DRIVERS: dict[str, type[_Driver]] = {
    "postfix": _Postfix,
    "exim": _Exim,
    "squid": _Squid,
    "tinyproxy": _Tinyproxy,
    "dante": _Dante,
    "microsocks": _Microsocks,
}
