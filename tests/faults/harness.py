"""Real processes for the fault suite: a Redis server of our own (killed and restarted by PID),
an SMTP sink under the test's control, Celery workers and beat on the test database."""

from __future__ import annotations

import email
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(rb"SYS-\d{4}-\d{6}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# --- Redis --------------------------------------------------------------------------------------
class RedisServer:
    """Our own redis-server on a free loopback port, with an append-only file, so a kill -9 and
    a restart keep what was written (as the compose file's Redis does)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory),
             "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert wait_for(self.ping, 10), "our redis-server did not start"

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        self.kill()


# --- SMTP sink ----------------------------------------------------------------------------------
@dataclass
class SinkControl:
    """What the sink answers. Each list is consumed one reply at a time, then "250"."""

    mail_replies: list[str] = field(default_factory=list)  # e.g. "421 4.3.2 busy"
    rcpt_replies: list[str] = field(default_factory=list)  # e.g. "451 4.7.1 greylisted"
    refuse: str = ""  # recipients containing this get 550
    hold_after_data: threading.Event | None = None  # held until set
    holding: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, replies: list[str]) -> str:
        with self.lock:
            return replies.pop(0) if replies else ""


class SmtpSink:
    def __init__(self) -> None:
        self.control = SinkControl()
        self.received: list[bytes] = []  # the case reference of each accepted message
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = 60

            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")
                self.wfile.flush()

            def handle(self) -> None:
                self.reply("220 sink.test ESMTP")
                recipients: list[str] = []
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        self.reply("250 sink.test")
                    elif verb == b"MAIL":
                        recipients = []
                        self.reply(sink.control.next(sink.control.mail_replies) or "250 ok")
                    elif verb == b"RCPT":
                        address = line.decode(errors="replace")
                        if sink.control.refuse and sink.control.refuse in address:
                            self.reply("550 5.1.1 no such user")
                            continue
                        answer = sink.control.next(sink.control.rcpt_replies) or "250 ok"
                        if answer.startswith("250"):
                            recipients.append(address)
                        self.reply(answer)
                    elif verb == b"DATA":
                        self.reply("354 go on")
                        data = []
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data.append(chunk)
                        message = email.message_from_bytes(b"".join(data))
                        found = REFERENCE.search(str(message["Subject"]).encode())
                        with sink.control.lock:
                            sink.received.append(found.group(0) if found else b"?")
                        held = sink.control.hold_after_data
                        if held is not None:
                            sink.control.holding.set()
                            held.wait(60)
                        self.reply("250 2.0.0 queued")
                    elif verb == b"RSET":
                        self.reply("250 ok")
                    elif verb == b"QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 ok")

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.control.hold_after_data is not None:
            self.control.hold_after_data.set()
        self.server.shutdown()
        self.server.server_close()

    def counts(self) -> Counter[str]:
        with self.control.lock:
            return Counter(ref.decode() for ref in self.received)


# --- Celery processes ---------------------------------------------------------------------------
def process_env(
    redis: RedisServer, sink: SmtpSink | None, var: Path, **extra: str
) -> dict[str, str]:
    db = connection.settings_dict
    env = dict(os.environ)
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    env.update(
        DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@{host}:{port}/{db['NAME']}",
        REDIS_URL=redis.url,
        VAR_DIR=str(var),
        MAIL_ESP="smtp",
        MAIL_SMTP_ADDR=f"127.0.0.1:{sink.port if sink else 9}",
        MAIL_SMTP_TIMEOUT="8",
        LETTER_RATE_PER_MINUTE="6000",
        LETTER_DISPATCH_INTERVAL="1",
        LETTER_DISPATCH_LEASE="12",
        # Long enough for a PDF on a busy machine; a dead worker's claim waits this long.
        LETTER_SEND_TIME_LIMIT="40",
        LETTER_SEND_LEASE="45",
        LETTER_RETRY_BACKOFF="1",
        RECONCILE_INTERVAL="3",
        SCAN_BATCH_LEASE="15",
        SCAN_PENDING_GRACE="5",
        # Only the reconciler brings a dead worker's messages back within the test's bounds.
        CELERY_VISIBILITY_TIMEOUT="3600",
    )
    env.update(extra)
    return env


class CeleryProcess:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *self.argv],
            cwd=ROOT,
            env=self.env,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def children(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def kill_child(self) -> int | None:
        """kill -9 of one pool process (the worker starts a new one)."""
        for child in self.children():
            os.kill(child, signal.SIGKILL)
            return child
        return None

    def kill(self) -> None:
        """kill -9 of the whole worker: the main process and its pool."""
        if not self.alive():
            return
        children = self.children()
        os.kill(self.pid, signal.SIGKILL)
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert self.process is not None
        self.process.wait(10)

    def stop(self) -> None:
        if not self.alive():
            return
        assert self.process is not None
        children = self.children()
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass


def worker(env: dict[str, str], log: Path, queues: str, name: str, concurrency: int = 2):
    return CeleryProcess(
        ["worker", "-Q", queues, "--pool", "prefork", "--concurrency", str(concurrency),
         "--prefetch-multiplier", "1", "-n", f"{name}-{os.getpid()}@%h", "--without-gossip",
         "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"],
        env,
        log,
    ).start()  # fmt: skip


def beat(env: dict[str, str], log: Path, var: Path) -> CeleryProcess:
    return CeleryProcess(
        ["beat", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
         "--max-interval", "1", "--loglevel", "INFO", "--pidfile", str(var / "beat.pid")],
        env,
        log,
    ).start()  # fmt: skip


def terminate_backends() -> int:
    """A database blip without restarting the shared server: end every other session on this
    test database (the workers' and beat's), as a failover or a restart would."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def report_row(row: dict[str, object]) -> None:
    """One row of `make faults`' table (FAULTS_REPORT names the file), and the test's output."""
    print(json.dumps(row))
    path = os.environ.get("FAULTS_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(row) + "\n")
