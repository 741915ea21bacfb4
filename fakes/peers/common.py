"""What the real peers share: where their configurations live, which are installed, the private
name resolution they run under, and the process helpers that start and stop them by PID."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fakes.peers import Peer

REPO_ROOT = Path(__file__).resolve().parents[2]
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
