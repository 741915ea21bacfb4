"""The benchmark fleet's behaviours: what each of its thousands of loopback targets plays.

One process (bench/fleet.py) serves every target, so each behaviour is a plain asyncio handler.
The proxies are the test traps' own (fakes/proxy_traps.py), with the fleet's longer timeouts; the
mail servers are a compact SMTP server here, relaying through fakes/smtp_traps.py as the traps do.

Behaviours (BEHAVIOURS: which port family each uses and what the server really is):
smtp_open_relay (accepts everything and really relays the message to the sink), smtp_catchall
(accepts every RCPT and DATA, discards), smtp_closed (554 on every RCPT), smtp_postscreen
(450 4.3.2 on every RCPT), smtp_tarpit (never greets), http_open_proxy (forwards GET/HEAD and
CONNECT, to loopback IP literals only), http_captive (200 and the same page for everything),
http_closed_403 (a Squid-style 403 for everything), socks_grant_all (SOCKS4/5: grants every
request, forwards nothing), socks5_open (SOCKS5, no auth, forwards to loopback only).

Safety: nothing here resolves a name or connects anywhere but 127.0.0.0/8 or ::1.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass

from fakes.proxy_plumbing import hold as hold_quietly
from fakes.proxy_traps import CAPTIVE_PAGE, SQUID_DENIED, Handler, fixed, http_proxy, socks
from fakes.smtp_traps import final_recipient, forward, strip_path

IO_TIMEOUT = 10.0
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

# --- SMTP ----------------------------------------------------------------------------------


_background: set[asyncio.Task[None]] = set()


def _smtp(kind: str, sink: tuple[str, int] | None, hold: float) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if kind == "smtp_tarpit":
            await hold_quietly(reader, hold)
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


# --- every behaviour ---------------------------------------------------------------------


def _proxy(kind: str, hold: float) -> Handler:
    if kind == "http_open_proxy":
        return http_proxy(
            forward_get=True,
            connect="relay",
            name="fleet-proxy",
            timeout=IO_TIMEOUT,
            relay_seconds=RELAY_SECONDS,
        )
    if kind == "http_captive":
        return fixed(CAPTIVE_PAGE, timeout=IO_TIMEOUT)
    if kind == "http_closed_403":
        return fixed(SQUID_DENIED, timeout=IO_TIMEOUT)
    if kind == "socks_grant_all":
        return socks(v4=True, v5=True, forward=False, timeout=IO_TIMEOUT, hold_seconds=hold)
    if kind == "socks5_open":
        return socks(
            v4=False, v5=True, forward=True, timeout=IO_TIMEOUT, relay_seconds=RELAY_SECONDS
        )
    raise ValueError(f"unknown fleet behaviour {kind!r}")


def handler_for(kind: str, sink: tuple[str, int] | None, hold: float) -> Handler:
    """The handler serving `kind`; `sink` receives what the open relays relay, and `hold` bounds
    how long a tarpit or a grant-all server keeps a connection that goes nowhere."""
    if BEHAVIOURS[kind].family == "smtp":
        inner = _smtp(kind, sink, hold)
    else:
        inner = _proxy(kind, hold)

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


def cancel_background() -> None:
    """Stop the relays' deliveries still under way (the fleet is shutting down)."""
    for task in list(_background):
        task.cancel()
