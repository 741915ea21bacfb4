"""Smoke test of the probe benchmark's pieces (quick: a few seconds, no nmap needed).

The fleet (bench/fleet.py, a subprocess) serves each trap behaviour as the benchmark assumes;
our scanner judges a 20-target fleet right; `compare` counts agreement and lists where nmap is
wrong; nmap's XML is read the way its scripts really write it; the DNS answers nmap gets stay
on loopback.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator

from bench import nmap_side
from bench import probe_bench as pb
from bench.fleet import BEHAVIOURS

# Port 25 needs root; the fleet serves the same SMTP behaviours on 2525 here.
PORTS = {"smtp": 2525}
SINK_IP = "127.0.99.40"
ORIGIN_IP = "127.0.99.41"
TINY_LIMITS = {
    "connect_timeout": 2.0,
    "reply_timeout": 0.5,
    "exchange_timeout": 10.0,
    "confirm_wait": 2.0,
}


class _Servers:
    """A sink that keeps every DATA, and an HTTP origin that names the path it was asked for."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.sink: tuple[str, int] = ("", 0)
        self.origin: tuple[str, int] = ("", 0)

    async def _sink(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink.test ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                data = b""
                while (chunk := await reader.readline()) not in (b".\r\n", b""):
                    data += chunk
                self.messages.append(data)
                writer.write(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    async def _origin(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:  # a CONNECT test that only opened the tunnel
            writer.close()
            return
        body = b"origin saw " + head.split(b" ")[1]
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[_Servers]:
        sink = await asyncio.start_server(self._sink, SINK_IP, 0)
        origin = await asyncio.start_server(self._origin, ORIGIN_IP, 0)
        self.sink = (SINK_IP, sink.sockets[0].getsockname()[1])
        self.origin = (ORIGIN_IP, origin.sockets[0].getsockname()[1])
        try:
            yield self
        finally:
            sink.close()
            origin.close()


async def _open(addr: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection(*addr), 2)


async def _smtp(addr: tuple[str, int], rcpt: str, data: bool = False) -> list[bytes]:
    """The reply codes of a short session: greeting, EHLO, MAIL, RCPT (and DATA, end of data)."""
    reader, writer = await _open(addr)
    codes = []

    async def reply() -> bytes:
        while True:
            line = await asyncio.wait_for(reader.readline(), 2)
            if line[3:4] != b"-":
                return line[:3]

    codes.append(await reply())
    for command in ("EHLO client.test", "MAIL FROM:<probe@canary.test>", f"RCPT TO:<{rcpt}>"):
        writer.write(command.encode() + b"\r\n")
        codes.append(await reply())
    if data:
        writer.write(b"DATA\r\n")
        codes.append(await reply())
        writer.write(b"Subject: hi\r\n\r\ntoken-42\r\n.\r\n")
        codes.append(await reply())
    writer.write(b"QUIT\r\n")
    writer.close()
    return codes


async def _http(addr: tuple[str, int], request: str) -> bytes:
    reader, writer = await _open(addr)
    writer.write(request.encode())
    reply = await asyncio.wait_for(reader.read(65536), 2)
    writer.close()
    return reply


async def _socks5(addr: tuple[str, int], dest: tuple[str, int]) -> tuple[int, bytes]:
    reader, writer = await _open(addr)
    writer.write(b"\x05\x01\x00")
    assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\x05\x00"
    ip = bytes(int(x) for x in dest[0].split("."))
    writer.write(b"\x05\x01\x00\x01" + ip + struct.pack("!H", dest[1]))
    head = await asyncio.wait_for(reader.readexactly(10), 2)
    tail = b""
    if head[1] == 0:
        writer.write(b"GET /via-socks HTTP/1.0\r\n\r\n")
        with contextlib.suppress(TimeoutError):
            tail = await asyncio.wait_for(reader.read(4096), 0.5)
    writer.close()
    return head[1], tail


def _first(plan: list[tuple[str, int, str]], kind: str) -> tuple[str, int]:
    return next((ip, port) for ip, port, k in plan if k == kind)


def test_the_fleet_serves_each_behaviour() -> None:
    plan = pb.fleet_plan(20, ports=PORTS)
    assert {k for *_, k in plan} == set(BEHAVIOURS)
    assert len({ip for ip, *_ in plan}) == 20  # one IP per target

    async def main() -> None:
        async with _Servers().running() as srv:
            with pb.fleet_process(plan, sink=srv.sink):
                at = {kind: _first(plan, kind) for kind in BEHAVIOURS}
                canary_rcpt = "rcpt@canary.test"
                ok = [b"220", b"250", b"250", b"250"]
                assert await _smtp(at["smtp_open_relay"], canary_rcpt, data=True) == ok + [
                    b"354",
                    b"250",
                ]
                assert await _smtp(at["smtp_catchall"], canary_rcpt, data=True) == ok + [
                    b"354",
                    b"250",
                ]
                assert (await _smtp(at["smtp_closed"], canary_rcpt))[-1] == b"554"
                assert (await _smtp(at["smtp_postscreen"], canary_rcpt))[-1] == b"450"
                reader, writer = await _open(at["smtp_tarpit"])
                with contextlib.suppress(TimeoutError):
                    assert not await asyncio.wait_for(reader.read(1), 0.3)  # never greets
                writer.close()
                deadline = time.monotonic() + 3
                while not srv.messages and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                # Only the open relay relayed: one message, with its body, from its own IP.
                assert len(srv.messages) == 1 and b"token-42" in srv.messages[0]

                origin = f"{srv.origin[0]}:{srv.origin[1]}"
                proxy = at["http_open_proxy"]
                got = await _http(proxy, f"GET http://{origin}/c/x HTTP/1.0\r\n\r\n")
                assert got.startswith(b"HTTP/1.0 200") and b"origin saw /c/x" in got
                bogus = "GET http://x.invalid/ HTTP/1.0\r\n\r\n"
                assert (await _http(at["http_open_proxy"], bogus)).startswith(b"HTTP/1.1 502")
                tunnel = await _http(at["http_open_proxy"], f"CONNECT {origin} HTTP/1.0\r\n\r\n")
                assert tunnel.startswith(b"HTTP/1.1 200")
                outside = await _http(proxy, "CONNECT 192.0.2.1:443 HTTP/1.0\r\n\r\n")
                assert outside.startswith(b"HTTP/1.1 403")  # loopback only
                plain = await _http(at["http_captive"], "GET / HTTP/1.0\r\n\r\n")
                assert plain.startswith(b"HTTP/1.1 200")
                assert await _http(at["http_captive"], bogus) == plain  # same page for all
                get_origin = f"GET http://{origin}/ HTTP/1.0\r\n\r\n"
                denied = await _http(at["http_closed_403"], get_origin)
                assert denied.startswith(b"HTTP/1.1 403")

                status, tail = await _socks5(at["socks5_open"], srv.origin)
                assert status == 0 and tail.endswith(b"\r\n\r\norigin saw /via-socks")
                assert (await _socks5(at["socks5_open"], ("192.0.2.1", 80)))[0] == 2  # refused
                assert await _socks5(at["socks_grant_all"], ("192.0.2.1", 80)) == (0, b"")

    asyncio.run(main())


def test_our_scan_of_a_tiny_fleet_and_the_agreement_with_nmap() -> None:
    # Addresses of its own: a killed fleet's sockets may linger a while in FIN_WAIT2 where our
    # scan's clients still hold the other end, and would keep the next fleet from binding.
    plan = pb.fleet_plan(20, ports=PORTS, first=500)
    canary = pb.canary_ports()
    with pb.fleet_process(plan, sink=(canary["ip"], canary["smtp"])):
        scan = pb.run_scan([(ip, port) for ip, port, _ in plan], canary, TINY_LIMITS, 64, 60)
    ours = pb.verdicts_by_target(scan["results"])
    truth = {(ip, port): BEHAVIOURS[k].open for ip, port, k in plan}
    group = {(ip, port): k for ip, port, k in plan}
    # What nmap's scripts answer for each behaviour (seen in real runs): "open" for any 250 to
    # RCPT and for a 200 to CONNECT, whatever happened to the mail or the request.
    nmap_open = {
        "smtp_open_relay",
        "smtp_catchall",
        "http_open_proxy",
        "http_captive",
        "socks5_open",
    }
    nmap = {key: "open" if kind in nmap_open else "not-open" for key, kind in group.items()}

    result = pb.compare(truth, group, ours, nmap)

    assert result["ours_wrong"] == [], result["ours_wrong"]
    assert result["ours_right"] == 20 and result["nmap_right"] == 16
    assert [w["group"] for w in result["nmap_wrong"]] == ["http_captive", "smtp_catchall"]
    assert result["agreement"] == 0.8
    per = result["per_group"]
    assert per["smtp_open_relay"]["ours"] == {"confirmed-open": 2}
    assert per["smtp_catchall"]["ours"] == {"likely-open-weak": 2}
    assert per["smtp_catchall"]["agree"] == 0 and per["smtp_catchall"]["nmap_right"] == 0
    assert per["http_captive"]["ours"] == {"closed": 2}
    assert per["socks5_open"] == {
        "truth": "open",
        "targets": 3,
        "ours": {"confirmed-open": 3},
        "ours_right": 3,
        "nmap": {"open": 3},
        "nmap_right": 3,
        "agree": 3,
        "agreement": 1.0,
    }
    assert scan["selfcheck_passed"] is True and scan["maxrss_kb"] > 0


def test_compare_without_nmap_and_with_missing_results() -> None:
    truth = {("127.1.0.1", 25): True, ("127.1.0.2", 25): False}
    group = {("127.1.0.1", 25): "relay", ("127.1.0.2", 25): "relay-too"}
    result = pb.compare(truth, group, {("127.1.0.1", 25): "likely-open"}, None)
    assert result["ours_right"] == 2 and "nmap_right" not in result
    assert result["per_group"]["relay-too"]["ours"] == {"missing": 1}
    nmap = {("127.1.0.1", 25): "timeout"}
    result = pb.compare(truth, group, {}, nmap)
    assert result["ours_right"] == 1 and result["nmap_right"] == 1
    assert result["nmap_wrong"][0]["group"] == "relay"


XML = """<?xml version="1.0"?><nmaprun>
<host><address addr="127.1.0.1" addrtype="ipv4"/><ports><port protocol="tcp" portid="25">
<state state="open"/><script id="smtp-open-relay" output="Server is an open relay (16/16 tests)"/>
</port></ports></host>
<host><address addr="127.1.0.5" addrtype="ipv4"/><ports><port protocol="tcp" portid="25">
<state state="open"/><script id="smtp-open-relay"
 output="Server doesn&apos;t seem to be an open relay, all tests failed"/></port></ports></host>
<host><address addr="127.1.0.9" addrtype="ipv4"/><ports><port protocol="tcp" portid="25">
<state state="open"/><script id="smtp-open-relay"
 output="Couldn&apos;t establish connection on port 25"/></port></ports></host>
<host><address addr="127.1.0.2" addrtype="ipv4"/><ports><port protocol="tcp" portid="25">
<state state="closed"/></port></ports></host>
</nmaprun>"""
SOCKS_XML = """<nmaprun>
<host><address addr="127.1.0.18" addrtype="ipv4"/><ports><port protocol="tcp" portid="1080">
<state state="open"/><script id="socks-open-proxy" output="&#xa;  status: open">
<elem key="status">open</elem><table key="versions"><elem>socks5</elem></table></script>
</port></ports></host>
<host><address addr="127.1.0.16" addrtype="ipv4"/><ports><port protocol="tcp" portid="1080">
<state state="open"/></port></ports></host>
</nmaprun>"""


def test_nmap_xml_is_read_as_its_scripts_write_it() -> None:
    assert nmap_side.parse_nmap_xml(XML, "smtp") == {
        ("127.1.0.1", 25): "open",
        ("127.1.0.5", 25): "not-open",
        ("127.1.0.9", 25): "error",
        ("127.1.0.2", 25): "port-closed",
    }
    assert nmap_side.parse_nmap_xml(SOCKS_XML, "socks") == {
        ("127.1.0.18", 1080): "open",
        ("127.1.0.16", 1080): "not-open",  # the proxy scripts are silent when not open
    }


def _query(name: str, qtype: int = 1) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return (
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        + labels
        + b"\x00"
        + struct.pack("!HH", qtype, 1)
    )


def test_nmap_dns_answers_loopback_literals_only() -> None:
    reply = nmap_side.dns_answer(_query("127.0.98.1"))
    assert reply is not None and reply[3] & 0x0F == 0 and reply.endswith(bytes([127, 0, 98, 1]))
    assert nmap_side.dns_answer(_query("www.google.com"))[3] & 0x0F == 3
    assert nmap_side.dns_answer(_query("192.0.2.1"))[7] == 0  # no answer


def test_nmap_is_pointed_only_at_loopback() -> None:
    for family in pb.NMAP_SCRIPTS:
        argv = nmap_side.nmap_argv(family, 25, "hosts.txt", 3, 64, 60)
        assert "-n" in argv and "--dns-servers" in argv
        if family != "smtp":
            assert f"proxy.url=http://{pb.NMAP_CANARY_IP}/" in argv[-1]
    try:
        nmap_side.assert_loopback(["127.1.0.1", "192.0.2.1"])
    except AssertionError:
        pass
    else:
        raise AssertionError("a non-loopback nmap target went through")


def test_the_bench_imports_nothing_from_the_tests() -> None:
    # The fake and real servers the bench shares with the tests live in fakes/: a bench that
    # reached into tests/ would break whenever a test helper changed.
    found = []
    for path in sorted((pb.ROOT / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            found += [f"{path.name}: {m}" for m in modules if m.split(".")[0] == "tests"]
    assert found == []
