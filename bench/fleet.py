"""A fast asyncio fleet: thousands of loopback targets, each playing one trap behaviour.

One process serves every target (one listener per IP and port), so the benchmark can aim 2,000
distinct addresses at the scanner, one connection per IP being the scanner's rule. Run it as

    python -m bench.fleet SPEC.json

where SPEC is {"targets": [[ip, port, behaviour], ...], "sink": [ip, port] | null,
"hold_seconds": 60}. It prints one line "ready N" on stdout once every listener is bound and
serves until SIGTERM/SIGINT (the benchmark stops it by its PID).

Behaviours (BEHAVIOURS: which port family each uses and what the server really is):
smtp_open_relay (accepts everything and really relays the message to the sink), smtp_catchall
(accepts every RCPT and DATA, discards), smtp_closed (554 on every RCPT), smtp_postscreen
(450 4.3.2 on every RCPT), smtp_tarpit (never greets), http_open_proxy (forwards GET/HEAD and
CONNECT, to loopback IP literals only), http_captive (200 and the same page for everything),
http_closed_403 (a Squid-style 403 for everything), socks_grant_all (SOCKS4/5: grants every
request, forwards nothing), socks5_open (SOCKS5, no auth, forwards to loopback only).

Safety: nothing here resolves a name or connects anywhere but 127.0.0.0/8 or ::1, and it listens
on 127.0.0.0/8 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import resource
import signal
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# The fleet's relays forward and parse paths exactly as the traps of the test suite do.
from fakes.smtp_traps import final_recipient, forward, strip_path

IO_TIMEOUT = 10.0
HEAD_MAX = 16 * 1024
RELAY_MAX = 256 * 1024
RELAY_SECONDS = 20.0
LINE_MAX = 4096


@dataclass(frozen=True)
class Behaviour:
    family: str  # "smtp", "http" or "socks": the port it listens on and how nmap tests it
    port: int
    open: bool  # the ground truth: does it really relay/forward for anyone?
    what: str


BEHAVIOURS: dict[str, Behaviour] = {
    "smtp_open_relay": Behaviour("smtp", 25, True, "relays the test message to the sink"),
    "smtp_catchall": Behaviour("smtp", 25, False, "accepts every RCPT and DATA, discards"),
    "smtp_closed": Behaviour("smtp", 25, False, "554 5.7.1 Relay access denied"),
    "smtp_postscreen": Behaviour("smtp", 25, False, "450 4.3.2 on every RCPT"),
    "smtp_tarpit": Behaviour("smtp", 25, False, "accepts the connection, never greets"),
    "http_open_proxy": Behaviour("http", 3128, True, "forwards GET and CONNECT (loopback only)"),
    "http_captive": Behaviour("http", 3128, False, "200 and the same page for everything"),
    "http_closed_403": Behaviour("http", 3128, False, "Squid-style 403 for everything"),
    "socks_grant_all": Behaviour("socks", 1080, False, "grants every request, forwards nothing"),
    "socks5_open": Behaviour("socks", 1080, True, "SOCKS5 no-auth, forwards (loopback only)"),
}

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def loopback_literal(host: str) -> str | None:
    """The address when `host` is a loopback IP literal; None for names and anything else."""
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    return str(addr) if addr.is_loopback else None


async def _upstream(
    host: str, port: int, client: asyncio.StreamWriter
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    ip = loopback_literal(host)
    if ip is None:
        raise PermissionError(host)
    own = str(client.get_extra_info("sockname")[0])
    local = (own, 0) if (":" in own) == (":" in ip) else None  # exit from the target's own IP
    return await asyncio.wait_for(asyncio.open_connection(ip, port, local_addr=local), IO_TIMEOUT)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    moved = 0
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while moved < RELAY_MAX:
            data = await reader.read(4096)
            if not data:
                break
            moved += len(data)
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()


async def _relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_r: asyncio.StreamReader,
    up_w: asyncio.StreamWriter,
) -> None:
    """Both ways until the upstream side is done (or RELAY_SECONDS): a tunnel or a fetch."""
    to_upstream = asyncio.ensure_future(_pipe(reader, up_w))
    try:
        await asyncio.wait_for(_pipe(up_r, writer), RELAY_SECONDS)
    except TimeoutError:
        pass
    finally:
        to_upstream.cancel()
        up_w.transport.abort()


async def _hold(reader: asyncio.StreamReader, seconds: float) -> None:
    """Swallow whatever arrives and answer nothing, until the peer leaves or time is up."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            total = 0
            while total < RELAY_MAX:
                data = await reader.read(4096)
                if not data:
                    return
                total += len(data)


# --- SMTP ----------------------------------------------------------------------------------


_background: set[asyncio.Task[None]] = set()


def _smtp(kind: str, sink: tuple[str, int] | None, hold: float) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if kind == "smtp_tarpit":
            await _hold(reader, hold)
            return
        own = str(writer.get_extra_info("sockname")[0])
        name = f"mx-{own.replace('.', '-')}.fleet.test"
        writer.write(f"220 {name} ESMTP Postfix (Debian/GNU)\r\n".encode())
        ehlo = f"250-{name}\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n".encode()
        mail_from: str | None = None
        rcpts: list[str] = []
        while True:
            line = await asyncio.wait_for(reader.readline(), IO_TIMEOUT)
            if not line or len(line) > LINE_MAX:
                return
            text = line.decode("latin-1").rstrip("\r\n")
            verb = text.split(" ", 1)[0].split(":", 1)[0].upper()
            if verb == "EHLO":
                writer.write(ehlo)
            elif verb == "HELO":
                writer.write(f"250 {name}\r\n".encode())
            elif verb == "MAIL":
                mail_from, rcpts = text.split(":", 1)[1].strip() if ":" in text else "", []
                writer.write(b"250 2.1.0 Ok\r\n")
            elif verb == "RCPT":
                if mail_from is None:
                    writer.write(b"503 5.5.1 Error: need MAIL command\r\n")
                elif kind == "smtp_closed":
                    addr = strip_path(text.split(":", 1)[1]) if ":" in text else ""
                    writer.write(f"554 5.7.1 <{addr}>: Relay access denied\r\n".encode())
                elif kind == "smtp_postscreen":
                    writer.write(b"450 4.3.2 Service currently unavailable\r\n")
                else:
                    rcpts.append(text.split(":", 1)[1].strip() if ":" in text else "")
                    writer.write(b"250 2.1.5 Ok\r\n")
            elif verb == "DATA":
                if not rcpts:
                    writer.write(b"554 5.5.1 Error: no valid recipients\r\n")
                    continue
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                chunks: list[bytes] = []
                size = 0
                while True:
                    data = await asyncio.wait_for(reader.readline(), IO_TIMEOUT)
                    if not data:
                        return
                    if data.rstrip(b"\r\n") == b".":
                        break
                    size += len(data)
                    if size < 64 * 1024:
                        chunks.append(data[1:] if data.startswith(b".") else data)
                writer.write(b"250 2.0.0 Ok: queued as 4FLEET\r\n")
                finals = [r for r in (final_recipient(p) for p in rcpts) if r]
                if kind == "smtp_open_relay" and sink and finals:
                    task = asyncio.get_running_loop().create_task(
                        _quiet(
                            forward(
                                sink, mail_from or "<>", finals, b"".join(chunks), source=(own, 0)
                            )
                        )
                    )
                    _background.add(task)
                    task.add_done_callback(_background.discard)
                mail_from, rcpts = None, []
            elif verb == "RSET":
                mail_from, rcpts = None, []
                writer.write(b"250 2.0.0 Ok\r\n")
            elif verb == "NOOP":
                writer.write(b"250 2.0.0 Ok\r\n")
            elif verb == "QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"502 5.5.2 Error: command not recognized\r\n")
            await writer.drain()

    return handle


async def _quiet(coro: Awaitable[None]) -> None:
    with contextlib.suppress(Exception):
        await coro


# --- HTTP ----------------------------------------------------------------------------------


def page(status: str, body: str, extra: str = "") -> bytes:
    data = body.encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {len(data)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    ).encode() + data


CAPTIVE_PAGE = page(
    "200 OK",
    "<html><head><title>Welcome</title></head><body><h1>Guest Wi-Fi</h1>"
    "<p>Please accept the terms of use to continue.</p></body></html>",
)
SQUID_DENIED = page(
    "403 Forbidden",
    "<html><body><h1>ERROR</h1><h2>The requested URL could not be retrieved</h2>"
    "<p>Access control configuration prevents your request from being allowed.</p>"
    "<p>Generated by proxy.fleet.test (squid/6.10)</p><!-- ERR_ACCESS_DENIED --></body></html>",
    "Server: squid/6.10\r\nX-Squid-Error: ERR_ACCESS_DENIED 0\r\n",
)
BAD_REQUEST = page("400 Bad Request", "<h1>400</h1><p>fleet-proxy: send an absolute URI.</p>")
FORBIDDEN = page("403 Forbidden", "<h1>403</h1><p>fleet-proxy: destination not allowed.</p>")
UPSTREAM_FAILED = page("502 Bad Gateway", "<h1>502</h1><p>fleet-proxy: upstream failed.</p>")


async def read_head(reader: asyncio.StreamReader) -> tuple[str, str, list[str]] | None:
    try:
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3:
        return None
    return parts[0], parts[1], [ln for ln in lines[1:] if ln]


def split_authority(authority: str, default_port: int) -> tuple[str, int]:
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    return host, int(port) if port.isdigit() else default_port


def _http(kind: str) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        if head is None:
            return
        if kind == "http_captive":
            writer.write(CAPTIVE_PAGE)
            return
        if kind == "http_closed_403":
            writer.write(SQUID_DENIED)
            return
        method, target, headers = head
        if method == "CONNECT":
            host, port = split_authority(target, 443)
            if loopback_literal(host) is None:
                writer.write(FORBIDDEN)
                return
            try:
                up_r, up_w = await _upstream(host, port, writer)
            except (OSError, TimeoutError):
                writer.write(UPSTREAM_FAILED)
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\nProxy-Agent: fleet\r\n\r\n")
            await writer.drain()
            await _relay(reader, writer, up_r, up_w)
            return
        if not target.lower().startswith("http://"):
            writer.write(BAD_REQUEST)
            return
        authority, _, path = target[7:].partition("/")
        host, port = split_authority(authority, 80)
        if loopback_literal(host) is None:
            # Never resolves: a name (the scanner's .invalid baseline too) cannot be fetched.
            writer.write(page("502 Bad Gateway", f"<p>fleet-proxy: cannot resolve {host}</p>"))
            return
        try:
            up_r, up_w = await _upstream(host, port, writer)
        except (OSError, TimeoutError):
            writer.write(UPSTREAM_FAILED)
            return
        skip = ("connection:", "proxy-connection:", "keep-alive:")
        lines = [f"{method} /{path} HTTP/1.1"]
        lines += [h for h in headers if not h.lower().startswith(skip)]
        peer = writer.get_extra_info("peername")
        lines += ["Via: 1.1 fleet-proxy", f"X-Forwarded-For: {peer[0] if peer else ''}"]
        lines.append("Connection: close")
        up_w.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await _relay(reader, writer, up_r, up_w)

    return handle


# --- SOCKS ---------------------------------------------------------------------------------

SOCKS5_GRANTED = b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00"


async def _socks4_request(reader: asyncio.StreamReader) -> tuple[str, int]:
    head = await asyncio.wait_for(reader.readexactly(7), IO_TIMEOUT)  # after VN
    (port,) = struct.unpack("!H", head[1:3])
    ip = ipaddress.IPv4Address(head[3:7])
    await asyncio.wait_for(reader.readuntil(b"\x00"), IO_TIMEOUT)  # user id
    if str(ip).startswith("0.0.0.") and str(ip) != "0.0.0.0":  # SOCKS4a: a name follows
        name = await asyncio.wait_for(reader.readuntil(b"\x00"), IO_TIMEOUT)
        return name[:-1].decode("latin-1"), port
    return str(ip), port


async def _socks5_request(reader: asyncio.StreamReader) -> tuple[str, int] | None:
    ver, cmd, _rsv, atyp = await asyncio.wait_for(reader.readexactly(4), IO_TIMEOUT)
    if ver != 5 or cmd != 1:
        return None
    if atyp == 1:
        host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
    elif atyp == 4:
        host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
    elif atyp == 3:
        size = (await reader.readexactly(1))[0]
        host = (await reader.readexactly(size)).decode("latin-1")
    else:
        return None
    (port,) = struct.unpack("!H", await reader.readexactly(2))
    return host, port


def _socks(kind: str, hold: float) -> Handler:
    grant_all = kind == "socks_grant_all"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        version = (await asyncio.wait_for(reader.readexactly(1), IO_TIMEOUT))[0]
        if version == 4 and grant_all:
            await _socks4_request(reader)
            writer.write(b"\x00\x5a" + b"\x00" * 6)
            await writer.drain()
            await _hold(reader, hold)
            return
        if version != 5:
            return  # socks5_open speaks SOCKS5 only: anything else is dropped
        nmethods = (await asyncio.wait_for(reader.readexactly(1), IO_TIMEOUT))[0]
        methods = await asyncio.wait_for(reader.readexactly(nmethods), IO_TIMEOUT)
        if 0 not in methods:
            writer.write(b"\x05\xff")
            return
        writer.write(b"\x05\x00")
        request = await _socks5_request(reader)
        if request is None:
            writer.write(b"\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00")
            return
        if grant_all:
            writer.write(SOCKS5_GRANTED)
            await writer.drain()
            await _hold(reader, hold)
            return
        host, port = request
        try:
            up_r, up_w = await _upstream(host, port, writer)
        except PermissionError:
            writer.write(b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00")  # not allowed by ruleset
            return
        except (OSError, TimeoutError):
            writer.write(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")  # connection refused
            return
        writer.write(SOCKS5_GRANTED)
        await writer.drain()
        await _relay(reader, writer, up_r, up_w)

    return handle


# --- the server ----------------------------------------------------------------------------


def handler_for(kind: str, sink: tuple[str, int] | None, hold: float) -> Handler:
    family = BEHAVIOURS[kind].family
    if family == "smtp":
        inner = _smtp(kind, sink, hold)
    elif family == "http":
        inner = _http(kind)
    else:
        inner = _socks(kind, hold)

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await inner(reader, writer)
            await asyncio.wait_for(writer.drain(), IO_TIMEOUT)
        except (OSError, ValueError, EOFError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.LimitOverrunError:
            pass
        finally:
            writer.transport.abort()

    return guarded


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def serve(spec: dict[str, object], ready: Callable[[int], None] | None = None) -> None:
    targets = spec["targets"]
    assert isinstance(targets, list)
    sink_spec = spec.get("sink")
    sink = (str(sink_spec[0]), int(sink_spec[1])) if isinstance(sink_spec, list) else None
    hold = float(spec.get("hold_seconds", 60))  # type: ignore[arg-type]
    handlers = {kind: handler_for(kind, sink, hold) for kind in BEHAVIOURS}
    servers: list[asyncio.Server] = []
    for ip, port, kind in targets:
        if not ipaddress.ip_address(ip).is_loopback:
            raise ValueError(f"the fleet listens on loopback only, not {ip}")
        servers.append(
            await asyncio.start_server(
                handlers[kind], ip, int(port), reuse_address=True, backlog=256, limit=LINE_MAX * 4
            )
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready(len(servers))
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()
        for task in list(_background):
            task.cancel()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.fleet SPEC.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        spec = json.load(f)
    raise_nofile()

    def ready(count: int) -> None:
        sys.stdout.write(f"ready {count}\n")
        sys.stdout.flush()

    asyncio.run(serve(spec, ready))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
