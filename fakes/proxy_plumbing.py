"""What every fake proxy needs: reading a request, reaching loopback upstreams, relaying, holding.

Shared by the test traps (fakes/proxy_traps.py) and the benchmark's fleet (fakes/fleet.py). An
upstream is only ever a loopback IP literal: nothing here resolves a name or leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import struct

IO_TIMEOUT = 5.0
HEAD_MAX = 16 * 1024
RELAY_MAX = 1024 * 1024
RELAY_SECONDS = 30.0


def loopback(host: str) -> bool:
    """Is `host` a loopback IP literal? A name is not: fakes never resolve."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_authority(authority: str, default_port: int) -> tuple[str, int]:
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    return host, int(port) if port.isdigit() else default_port


async def read_head(
    reader: asyncio.StreamReader, timeout: float = IO_TIMEOUT
) -> tuple[str, str, dict[str, str]] | None:
    """(method, target, headers) of an HTTP request; None when it is not one."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > HEAD_MAX:
            return None
        chunk = await asyncio.wait_for(reader.read(4096), timeout)
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


def page(status: str, body: str, extra: str = "", content_type: str = "text/html") -> bytes:
    data = body.encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    ).encode() + data


def peer(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    return str(address[0]) if address else ""


async def upstream(
    host: str, port: int, client: asyncio.StreamWriter, timeout: float = IO_TIMEOUT
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a loopback destination (PermissionError for anything else), leaving from the
    fake's own address, as a real proxy's exit IP is its own."""
    host = host.strip("[]")
    if not loopback(host):
        raise PermissionError(host)
    own = str(client.get_extra_info("sockname")[0])
    local = (own, 0) if (":" in own) == (":" in host) else None
    return await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=local), timeout)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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


async def relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_r: asyncio.StreamReader,
    up_w: asyncio.StreamWriter,
    seconds: float = RELAY_SECONDS,
) -> None:
    """Both ways until the upstream side is done (or `seconds`): a tunnel or a fetch."""
    to_upstream = asyncio.ensure_future(pipe(reader, up_w))
    try:
        await asyncio.wait_for(pipe(up_r, writer), seconds)
    except TimeoutError:
        pass
    finally:
        to_upstream.cancel()
        up_w.transport.abort()


async def hold(reader: asyncio.StreamReader, seconds: float | None = None) -> None:
    """Swallow whatever arrives and answer nothing, until the peer leaves (or `seconds` pass)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            total = 0
            while total < RELAY_MAX:
                data = await reader.read(4096)
                if not data:
                    return
                total += len(data)


# --- SOCKS requests --------------------------------------------------------------------------


async def socks4_request(
    reader: asyncio.StreamReader, timeout: float = IO_TIMEOUT
) -> tuple[str, int]:
    """(host, port) of a SOCKS4/4a CONNECT, its version byte already read."""
    head = await asyncio.wait_for(reader.readexactly(7), timeout)
    (port,) = struct.unpack("!H", head[1:3])
    ip = ipaddress.IPv4Address(head[3:7])
    await asyncio.wait_for(reader.readuntil(b"\x00"), timeout)  # user id
    if str(ip).startswith("0.0.0.") and str(ip) != "0.0.0.0":  # SOCKS4a: a name follows
        name = await asyncio.wait_for(reader.readuntil(b"\x00"), timeout)
        return name[:-1].decode("latin-1"), port
    return str(ip), port


async def socks5_methods(reader: asyncio.StreamReader, timeout: float = IO_TIMEOUT) -> list[int]:
    """The methods a SOCKS5 greeting offers, its version byte already read."""
    nmethods = (await asyncio.wait_for(reader.readexactly(1), timeout))[0]
    return list(await asyncio.wait_for(reader.readexactly(nmethods), timeout))


async def socks5_request(
    reader: asyncio.StreamReader, timeout: float = IO_TIMEOUT
) -> tuple[str, int] | None:
    """(host, port) of a SOCKS5 CONNECT; None for another command or address type."""
    ver, cmd, _rsv, atyp = await asyncio.wait_for(reader.readexactly(4), timeout)
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
