"""Small asyncio servers that play proxies (open, half-open, closed, hostile) for probe tests.

Each runs in a background thread with its own loop: `with run_trap("open_http", "127.0.31.1") as
(host, port): ...`. The ones that forward reach only loopback IP literals (127.0.0.0/8, ::1) and
never resolve a name, so nothing they do can leave the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from fakes.proxy_plumbing import (
    HEAD_MAX,
    IO_TIMEOUT,
    RELAY_SECONDS,
    hold,
    loopback,
    page,
    peer,
    read_head,
    relay,
    socks4_request,
    socks5_methods,
    socks5_request,
    split_authority,
    upstream,
)
from scanning.probes.canary import CanaryConfig, MemoryHitStore
from scanning.probes.canary_http import start_http_canary, start_selfcheck_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _cannot_resolve(host: str, name: str) -> bytes:
    return page("502 Bad Gateway", f"<h1>502</h1><p>{name}: cannot resolve {host}.</p>")


# --- HTTP proxies --------------------------------------------------------------------------


def http_proxy(
    *,
    forward_get: bool,
    connect: str,
    strip_body: bool = False,
    headers: bool = True,
    name: str = "trap-proxy",
    timeout: float = IO_TIMEOUT,
    relay_seconds: float = RELAY_SECONDS,
) -> Handler:
    """connect: "relay" (a real tunnel), "hold" (grant and forward nothing) or "deny".

    `name` is what the proxy calls itself (Via, Proxy-Agent, its error pages)."""
    forbidden = page("403 Forbidden", f"<h1>403</h1><p>{name}: destination not allowed.</p>")
    bad_request = page("400 Bad Request", f"<h1>400</h1><p>{name}: send an absolute URI.</p>")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader, timeout)
        if head is None:
            return
        method, target, req_headers = head
        if method == "CONNECT":
            host, port = split_authority(target, 443)
            if connect == "deny" or not loopback(host):
                writer.write(forbidden)
                return
            if connect == "hold":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await hold(reader)
                return
            try:
                up_r, up_w = await upstream(host, port, writer, timeout)
            except (OSError, TimeoutError):
                writer.write(page("503 Service Unavailable", f"<p>{name}: connect failed</p>"))
                return
            writer.write(
                f"HTTP/1.1 200 Connection established\r\nProxy-Agent: {name}\r\n\r\n".encode()
            )
            await writer.drain()
            await relay(reader, writer, up_r, up_w, relay_seconds)
            return
        if not target.lower().startswith("http://"):
            writer.write(bad_request)
            return
        authority, _, path = target[7:].partition("/")
        host, port = split_authority(authority, 80)
        if not loopback(host):
            writer.write(_cannot_resolve(host, name) if host.endswith(".invalid") else forbidden)
            return
        if not forward_get:
            writer.write(page("503 Service Unavailable", f"<p>{name}: GET disabled</p>"))
            return
        try:
            up_r, up_w = await upstream(host, port, writer, timeout)
        except (OSError, TimeoutError):
            writer.write(page("502 Bad Gateway", f"<p>{name}: upstream failed</p>"))
            return
        lines = [f"{method} /{path} HTTP/1.1"]
        skip = {"connection", "proxy-connection", "keep-alive"}
        lines += [f"{k}: {v}" for k, v in req_headers.items() if k.lower() not in skip]
        if headers:
            lines += [f"Via: 1.1 {name}", f"X-Forwarded-For: {peer(writer)}"]
        lines.append("Connection: close")
        up_w.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await up_w.drain()
        if strip_body:
            reply = await asyncio.wait_for(up_r.read(HEAD_MAX), timeout)
            status = reply.split(b"\r\n", 1)[0]
            writer.write(status + f"\r\nContent-Length: 0\r\nVia: 1.1 {name}\r\n\r\n".encode())
            up_w.close()
            return
        await relay(reader, writer, up_r, up_w, relay_seconds)

    return handle


def fixed(reply: bytes, connect_then_hold: bool = False, timeout: float = IO_TIMEOUT) -> Handler:
    """The same reply to every request, whatever it asks for."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader, timeout)
        if head is None:
            return
        writer.write(reply)
        await writer.drain()
        if connect_then_hold and head[0] == "CONNECT":
            await hold(reader)

    return handle


CAPTIVE_PAGE = page(
    "200 OK",
    "<html><head><title>Welcome</title></head><body><h1>Guest Wi-Fi</h1>"
    "<p>Please accept the terms of use to continue.</p></body></html>",
)
SQUID_DENIED = page(
    "403 Forbidden",
    "<html><body><h1>ERROR</h1><h2>The requested URL could not be retrieved</h2>"
    "<p>Access control configuration prevents your request from being allowed.</p>"
    "<p>Generated Fri, 27 Nov 2026 12:00:00 GMT by proxy.example (squid/6.10)</p>"
    "<!-- ERR_ACCESS_DENIED --></body></html>",
    "Server: squid/6.10\r\nX-Squid-Error: ERR_ACCESS_DENIED 0\r\n"
    "Via: 1.1 proxy.example (squid/6.10)\r\n",
)
TINYPROXY_407 = page(
    "407 Proxy Authentication Required",
    "<html><head><title>407 Proxy Authentication Required</title></head><body>"
    "<h1>Proxy Authentication Required</h1><p>This proxy requires authentication.</p>"
    "<hr /><p><em>Generated by tinyproxy version 1.11.1.</em></p></body></html>",
    'Server: tinyproxy/1.11.1\r\nProxy-Authenticate: Basic realm="tinyproxy"\r\n',
)
INTERCEPTED = page("200 OK", "<html><body>OK</body></html>")


# --- SOCKS ---------------------------------------------------------------------------------


SOCKS5_GRANTED = b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00"


def socks(
    *,
    v4: bool,
    v5: bool,
    forward: bool,
    v5_auth: str | None = None,
    timeout: float = IO_TIMEOUT,
    hold_seconds: float | None = None,
    relay_seconds: float = RELAY_SECONDS,
) -> Handler:
    """v5_auth: None (no auth), "ff" (answer 0xFF unless 02 offered) or "02" (always 02).

    Without `forward` every request is granted and nothing is forwarded (for `hold_seconds`,
    or until the client leaves)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        version = (await asyncio.wait_for(reader.readexactly(1), timeout))[0]
        if version == 4 and v4:
            host, port = await socks4_request(reader, timeout)
            if not forward:
                writer.write(b"\x00\x5a" + b"\x00" * 6)
                await writer.drain()
                await hold(reader, hold_seconds)
                return
            try:
                up_r, up_w = await upstream(host, port, writer, timeout)
            except (OSError, TimeoutError):
                writer.write(b"\x00\x5b" + b"\x00" * 6)
                return
            writer.write(b"\x00\x5a" + struct.pack("!H", port) + b"\x00" * 4)
            await writer.drain()
            await relay(reader, writer, up_r, up_w, relay_seconds)
        elif version == 5 and v5:
            methods = await socks5_methods(reader, timeout)
            if v5_auth == "02" or (v5_auth == "ff" and 2 in methods):
                writer.write(b"\x05\x02")
                return
            if v5_auth == "ff" or 0 not in methods:
                writer.write(b"\x05\xff")
                return
            writer.write(b"\x05\x00")
            request = await socks5_request(reader, timeout)
            if request is None:
                writer.write(b"\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00")  # not supported
                return
            if not forward:
                writer.write(SOCKS5_GRANTED)
                await writer.drain()
                await hold(reader, hold_seconds)
                return
            host, port = request
            try:
                up_r, up_w = await upstream(host, port, writer, timeout)
            except PermissionError:
                writer.write(b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00")
                return
            except (OSError, TimeoutError):
                writer.write(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
                return
            writer.write(SOCKS5_GRANTED)
            await writer.drain()
            await relay(reader, writer, up_r, up_w, relay_seconds)

    return handle


# --- hostile peers -------------------------------------------------------------------------


async def _tarpit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await hold(reader)
    await asyncio.sleep(3600)


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Starts with bytes that are neither "HTTP/" nor a SOCKS version, then never stops.
    for _ in range(4096):
        writer.write(b"\xde\xad\xbe\xef" + os.urandom(252))
        await writer.drain()
        await asyncio.sleep(0.001)


async def _dripping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A slowloris reply: one header byte at a time, never finished."""
    await read_head(reader)
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100000:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.05)


TRAPS: dict[str, Handler] = {
    "open_http": http_proxy(forward_get=True, connect="relay"),
    "open_http_elite": http_proxy(forward_get=True, connect="relay", headers=False),
    "connect_only": http_proxy(forward_get=False, connect="hold"),
    "strip_body": http_proxy(forward_get=True, connect="deny", strip_body=True),
    "auth_407": fixed(TINYPROXY_407),
    "refuse_403": fixed(SQUID_DENIED),
    "captive": fixed(CAPTIVE_PAGE),
    "interceptor": fixed(INTERCEPTED, connect_then_hold=True),
    "socks4": socks(v4=True, v5=False, forward=True),
    "socks5": socks(v4=False, v5=True, forward=True),
    "socks5_auth": socks(v4=False, v5=True, forward=True, v5_auth="ff"),
    "socks5_auth02": socks(v4=False, v5=True, forward=True, v5_auth="02"),
    "socks_grant_all": socks(v4=True, v5=True, forward=False),
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
            tasks.add(task)
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
                tasks.discard(task)

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
