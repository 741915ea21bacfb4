"""Small SMTP peers ("traps") for probe tests, benchmarks and CLI tests.

Each trap runs in a background thread with its own event loop on a loopback address:

    with run_trap("closed", "127.0.20.1") as (host, port):
        ...

Kinds: open, discriminating, closed, catchall, greylist, postscreen, starttls, auth, tarpit,
bigbanner, garbage, greet-disconnect, http. Options (keyword arguments of run_trap):
sink=(host, port) makes open/discriminating/greylist forward accepted mail there; banner=...;
tls=True wraps any kind in implicit TLS; port=... picks the port (0: a free one). See _OPTIONS.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

KINDS = (
    "open",
    "discriminating",
    "closed",
    "catchall",
    "greylist",
    "postscreen",
    "starttls",
    "auth",
    "tarpit",
    "bigbanner",
    "garbage",
    "greet-disconnect",
    "http",
)

_OPTIONS = {
    "sink",  # (host, port): forward accepted mail there (open, discriminating, greylist)
    "banner",  # the greeting text after "220 "
    "greeting",  # the whole greeting line, code included (e.g. "421 4.3.2 Try later": then hang up)
    "hostname",  # the name in the greeting and EHLO
    "tls",  # implicit TLS (SMTPS) around any kind
    "control",  # open: "accept" (default, checks nothing) or "refuse" .invalid domains
    "after_tls",  # starttls: how the server behaves once TLS is up (a kind; default "closed")
    "advertise",  # starttls: advertise STARTTLS in EHLO (default True)
    "broken_tls",  # starttls: True answers STARTTLS with 454, "handshake" hangs up after 220
    "drip",  # tarpit: send one byte a second instead of nothing
    "single_line",  # bigbanner: one 1 MB line instead of many 220- lines
    "drop_after",  # any SMTP kind: disconnect after this many refused commands (Postfix: 10)
    "greylist_delay",  # greylist: seconds before a retried triplet is accepted (default 0)
    "forward_delay",  # open/discriminating/greylist: seconds the mail sits queued before it goes
    "speak_first",  # http: send an HTTP reply at once instead of waiting for a request
}


@dataclass
class TrapState:
    connections: int = 0
    peers: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    refused_per_connection: list[int] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    forwarded: int = 0
    forward_errors: list[str] = field(default_factory=list)
    greylist: dict[tuple[str, str, str], float] = field(default_factory=dict)

    @property
    def max_refused_per_connection(self) -> int:
        return max(self.refused_per_connection, default=0)


class TrapAddress(tuple[str, int]):
    """(host, port), with the trap's state for assertions."""

    state: TrapState

    def __new__(cls, host: str, port: int, state: TrapState) -> TrapAddress:
        obj = super().__new__(cls, (host, port))
        obj.state = state
        return obj

    @property
    def host(self) -> str:
        return self[0]

    @property
    def port(self) -> int:
        return self[1]


@functools.lru_cache(maxsize=1)
def self_signed_cert() -> tuple[str, str]:
    """(cert path, key path) of a throwaway self-signed certificate, made once per process."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.trap.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    folder = tempfile.mkdtemp(prefix="smtp-traps-")
    cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def server_tls_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*self_signed_cert())
    return ctx


def strip_path(arg: str) -> str:
    arg = arg.strip()
    if arg.startswith("<"):
        arg = arg[1 : arg.find(">")] if ">" in arg else arg[1:]
    else:
        arg = arg.split(" ", 1)[0]
    return arg


def final_recipient(path: str) -> str | None:
    """Where a relay that honours every historic routing trick would deliver `path`."""
    a = strip_path(path)
    if a.startswith("@") and ":" in a:  # source route
        a = a.split(":", 1)[1]
    a = a.replace('"', "")
    if "!" in a:  # bang path: domain!user, possibly @relay
        left, _, right = a.partition("!")
        a = f"{right.split('@', 1)[0]}@{left}"
    elif "%" in a:  # percent hack: user%domain@relay
        a = a.rsplit("@", 1)[0].replace("%", "@", 1)
    elif a.count("@") > 1:  # double-at / quoted local part: user@domain@relay
        a = a.rsplit("@", 1)[0]
    if "@" not in a:
        return None
    domain = a.rsplit("@", 1)[1].lower().rstrip(".")
    if domain.endswith(".invalid") or domain.startswith("["):
        return None
    return a


async def forward(
    sink: tuple[str, int],
    mail_from: str,
    rcpts: list[str],
    data: bytes,
    source: tuple[str, int] | None = None,
) -> None:
    """Relay one message to `sink` the way an MTA would (our relays only ever reach the sink)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*sink, local_addr=source), 5)
    try:

        async def expect(prefix: bytes) -> None:
            while True:
                line = await asyncio.wait_for(reader.readline(), 5)
                if not line.startswith(prefix):
                    raise RuntimeError(f"sink said {line!r}")
                if line[3:4] != b"-":
                    return

        async def say(line: str, prefix: bytes) -> None:
            writer.write(line.encode() + b"\r\n")
            await expect(prefix)

        await expect(b"220")
        await say("EHLO relay.trap.test", b"250")
        await say(f"MAIL FROM:<{strip_path(mail_from)}>", b"250")
        for rcpt in rcpts:
            await say(f"RCPT TO:<{rcpt}>", b"250")
        await say("DATA", b"354")
        received = b"Received: from trap-client by relay.trap.test with ESMTP\r\n"
        body = received + data
        lines = body.split(b"\r\n")
        writer.write(b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines))
        if not body.endswith(b"\r\n"):
            writer.write(b"\r\n")
        await say(".", b"250")
        writer.write(b"QUIT\r\n")
    finally:
        writer.close()


class _SmtpSession:
    def __init__(
        self,
        kind: str,
        opts: dict[str, Any],
        state: TrapState,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.kind = kind
        self.opts = opts
        self.state = state
        self.reader = reader
        self.writer = writer
        self.hostname = opts.get("hostname", "mx.trap.test")
        self.tls = bool(opts.get("tls"))
        self.refused = 0
        self.mail_from: str | None = None
        self.rcpts: list[str] = []
        peer = writer.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else ""

    @property
    def behaviour(self) -> str:
        if self.kind == "starttls" and self.tls:
            return str(self.opts.get("after_tls", "closed"))
        return self.kind

    async def say(self, *lines: str) -> None:
        self.writer.write(b"".join(line.encode() + b"\r\n" for line in lines))
        await self.writer.drain()

    async def refuse(self, line: str) -> bool:
        """Send a refusal; False when the connection is to be dropped (an error limit)."""
        self.refused += 1
        self.state.refused_per_connection[-1] = self.refused
        await self.say(line)
        drop_after = self.opts.get("drop_after")
        return not (drop_after and self.refused >= drop_after)

    def ehlo_lines(self) -> list[str]:
        lines = [f"{self.hostname} Hello {self.peer}", "PIPELINING", "SIZE 10240000"]
        if self.kind == "starttls" and not self.tls and self.opts.get("advertise", True):
            lines.append("STARTTLS")
        if self.behaviour == "auth":
            lines.append("AUTH PLAIN LOGIN")
        lines.append("8BITMIME")
        return [f"250-{x}" for x in lines[:-1]] + [f"250 {lines[-1]}"]

    async def run(self) -> None:
        banner = self.opts.get("banner", f"{self.hostname} ESMTP Postfix (Debian/GNU)")
        greeting = self.opts.get("greeting", f"220 {banner}")
        await self.say(greeting)
        if greeting.startswith("421"):
            return
        while True:
            try:
                line = await asyncio.wait_for(self.reader.readuntil(b"\n"), 60)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            self.state.commands.append(text)
            verb = text.split(" ", 1)[0].split(":", 1)[0].upper()
            if verb == "EHLO":
                await self.say(*self.ehlo_lines())
            elif verb == "HELO":
                await self.say(f"250 {self.hostname}")
            elif verb == "STARTTLS":
                if self.kind != "starttls" or self.tls:
                    await self.say("502 5.5.1 Error: command not implemented")
                elif self.opts.get("broken_tls") == "handshake":
                    await self.say("220 2.0.0 Ready to start TLS")
                    return  # and hang up instead of a handshake
                elif self.opts.get("broken_tls"):
                    await self.say("454 4.7.0 TLS not available due to local problem")
                else:
                    await self.say("220 2.0.0 Ready to start TLS")
                    await self.writer.start_tls(server_tls_context())
                    self.tls = True
                    self.mail_from, self.rcpts = None, []
            elif verb == "MAIL":
                if not await self.mail(text):
                    return
            elif verb == "RCPT":
                if not await self.rcpt(text):
                    return
            elif verb == "DATA":
                if not self.rcpts:
                    await self.say("554 5.5.1 Error: no valid recipients")
                    continue
                await self.say("354 End data with <CR><LF>.<CR><LF>")
                await self.data()
            elif verb == "RSET":
                self.mail_from, self.rcpts = None, []
                await self.say("250 2.0.0 Ok")
            elif verb == "NOOP":
                await self.say("250 2.0.0 Ok")
            elif verb == "QUIT":
                await self.say("221 2.0.0 Bye")
                return
            else:
                await self.say("502 5.5.2 Error: command not recognized")

    async def mail(self, text: str) -> bool:
        if self.kind == "starttls" and not self.tls:
            return await self.refuse("530 5.7.0 Must issue a STARTTLS command first")
        self.mail_from, self.rcpts = text.split(":", 1)[1].strip(), []
        await self.say("250 2.1.0 Ok")
        return True

    async def rcpt(self, text: str) -> bool:
        if self.mail_from is None:
            return await self.refuse("503 5.5.1 Error: need MAIL command")
        path = text.split(":", 1)[1].strip()
        address = strip_path(path)
        invalid = address.lower().rstrip(".").endswith(".invalid")
        kind = self.behaviour
        if kind == "closed":
            return await self.refuse(f"554 5.7.1 <{address}>: Relay access denied")
        if kind == "postscreen":
            return await self.refuse("450 4.3.2 Service currently unavailable")
        if kind == "auth":
            return await self.refuse("530 5.7.0 Authentication required")
        if invalid and (kind == "discriminating" or self.opts.get("control") == "refuse"):
            return await self.refuse(
                f"550 5.1.2 <{address}>: Recipient address rejected: Domain not found"
            )
        if kind == "greylist":
            triplet = (self.peer, self.mail_from.lower(), path.lower())
            first = self.state.greylist.get(triplet)
            if first is None or time.monotonic() - first < self.opts.get("greylist_delay", 0):
                self.state.greylist.setdefault(triplet, time.monotonic())
                return await self.refuse(
                    f"450 4.7.1 <{address}>: Recipient address rejected: Greylisted, "
                    "see http://postgrey.schweikert.ch/help/trap.test.html"
                )
        self.rcpts.append(path)
        await self.say("250 2.1.5 Ok")
        return True

    async def data(self) -> None:
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                line = await asyncio.wait_for(self.reader.readuntil(b"\n"), 60)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            if line.rstrip(b"\r\n") == b".":
                break
            size += len(line)
            if size < 1024 * 1024:
                chunks.append(line[1:] if line.startswith(b".") else line)
        message = b"".join(chunks)
        self.state.messages.append(message)
        await self.say("250 2.0.0 Ok: queued as 4TRAP1")
        sink = self.opts.get("sink")
        targets = [r for r in (final_recipient(p) for p in self.rcpts) if r]
        if sink and targets and self.behaviour in ("open", "discriminating", "greylist"):
            task = asyncio.get_running_loop().create_task(
                self._forward(sink, self.mail_from or "<>", targets, message)
            )
            _background.add(task)
            task.add_done_callback(_background.discard)
        self.mail_from, self.rcpts = None, []

    async def _forward(
        self, sink: tuple[str, int], mail_from: str, rcpts: list[str], data: bytes
    ) -> None:
        try:
            await asyncio.sleep(self.opts.get("forward_delay", 0))  # a queue run, as real MTAs do
            # From the trap's own address, as a relay's delivery would come from the relay.
            local = self.writer.get_extra_info("sockname")
            await forward(sink, mail_from, rcpts, data, source=(local[0], 0) if local else None)
            self.state.forwarded += 1
        except Exception as exc:  # a trap must never die; the test sees the missing hit
            self.state.forward_errors.append(repr(exc))


_background: set[asyncio.Task[None]] = set()


async def _serve_non_smtp(
    kind: str, opts: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    if kind == "tarpit":
        if opts.get("drip"):
            for byte in b"220 slow.trap.test ESMTP\r\n" * 100:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1)
        await asyncio.sleep(3600)
    elif kind == "bigbanner":
        if opts.get("single_line"):
            lines = [b"220 " + b"x" * (1024 * 1024) + b"\r\n"]
        else:
            line = b"220-" + b"x" * 96 + b"\r\n"
            lines = [line] * (1024 * 1024 // len(line)) + [b"220 big.trap.test ESMTP\r\n"]
        for i in range(0, len(lines), 64):
            if writer.is_closing():
                return
            writer.write(b"".join(lines[i : i + 64]))
            await writer.drain()
        await asyncio.sleep(3600)
    elif kind == "garbage":
        data = bytearray(os.urandom(64 * 1024))
        data[0] = 0xFF  # never a digit, so it can't pass for a reply code by luck
        writer.write(bytes(data))
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
        await asyncio.sleep(3600)
    elif kind == "greet-disconnect":
        writer.write(b"220 flaky.trap.test ESMTP\r\n")
        await writer.drain()
    elif kind == "http":
        if not opts.get("speak_first"):
            with contextlib.suppress(
                TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError
            ):
                await asyncio.wait_for(reader.readuntil(b"\n"), 30)
        body = b"<html><body>Bad Request</body></html>"
        writer.write(
            b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Type: text/html\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()


class Trap:
    """One trap server in a background thread; `start()` returns its TrapAddress."""

    def __init__(self, kind: str, host: str = "127.0.0.1", port: int = 0, **opts: Any) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown trap kind {kind!r}; one of {', '.join(KINDS)}")
        unknown = set(opts) - _OPTIONS
        if unknown:
            raise ValueError(f"unknown trap options: {', '.join(sorted(unknown))}")
        self.kind, self.host, self.port, self.opts = kind, host, port, opts
        self.state = TrapState()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name=f"trap-{kind}", daemon=True)

    def start(self) -> TrapAddress:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("trap did not start")
        if self._error:
            raise self._error
        return TrapAddress(self.host, self.port, self.state)

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(); a failed bind must not hang the test
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        tasks: set[asyncio.Task[Any]] = set()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task:
                tasks.add(task)
            self.state.connections += 1
            peer = writer.get_extra_info("peername")
            self.state.peers.append(str(peer[0]) if peer else "")
            self.state.refused_per_connection.append(0)
            try:
                if self.kind in ("tarpit", "bigbanner", "garbage", "greet-disconnect", "http"):
                    await _serve_non_smtp(self.kind, self.opts, reader, writer)
                else:
                    await _SmtpSession(self.kind, self.opts, self.state, reader, writer).run()
            except (ConnectionError, OSError, ssl.SSLError, asyncio.CancelledError):
                pass
            finally:
                writer.transport.abort()
                if task:
                    tasks.discard(task)

        ssl_ctx = server_tls_context() if self.opts.get("tls") else None
        server = await asyncio.start_server(
            handle, self.host, self.port, ssl=ssl_ctx, limit=2 * 1024 * 1024
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(tasks) + list(_background):
                task.cancel()
            await asyncio.sleep(0)


@contextlib.contextmanager
def run_trap(
    kind: str, host: str = "127.0.0.1", port: int = 0, **opts: Any
) -> Iterator[TrapAddress]:
    trap = Trap(kind, host, port, **opts)
    address = trap.start()
    try:
        yield address
    finally:
        trap.stop()
