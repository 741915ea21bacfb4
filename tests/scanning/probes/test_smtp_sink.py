from __future__ import annotations

import asyncio

from scanning.probes.canary import CanaryConfig, MemoryHitStore, new_token
from scanning.probes.smtp_sink import SINK_BANNER_MARKER, start_smtp_sink

DOMAIN = "canary.test"


def canary() -> CanaryConfig:
    return CanaryConfig(
        domain=DOMAIN,
        http_addr=("127.0.23.1", 9),
        tls_addr=("127.0.23.1", 9),
        smtp_addr=("127.0.23.1", 0),
        secret=b"test-secret",
    )


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int, source: str) -> Client:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        return cls(reader, writer)

    async def reply(self) -> str:
        lines = []
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 2)).decode().rstrip("\r\n")
            lines.append(line)
            if line[3:4] != "-":
                return "\n".join(lines)

    async def send(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        return await self.reply()

    async def message(self, body: str) -> str:
        self.writer.write(body.replace("\n", "\r\n").encode() + b"\r\n.\r\n")
        return await self.reply()

    def close(self) -> None:
        self.writer.close()


def run_sink(host: str, session):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        hits = MemoryHitStore()
        server = await start_smtp_sink(canary(), hits, host, 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await session(port), hits
        finally:
            server.close()

    return asyncio.run(main())


def test_it_greets_with_its_marker() -> None:
    async def session(port: int) -> str:
        client = await Client.connect("127.0.23.1", port, "127.0.24.1")
        banner = await client.reply()
        client.close()
        return banner

    banner, _ = run_sink("127.0.23.1", session)
    assert banner.startswith("220 ")
    assert SINK_BANNER_MARKER in banner and DOMAIN in banner


def test_it_records_a_hit_with_the_token_from_the_recipient() -> None:
    token = new_token()

    async def session(port: int) -> list[str]:
        client = await Client.connect("127.0.23.2", port, "127.0.24.2")
        replies = [await client.reply()]
        replies.append(await client.send("EHLO relay.example"))
        replies.append(await client.send(f"MAIL FROM:<probe-{token}@{DOMAIN}>"))
        replies.append(await client.send(f"RCPT TO:<rcpt-{token}@CANARY.Test>"))
        replies.append(await client.send("DATA"))
        replies.append(
            await client.message(
                f"Received: from a by b\nReceived: from c by d\nSubject: Open relay test {token}"
                "\n\nhello\n.starts with a dot"
            )
        )
        replies.append(await client.send("QUIT"))
        client.close()
        return replies

    replies, hits = run_sink("127.0.23.2", session)
    assert [r[:3] for r in replies] == ["220", "250", "250", "250", "354", "250", "221"]
    assert SINK_BANNER_MARKER in replies[1]
    [hit] = hits.recorded(token)
    assert hit.kind == "smtp"
    assert hit.peer_ip == "127.0.24.2"
    assert hit.headers["Subject"] == f"Open relay test {token}"
    assert hit.headers["Received"] == "from a by b\nfrom c by d"
    assert hit.detail == f"MAIL FROM:<probe-{token}@{DOMAIN}> RCPT TO:<rcpt-{token}@CANARY.Test>"


def test_it_finds_the_token_in_the_body_when_the_recipient_lacks_it() -> None:
    token = new_token()

    async def session(port: int) -> None:
        client = await Client.connect("127.0.23.3", port, "127.0.24.3")
        await client.reply()
        await client.send("HELO relay.example")
        await client.send("MAIL FROM:<>")
        await client.send(f"RCPT TO:postmaster@{DOMAIN}")
        await client.send("DATA")
        await client.message(f"Subject: test\n\nToken: {token}")
        await client.send("QUIT")
        client.close()

    _, hits = run_sink("127.0.23.3", session)
    assert len(hits.recorded(token)) == 1


def test_it_refuses_other_domains_and_bad_sequences() -> None:
    async def session(port: int) -> list[str]:
        client = await Client.connect("127.0.23.4", port, "127.0.24.4")
        await client.reply()
        replies = [
            await client.send("RCPT TO:<a@canary.test>"),  # before MAIL
            await client.send("MAIL FROM:<x@example.org>"),
            await client.send("RCPT TO:<victim@example.org>"),
            await client.send(f"RCPT TO:<x@{DOMAIN}.example.org>"),
            await client.send("DATA"),  # no accepted recipient
            await client.send("NOOP"),
            await client.send("RSET"),
            await client.send("VRFY root"),
        ]
        client.close()
        return replies

    replies, hits = run_sink("127.0.23.4", session)
    assert [r[:3] for r in replies] == ["503", "250", "554", "554", "503", "250", "250", "502"]


def test_it_refuses_a_message_over_64_kb() -> None:
    token = new_token()

    async def session(port: int) -> str:
        client = await Client.connect("127.0.23.5", port, "127.0.24.5")
        await client.reply()
        await client.send("EHLO relay.example")
        await client.send("MAIL FROM:<>")
        await client.send(f"RCPT TO:<rcpt-{token}@{DOMAIN}>")
        await client.send("DATA")
        reply = await client.message("Subject: big\n\n" + ("x" * 999 + "\n") * 70)
        await client.send("QUIT")
        client.close()
        return reply

    reply, hits = run_sink("127.0.23.5", session)
    assert reply.startswith("552")
    assert hits.recorded(token) == []
