"""Small asyncio servers that play proxies (open, half-open, closed, hostile) for probe tests.

Each runs in a background thread with its own loop: `with run_trap("open_http", "127.0.31.1") as
(host, port): ...`. The ones that forward reach only loopback IP literals (127.0.0.0/8, ::1) and
never resolve a name, so nothing they do can leave the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import os
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from scanning.probes.canary import CanaryConfig, MemoryHitStore
from scanning.probes.canary_http import start_http_canary, start_selfcheck_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

IO_TIMEOUT = 5.0
HEAD_MAX = 16 * 1024
RELAY_MAX = 1024 * 1024


# --- helpers -------------------------------------------------------------------------------


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: traps never resolve


def _split_authority(authority: str, default_port: int) -> tuple[str, int]:
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    return host, int(port) if port.isdigit() else default_port


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > HEAD_MAX:
            return None
        chunk = await asyncio.wait_for(reader.read(4096), IO_TIMEOUT)
        if not chunk:
            return None
        buf += chunk
    lines = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3:
        return None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return parts[0], parts[1], headers


def _page(status: str, body: str, extra: str = "", content_type: str = "text/html") -> bytes:
    data = body.encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    ).encode() + data


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    moved = 0
    try:
        while moved < RELAY_MAX:
            data = await reader.read(4096)
            if not data:
                break
            moved += len(data)
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof() if writer.can_write_eof() else None


async def _relay(
    a_r: asyncio.StreamReader,
    a_w: asyncio.StreamWriter,
    b_r: asyncio.StreamReader,
    b_w: asyncio.StreamWriter,
) -> None:
    try:
        await asyncio.wait_for(asyncio.gather(_pipe(a_r, b_w), _pipe(b_r, a_w)), 30)
    except TimeoutError:
        pass
    finally:
        b_w.close()


async def _upstream(
    host: str, port: int, client: asyncio.StreamWriter
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host = host.strip("[]")
    if not _loopback(host):
        raise PermissionError(host)
    # Leave from the trap's own address, as a real proxy's exit IP is its own.
    own = str(client.get_extra_info("sockname")[0])
    local = (own, 0) if (":" in own) == (":" in host) else None
    return await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=local), IO_TIMEOUT)


async def _hold(reader: asyncio.StreamReader) -> None:
    """Swallow whatever arrives, answer nothing (until the peer gives up)."""
    total = 0
    while total < RELAY_MAX:
        data = await reader.read(4096)
        if not data:
            return
        total += len(data)


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if peer else ""


BAD_REQUEST = _page("400 Bad Request", "<h1>400</h1><p>trap-proxy: send an absolute URI.</p>")


def _cannot_resolve(host: str) -> bytes:
    return _page("502 Bad Gateway", f"<h1>502</h1><p>trap-proxy: cannot resolve {host}.</p>")


FORBIDDEN = _page("403 Forbidden", "<h1>403</h1><p>trap-proxy: destination not allowed.</p>")


# --- HTTP proxies --------------------------------------------------------------------------


def _http_proxy(
    *, forward_get: bool, connect: str, strip_body: bool = False, headers: bool = True
) -> Handler:
    """connect: "relay" (a real tunnel), "hold" (grant and forward nothing) or "deny"."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _read_head(reader)
        if head is None:
            return
        method, target, req_headers = head
        if method == "CONNECT":
            host, port = _split_authority(target, 443)
            if connect == "deny" or not _loopback(host):
                writer.write(FORBIDDEN)
                return
            if connect == "hold":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await _hold(reader)
                return
            try:
                up_r, up_w = await _upstream(host, port, writer)
            except (OSError, TimeoutError):
                writer.write(_page("503 Service Unavailable", "<p>trap-proxy: connect failed</p>"))
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\nProxy-Agent: trap-proxy\r\n\r\n")
            await writer.drain()
            await _relay(reader, writer, up_r, up_w)
            return
        if not target.lower().startswith("http://"):
            writer.write(BAD_REQUEST)
            return
        authority, _, path = target[7:].partition("/")
        host, port = _split_authority(authority, 80)
        if not _loopback(host):
            writer.write(_cannot_resolve(host) if host.endswith(".invalid") else FORBIDDEN)
            return
        if not forward_get:
            writer.write(_page("503 Service Unavailable", "<p>trap-proxy: GET disabled</p>"))
            return
        try:
            up_r, up_w = await _upstream(host, port, writer)
        except (OSError, TimeoutError):
            writer.write(_page("502 Bad Gateway", "<p>trap-proxy: upstream failed</p>"))
            return
        lines = [f"{method} /{path} HTTP/1.1"]
        skip = {"connection", "proxy-connection", "keep-alive"}
        lines += [f"{k}: {v}" for k, v in req_headers.items() if k.lower() not in skip]
        if headers:
            lines += ["Via: 1.1 trap-proxy", f"X-Forwarded-For: {_peer(writer)}"]
        lines.append("Connection: close")
        up_w.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await up_w.drain()
        if strip_body:
            reply = await asyncio.wait_for(up_r.read(HEAD_MAX), IO_TIMEOUT)
            status = reply.split(b"\r\n", 1)[0]
            writer.write(status + b"\r\nContent-Length: 0\r\nVia: 1.1 trap-proxy\r\n\r\n")
            up_w.close()
            return
        await _relay(reader, writer, up_r, up_w)

    return handle


def _fixed(reply: bytes, connect_then_hold: bool = False) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _read_head(reader)
        if head is None:
            return
        writer.write(reply)
        await writer.drain()
        if connect_then_hold and head[0] == "CONNECT":
            await _hold(reader)

    return handle


CAPTIVE_PAGE = _page(
    "200 OK",
    "<html><head><title>Welcome</title></head><body><h1>Guest Wi-Fi</h1>"
    "<p>Please accept the terms of use to continue.</p></body></html>",
)
SQUID_DENIED = _page(
    "403 Forbidden",
    "<html><body><h1>ERROR</h1><h2>The requested URL could not be retrieved</h2>"
    "<p>Access control configuration prevents your request from being allowed.</p>"
    "<p>Generated Fri, 27 Nov 2026 12:00:00 GMT by proxy.example (squid/6.10)</p>"
    "<!-- ERR_ACCESS_DENIED --></body></html>",
    "Server: squid/6.10\r\nX-Squid-Error: ERR_ACCESS_DENIED 0\r\n"
    "Via: 1.1 proxy.example (squid/6.10)\r\n",
)
TINYPROXY_407 = _page(
    "407 Proxy Authentication Required",
    "<html><head><title>407 Proxy Authentication Required</title></head><body>"
    "<h1>Proxy Authentication Required</h1><p>This proxy requires authentication.</p>"
    "<hr /><p><em>Generated by tinyproxy version 1.11.1.</em></p></body></html>",
    'Server: tinyproxy/1.11.1\r\nProxy-Authenticate: Basic realm="tinyproxy"\r\n',
)
INTERCEPTED = _page("200 OK", "<html><body>OK</body></html>")


# --- SOCKS ---------------------------------------------------------------------------------


async def _socks4_request(reader: asyncio.StreamReader) -> tuple[str, int]:
    head = await asyncio.wait_for(reader.readexactly(7), IO_TIMEOUT)  # after VN
    _cd, port = struct.unpack("!BH", head[:3])
    ip = ipaddress.IPv4Address(head[3:7])
    await asyncio.wait_for(reader.readuntil(b"\x00"), IO_TIMEOUT)  # user id
    if str(ip).startswith("0.0.0.") and str(ip) != "0.0.0.0":
        name = await asyncio.wait_for(reader.readuntil(b"\x00"), IO_TIMEOUT)
        return name[:-1].decode("latin-1"), port
    return str(ip), port


async def _socks5_request(reader: asyncio.StreamReader) -> tuple[str, int]:
    ver, _cmd, _rsv, atyp = await asyncio.wait_for(reader.readexactly(4), IO_TIMEOUT)
    if ver != 5:
        raise ValueError("not socks5")
    if atyp == 1:
        host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
    elif atyp == 4:
        host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
    else:
        size = (await reader.readexactly(1))[0]
        host = (await reader.readexactly(size)).decode("latin-1")
    (port,) = struct.unpack("!H", await reader.readexactly(2))
    return host, port


async def _socks5_greeting(reader: asyncio.StreamReader) -> list[int]:
    nmethods = (await asyncio.wait_for(reader.readexactly(1), IO_TIMEOUT))[0]
    return list(await asyncio.wait_for(reader.readexactly(nmethods), IO_TIMEOUT))


def _socks(*, v4: bool, v5: bool, forward: bool, v5_auth: str | None = None) -> Handler:
    """v5_auth: None (no auth), "ff" (answer 0xFF unless 02 offered) or "02" (always 02)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        version = (await asyncio.wait_for(reader.readexactly(1), IO_TIMEOUT))[0]
        if version == 4 and v4:
            host, port = await _socks4_request(reader)
            if not forward:
                writer.write(b"\x00\x5a" + b"\x00" * 6)
                await writer.drain()
                await _hold(reader)
                return
            try:
                up_r, up_w = await _upstream(host, port, writer)
            except (OSError, TimeoutError):
                writer.write(b"\x00\x5b" + b"\x00" * 6)
                return
            writer.write(b"\x00\x5a" + struct.pack("!H", port) + b"\x00" * 4)
            await writer.drain()
            await _relay(reader, writer, up_r, up_w)
        elif version == 5 and v5:
            methods = await _socks5_greeting(reader)
            if v5_auth == "02" or (v5_auth == "ff" and 2 in methods):
                writer.write(b"\x05\x02")
                return
            if v5_auth == "ff" or 0 not in methods:
                writer.write(b"\x05\xff")
                return
            writer.write(b"\x05\x00")
            host, port = await _socks5_request(reader)
            granted = b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00"
            if not forward:
                writer.write(granted)
                await writer.drain()
                await _hold(reader)
                return
            try:
                up_r, up_w = await _upstream(host, port, writer)
            except PermissionError:
                writer.write(b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00")
                return
            except (OSError, TimeoutError):
                writer.write(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
                return
            writer.write(granted)
            await writer.drain()
            await _relay(reader, writer, up_r, up_w)

    return handle


# --- hostile peers -------------------------------------------------------------------------


async def _tarpit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _hold(reader)
    await asyncio.sleep(3600)


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Starts with bytes that are neither "HTTP/" nor a SOCKS version, then never stops.
    for _ in range(4096):
        writer.write(b"\xde\xad\xbe\xef" + os.urandom(252))
        await writer.drain()
        await asyncio.sleep(0.001)


async def _dripping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A slowloris reply: one header byte at a time, never finished."""
    await _read_head(reader)
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100000:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.05)


TRAPS: dict[str, Handler] = {
    "open_http": _http_proxy(forward_get=True, connect="relay"),
    "open_http_elite": _http_proxy(forward_get=True, connect="relay", headers=False),
    "connect_only": _http_proxy(forward_get=False, connect="hold"),
    "strip_body": _http_proxy(forward_get=True, connect="deny", strip_body=True),
    "auth_407": _fixed(TINYPROXY_407),
    "refuse_403": _fixed(SQUID_DENIED),
    "captive": _fixed(CAPTIVE_PAGE),
    "interceptor": _fixed(INTERCEPTED, connect_then_hold=True),
    "socks4": _socks(v4=True, v5=False, forward=True),
    "socks5": _socks(v4=False, v5=True, forward=True),
    "socks5_auth": _socks(v4=False, v5=True, forward=True, v5_auth="ff"),
    "socks5_auth02": _socks(v4=False, v5=True, forward=True, v5_auth="02"),
    "socks_grant_all": _socks(v4=True, v5=True, forward=False),
    "tarpit": _tarpit,
    "garbage": _garbage,
    "dripping": _dripping,
}


@contextlib.contextmanager
def run_trap(kind: str, host: str = "127.0.31.1") -> Iterator[tuple[str, int]]:
    """Serve TRAPS[kind] on host (a free port) in a background thread; yields (host, port)."""
    handler = TRAPS[kind]
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, object] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            tasks.add(task)  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
            await writer.drain()
        except (OSError, ValueError, EOFError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except (asyncio.LimitOverrunError, asyncio.CancelledError):
            pass  # cancelled at shutdown: end quietly
        finally:
            writer.close()
            if task is not None:
                tasks.discard(task)  # type: ignore[arg-type]

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(asyncio.start_server(guarded, host, 0))
        except OSError as exc:
            state["error"] = exc
            ready.set()
            return
        state["port"] = server.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()
        server.close()
        for task in list(tasks):
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(server.wait_closed())
        loop.close()

    thread = threading.Thread(target=main, name=f"trap-{kind}", daemon=True)
    thread.start()
    ready.wait(10)
    if "error" in state:
        raise state["error"]  # type: ignore[misc]
    try:
        yield host, int(state["port"])  # type: ignore[call-overload]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


# --- the canary side -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_canary(
    host: str = "127.0.30.1", *, v6: bool = True, secret: bytes = b"test-canary-secret"
) -> AsyncIterator[tuple[CanaryConfig, MemoryHitStore]]:
    """HTTP, TLS and SMTP-sink canary plus a self-check port, on free ports, in this loop."""
    from scanning.probes.smtp_sink import start_smtp_sink

    hits = MemoryHitStore()
    draft = CanaryConfig(
        domain="canary.sys-test.example",
        http_addr=(host, 0),
        tls_addr=(host, 0),
        smtp_addr=(host, 0),
        secret=secret,
    )
    servers = [
        await start_http_canary(draft, hits, host, 0),
        await start_http_canary(draft, hits, host, 0, tls=True),
        await start_smtp_sink(draft, hits, host, 0),
        await start_selfcheck_port(host, 0),
    ]
    if v6:
        servers.append(await start_http_canary(draft, hits, "::1", 0))
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    canary = dataclasses.replace(
        draft,
        http_addr=(host, ports[0]),
        tls_addr=(host, ports[1]),
        smtp_addr=(host, ports[2]),
        selfcheck_addr=(host, ports[3]),
        http_addr6=("::1", ports[4]) if v6 else None,
    )
    try:
        yield canary, hits
    finally:
        for server in servers:
            server.close()
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
