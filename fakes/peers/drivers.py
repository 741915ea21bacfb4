"""One driver per server (Postfix, Exim, Squid, tinyproxy, Dante, microsocks): how to configure,
start, reconfigure and stop it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from typing import TYPE_CHECKING

from fakes.peers.common import (
    AUTH_PASSWORD,
    AUTH_USER,
    EXIM_ROOT,
    NOWHERE,
    NX_RESOLVER,
    POSTFIX_DAEMON_DIR,
    PeerError,
    _alive,
    _children,
    _chown,
    _count,
    _die_with_parent,
    _isolated,
    _read,
    _session_pids,
    _tail,
    _wait_port,
    render,
)

if TYPE_CHECKING:
    from fakes.peers import Peer


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


DRIVERS: dict[str, type[_Driver]] = {
    "postfix": _Postfix,
    "exim": _Exim,
    "squid": _Squid,
    "tinyproxy": _Tinyproxy,
    "dante": _Dante,
    "microsocks": _Microsocks,
}
