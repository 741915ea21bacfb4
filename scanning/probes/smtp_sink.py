"""The canary's SMTP sink: the mailbox a relayed test message must reach to be confirmed.

It accepts mail only for the canary domain, keeps nothing but a hit per token (the envelope and
the parsed headers), and answers a bare connection with a banner carrying SINK_BANNER_MARKER, so a
proxy's `CONNECT CANARY:25` can be recognised too.
"""

from __future__ import annotations

import asyncio
import re
from email.parser import BytesHeaderParser
from email.policy import compat32

from scanning.probes.canary import CanaryConfig, CanaryHit, HitStore

SINK_BANNER_MARKER = "secure-your-server-canary-sink"

MAX_MESSAGE_BYTES = 64 * 1024
MAX_LINE_BYTES = 2048
MAX_RECIPIENTS = 20
MAX_COMMANDS = 200  # per connection; a client looping on errors is dropped
IDLE_TIMEOUT = 60.0
SESSION_TIMEOUT = 300.0  # a client trickling one command a minute is still let go

_TOKEN_IN_RCPT = re.compile(r"rcpt-([0-9a-f]{32})", re.I)
_TOKEN_IN_TEXT = re.compile(r"\b(?:rcpt|probe|token)[-:= ]+([0-9a-f]{32})\b", re.I)
_PATH = re.compile(r"^(?:MAIL FROM|RCPT TO):\s*(.*)$", re.I)


def _address(arg: str) -> str:
    arg = arg.strip()
    if arg.startswith("<"):
        end = arg.find(">")
        arg = arg[1:end] if end > 0 else arg[1:]
    else:
        arg = arg.split(" ", 1)[0]
    if arg.startswith("@") and ":" in arg:  # source route: @relay:user@domain
        arg = arg.split(":", 1)[1]
    return arg


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower() if "@" in address else ""


def _tokens(rcpts: list[str], raw: bytes) -> list[str]:
    found: list[str] = []
    for rcpt in rcpts:
        found += [m.lower() for m in _TOKEN_IN_RCPT.findall(rcpt)]
    if not found:
        text = raw.decode("utf-8", "replace")
        found = [m.lower() for m in _TOKEN_IN_TEXT.findall(text)]
    return list(dict.fromkeys(found))


def _headers(raw: bytes) -> dict[str, str]:
    msg = BytesHeaderParser(policy=compat32).parsebytes(raw)
    headers: dict[str, str] = {}
    for name, value in msg.items():
        value = re.sub(r"\s+", " ", str(value)).strip()
        # Received lines are the relay path: keep them all, in order.
        headers[name] = f"{headers[name]}\n{value}" if name in headers else value
    return headers


class _SinkSession:
    def __init__(
        self,
        canary: CanaryConfig,
        hits: HitStore,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.canary = canary
        self.hits = hits
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer_ip = str(peer[0]) if peer else ""
        self.domain = canary.domain.lower().rstrip(".")
        self.reset()

    def reset(self) -> None:
        self.mail_from: str | None = None
        self.rcpts: list[str] = []

    async def reply(self, line: str) -> None:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()

    async def readline(self) -> bytes | None:
        try:
            line = await asyncio.wait_for(self.reader.readuntil(b"\n"), IDLE_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            return None
        return line

    async def run(self) -> None:
        await self.reply(f"220 {self.canary.domain} ESMTP {SINK_BANNER_MARKER} ready")
        for _ in range(MAX_COMMANDS):
            line = await self.readline()
            if line is None:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = text[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reset()
                if verb == "EHLO":
                    await self.reply(f"250-{self.canary.domain} {SINK_BANNER_MARKER}")
                    await self.reply(f"250-SIZE {MAX_MESSAGE_BYTES}")
                    await self.reply("250-8BITMIME")
                    await self.reply("250 ENHANCEDSTATUSCODES")
                else:
                    await self.reply(f"250 {self.canary.domain}")
            elif verb == "MAIL":
                m = _PATH.match(text)
                if not m:
                    await self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
                    continue
                self.reset()
                self.mail_from = _address(m.group(1))
                await self.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                await self.rcpt(text)
            elif verb == "DATA":
                if not self.rcpts:
                    await self.reply("503 5.5.1 Error: need RCPT command")
                    continue
                await self.reply("354 End data with <CR><LF>.<CR><LF>")
                if not await self.data():
                    return
            elif verb == "RSET":
                self.reset()
                await self.reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                await self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                await self.reply("221 2.0.0 Bye")
                return
            else:
                await self.reply("502 5.5.2 Error: command not recognized")
        await self.reply("421 4.7.0 Too many commands")

    async def rcpt(self, text: str) -> None:
        m = _PATH.match(text)
        if self.mail_from is None:
            await self.reply("503 5.5.1 Error: need MAIL command")
        elif not m:
            await self.reply("501 5.5.4 Syntax: RCPT TO:<address>")
        elif _domain(_address(m.group(1))) != self.domain:
            await self.reply("554 5.7.1 Relay access denied")
        elif len(self.rcpts) >= MAX_RECIPIENTS:
            await self.reply("452 4.5.3 Too many recipients")
        else:
            self.rcpts.append(_address(m.group(1)))
            await self.reply("250 2.1.5 Ok")

    async def data(self) -> bool:
        chunks: list[bytes] = []
        size = 0
        while True:
            line = await self.readline()
            if line is None:
                return False
            if line.rstrip(b"\r\n") == b".":
                break
            if line.startswith(b"."):
                line = line[1:]
            size += len(line)
            if size <= MAX_MESSAGE_BYTES:
                chunks.append(line)
        if size > MAX_MESSAGE_BYTES:
            await self.reply("552 5.3.4 Message size exceeds fixed limit")
        else:
            await self.record(b"".join(chunks))  # stored before we say "queued"
            await self.reply("250 2.0.0 Ok: queued")
        self.reset()
        return True

    async def record(self, raw: bytes) -> None:
        detail = f"MAIL FROM:<{self.mail_from}> RCPT TO:" + ",".join(f"<{r}>" for r in self.rcpts)
        headers = _headers(raw)
        for token in _tokens(self.rcpts, raw):
            hit = CanaryHit(
                token=token, kind="smtp", peer_ip=self.peer_ip, headers=headers, detail=detail
            )
            await self.hits.record(hit)


async def start_smtp_sink(
    canary: CanaryConfig, hits: HitStore, host: str, port: int
) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(
                _SinkSession(canary, hits, reader, writer).run(), SESSION_TIMEOUT
            )
        except (ConnectionError, OSError, TimeoutError):
            pass
        except asyncio.CancelledError:
            # Shutting down: end quietly (3.11's stream callback would log a cancelled task).
            writer.transport.abort()
            return
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    return await asyncio.start_server(handle, host, port, limit=MAX_LINE_BYTES)
