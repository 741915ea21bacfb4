"""The scan runner: parsing, the address policy, protocol choice and the manners of docs/probes.md.

Every peer is a trap on 127.0.50.x-127.0.59.x; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fakes import proxy_traps, smtp_traps
from scanning.probes.base import (
    Limits,
    ProbeContext,
    ProbeResult,
    Protocol,
    Reason,
    Verdict,
    release_turn,
)
from scanning.probes.canary import CanaryConfig, HitStore
from scanning.probes.runner import (
    Scanner,
    ScanOptions,
    Target,
    TargetError,
    TargetRefused,
    TokenBucket,
    canary_reachable,
    network_key,
    parse_target,
    protocols_for_port,
    refuse_reason,
)

LIMITS = Limits(connect_timeout=1.0, reply_timeout=0.5, exchange_timeout=5.0, confirm_wait=2.0)
FAST = ScanOptions(
    allow_private=True, limits=LIMITS, network_rate=0, greeting_wait=0.3, scanner_name="t.test"
)


def _scan(
    targets: list[str],
    options: ScanOptions = FAST,
    *,
    is_excluded: Callable[[str], Any] | None = None,
    canary_change: Callable[[CanaryConfig], CanaryConfig] | None = None,
) -> tuple[list[ProbeResult], Scanner]:
    async def main() -> tuple[list[ProbeResult], Scanner]:
        async with proxy_traps.running_canary("127.0.59.1", v6=False) as (canary, hits):
            if canary_change:
                canary = canary_change(canary)
            scanner = Scanner(canary=canary, hits=hits, options=options, is_excluded=is_excluded)
            results = await scanner.run([parse_target(t) for t in targets])
            return results, scanner

    return asyncio.run(main())


# --- parsing -------------------------------------------------------------------------------


def test_it_parses_ip_literals_and_echoes_the_target_as_given() -> None:
    assert parse_target("127.0.50.1:25") == Target("127.0.50.1:25", "127.0.50.1", 25)
    assert parse_target("[::1]:2525") == Target("[::1]:2525", "::1", 2525)
    # Normalised for the policy and the per-IP lock, echoed as written.
    six = parse_target("[0:0:0:0:0:0:0:1]:80")
    assert (six.given, six.ip) == ("[0:0:0:0:0:0:0:1]:80", "::1")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("127.0.50.1", "expected HOST:PORT"),
        ("127.0.50.1:0", "bad port"),
        ("127.0.50.1:65536", "bad port"),
        ("127.0.50.1:http", "bad port"),
        ("::1:25", "needs brackets"),
        ("[::1]25", "[IPv6]:PORT"),
        ("[nonsense]:25", "not an IPv6 address"),
        ("300.1.2.3:25", "not an IP address"),
        (":25", "no host"),
        ("[fe80::1%eth0]:25", "scoped"),
    ],
)
def test_it_rejects_bad_targets_naming_them(text: str, named: str) -> None:
    with pytest.raises(TargetError) as caught:
        parse_target(text)
    assert text in str(caught.value) and named in str(caught.value)


def test_it_refuses_names_unless_a_resolver_is_injected() -> None:
    with pytest.raises(TargetError, match="mx.example.com.*not an IP address"):
        parse_target("mx.example.com:25")
    asked: list[str] = []

    def resolver(name: str) -> list[str]:
        asked.append(name)
        return ["127.0.50.7"]

    target = parse_target("mx.example.com:25", resolver=resolver)
    assert target == Target("mx.example.com:25", "127.0.50.7", 25) and asked == ["mx.example.com"]
    with pytest.raises(TargetError, match="did not resolve"):
        parse_target("nx.example.com:25", resolver=lambda name: [])


# --- address policy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "why"),
    [
        ("127.0.50.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("::ffff:10.0.0.1", "private"),  # IPv4-mapped: judged as the IPv4 address it is
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "shared address space (CGNAT)"),
        ("192.0.2.10", "documentation"),
        ("198.51.100.1", "documentation"),
        ("203.0.113.9", "documentation"),
        ("2001:db8::25", "documentation"),
        ("240.0.0.1", "reserved"),
        ("198.18.0.1", "reserved"),
        ("0.1.2.3", "reserved"),
        ("fec0::1", "site-local"),
    ],
)
def test_it_refuses_special_addresses_unless_allowed(ip: str, why: str) -> None:
    assert refuse_reason(ip, allow_private=False) == why
    assert refuse_reason(ip, allow_private=True) is None


@pytest.mark.parametrize("ip", ["8.8.8.8", "193.0.14.129", "2001:4860:4860::8888", "2a00:1450::1"])
def test_it_allows_public_addresses(ip: str) -> None:
    assert refuse_reason(ip, allow_private=False) is None


def test_it_never_aims_a_remote_proxy_at_a_loopback_canary() -> None:
    remote = Target("198.51.100.1:3128", "198.51.100.1", 3128)
    local = Target("127.0.50.1:3128", "127.0.50.1", 3128)
    assert not canary_reachable(remote, "http", "127.0.0.1")
    assert not canary_reachable(remote, "auto", "127.0.0.1")
    assert canary_reachable(remote, "http", "192.0.2.80")  # a deployed canary
    assert canary_reachable(local, "socks5", "127.0.0.1")
    mail = Target("198.51.100.1:25", "198.51.100.1", 25)
    assert canary_reachable(mail, "smtp", "127.0.0.1") and canary_reachable(mail, "auto", "::1")


def test_it_refuses_a_batch_with_a_loopback_target_before_sending_anything() -> None:
    with smtp_traps.run_trap("closed", "127.0.50.20") as trap:
        options = dataclasses.replace(FAST, allow_private=False)
        with pytest.raises(TargetRefused) as caught:
            _scan([f"127.0.50.20:{trap.port}"], options)
        assert f"127.0.50.20:{trap.port} (loopback)" in str(caught.value)
        assert trap.state.connections == 0


# --- protocol choice -----------------------------------------------------------------------


def test_it_picks_protocols_by_well_known_port() -> None:
    for port in (25, 465, 587, 2525):
        assert protocols_for_port(port) == [Protocol.SMTP]
    for port in (1080, 9050, 4145):
        assert protocols_for_port(port) == [Protocol.SOCKS5, Protocol.SOCKS4]
    for port in (3128, 8080, 8000, 8888, 80):
        assert protocols_for_port(port) == [Protocol.HTTP]
    assert protocols_for_port(40000) is None


def test_auto_reads_an_smtp_greeting_on_an_unknown_port() -> None:
    with smtp_traps.run_trap("closed", "127.0.51.1") as trap:
        results, _ = _scan([f"127.0.51.1:{trap.port}"])
    assert [(r.protocol, r.verdict) for r in results] == [(Protocol.SMTP, Verdict.CLOSED)]
    assert trap.state.connections >= 2  # the greeting sniff, then the probe's own sessions


def test_auto_reports_only_the_protocols_a_proxy_speaks() -> None:
    with (
        proxy_traps.run_trap("open_http", "127.0.51.2") as (_, http_port),
        proxy_traps.run_trap("socks5", "127.0.51.3") as (_, socks_port),
        proxy_traps.run_trap("socks_grant_all", "127.0.51.4") as (_, both_port),
    ):
        results, _ = _scan(
            [f"127.0.51.2:{http_port}", f"127.0.51.3:{socks_port}", f"127.0.51.4:{both_port}"]
        )
    found = sorted((r.ip, r.protocol, r.verdict) for r in results)
    assert found == [
        ("127.0.51.2", Protocol.HTTP, Verdict.CONFIRMED_OPEN),
        ("127.0.51.3", Protocol.SOCKS5, Verdict.CONFIRMED_OPEN),
        # Grants everything, delivers nothing: both SOCKS versions spoken, only the word of it.
        ("127.0.51.4", Protocol.SOCKS4, Verdict.LIKELY_OPEN_WEAK),
        ("127.0.51.4", Protocol.SOCKS5, Verdict.LIKELY_OPEN_WEAK),
    ]


def test_auto_reports_one_result_when_nothing_answers() -> None:
    with proxy_traps.run_trap("tarpit", "127.0.51.5") as (_, port):
        results, _ = _scan([f"127.0.51.5:{port}"])
    assert len(results) == 1 and results[0].verdict is Verdict.INCONCLUSIVE
    results, _ = _scan(["127.0.51.6:9"])  # nothing listens: refused at the greeting sniff
    assert [(r.protocol, r.verdict, r.reasons) for r in results] == [
        (Protocol.HTTP, Verdict.CLOSED, [Reason.CONNECT_FAILED])
    ]


# --- manners: one connection per IP, per-network rate, exclusions, the self-check ----------


class ConnectionRecorder:
    """A slow 403-answering proxy on many ports; records simultaneous connections per IP."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.open: dict[str, int] = defaultdict(int)
        self.most: dict[str, int] = defaultdict(int)
        self.accepts: dict[str, list[float]] = defaultdict(list)
        self.most_overall = 0
        self.servers: list[asyncio.Server] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip = writer.get_extra_info("sockname")[0]
        self.accepts[ip].append(time.monotonic())
        self.open[ip] += 1
        self.most[ip] = max(self.most[ip], self.open[ip])
        self.most_overall = max(self.most_overall, sum(self.open.values()))
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            await asyncio.sleep(self.delay)
            writer.write(proxy_traps.SQUID_DENIED)
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.open[ip] -= 1
            writer.close()

    async def listen(self, ip: str) -> str:
        server = await asyncio.start_server(self.handle, ip, 0)
        self.servers.append(server)
        return f"{ip}:{server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        for server in self.servers:
            server.close()


def _scan_recorder(
    layout: list[str], options: ScanOptions, **kwargs: Any
) -> tuple[list[ProbeResult], ConnectionRecorder, float]:
    """Probe one recorder port per entry of `layout` (an IP each) in one batch."""
    recorder = ConnectionRecorder()

    async def main() -> tuple[list[ProbeResult], float]:
        async with proxy_traps.running_canary("127.0.59.2", v6=False) as (canary, hits):
            targets = [parse_target(await recorder.listen(ip)) for ip in layout]
            scanner = Scanner(canary=canary, hits=hits, options=options, **kwargs)
            started = time.monotonic()
            results = await scanner.run(targets)
            await recorder.close()
            return results, started

    results, started = asyncio.run(main())
    return results, recorder, started


def test_it_never_opens_two_connections_to_one_ip_at_once() -> None:
    layout = ["127.0.52.1"] * 4 + ["127.0.52.2"] * 4
    options = dataclasses.replace(FAST, protocol="http")
    results, recorder, _ = _scan_recorder(layout, options)
    assert len(results) == 8 and {r.verdict for r in results} == {Verdict.CLOSED}
    assert dict(recorder.most) == {"127.0.52.1": 1, "127.0.52.2": 1}
    assert recorder.most_overall == 2  # the two IPs were probed side by side
    assert all(len(recorder.accepts[ip]) >= 4 * 3 for ip in ("127.0.52.1", "127.0.52.2"))


def test_it_rate_limits_per_network() -> None:
    # Four IPs in one /24 at 5 probes a second with no burst; one IP in another /24.
    layout = ["127.0.53.1", "127.0.53.2", "127.0.53.3", "127.0.53.4", "127.0.54.1"]
    options = dataclasses.replace(FAST, protocol="http", network_rate=5.0, network_burst=1)
    _, recorder, started = _scan_recorder(layout, options)
    firsts = sorted(recorder.accepts[ip][0] for ip in layout[:4])
    gaps = [b - a for a, b in zip(firsts, firsts[1:], strict=False)]
    assert all(gap >= 0.15 for gap in gaps), gaps
    assert firsts[-1] - firsts[0] >= 0.55
    assert recorder.accepts["127.0.54.1"][0] - started < 0.15  # another network: not held back


def test_the_token_bucket_saves_up_a_burst() -> None:
    async def main() -> float:
        bucket = TokenBucket(rate=10.0, burst=3)
        started = time.monotonic()
        for _ in range(4):  # three from the burst, the fourth after ~0.1 s
            await bucket.acquire()
        return time.monotonic() - started

    assert 0.07 <= asyncio.run(main()) < 0.5
    assert network_key("127.0.53.200") == "127.0.53.0/24"
    assert network_key("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert network_key("10.1.2.3", v4_prefix=16) == "10.1.0.0/16"


@pytest.mark.parametrize("asynchronous", [False, True])
def test_an_excluded_target_gets_no_packet(asynchronous: bool) -> None:
    asked: list[str] = []

    def check(ip: str) -> bool:
        asked.append(ip)
        return ip == "127.0.55.1"

    async def check_async(ip: str) -> bool:
        await asyncio.sleep(0)
        return check(ip)

    with (
        smtp_traps.run_trap("closed", "127.0.55.1") as excluded,
        smtp_traps.run_trap("closed", "127.0.55.2") as allowed,
    ):
        results, _ = _scan(
            [f"127.0.55.1:{excluded.port}", f"127.0.55.2:{allowed.port}"],
            dataclasses.replace(FAST, protocol="smtp"),
            is_excluded=check_async if asynchronous else check,
        )
        assert excluded.state.connections == 0
        assert allowed.state.connections >= 1
    by_ip = {r.ip: r for r in results}
    assert by_ip["127.0.55.1"].verdict is Verdict.NOT_APPLICABLE
    assert by_ip["127.0.55.1"].reasons == [Reason.EXCLUDED]
    assert by_ip["127.0.55.1"].as_json()["target"] == f"127.0.55.1:{excluded.port}"
    assert by_ip["127.0.55.2"].verdict is Verdict.CLOSED
    assert sorted(asked) == ["127.0.55.1", "127.0.55.2"]


def test_the_exclusion_list_is_asked_again_before_each_connection() -> None:
    # An exclusion approved mid-scan stops the next protocol's probe of the same target.
    asked: list[str] = []

    def check(ip: str) -> bool:
        asked.append(ip)
        return len(asked) > 1  # excluded from the second question on

    with proxy_traps.run_trap("socks5", "127.0.55.3") as (_, port):
        results, _ = _scan([f"127.0.55.3:{port}"], is_excluded=check)
    assert len(asked) == 2  # the greeting sniff, then the SOCKS5 probe that never ran
    assert [(r.verdict, r.reasons) for r in results] == [
        (Verdict.NOT_APPLICABLE, [Reason.EXCLUDED])
    ]


def test_a_failed_self_check_voids_the_batch() -> None:
    with (
        proxy_traps.run_trap("interceptor", "127.0.56.1") as interceptor,
        proxy_traps.run_trap("open_http", "127.0.56.2") as (_, proxy_port),
        smtp_traps.run_trap("open", "127.0.56.3") as relay,
    ):
        targets = [f"127.0.56.2:{proxy_port}", f"127.0.56.3:{relay.port}"]

        def intercepted(canary: CanaryConfig) -> CanaryConfig:
            # As if a middlebox answered every connection: the "not a proxy" port looks like one.
            return dataclasses.replace(canary, selfcheck_addr=interceptor)

        results, scanner = _scan(targets, canary_change=intercepted)
        assert scanner.selfcheck_passed is False
        assert relay.state.connections == 0  # a void batch sends nothing to the targets
        assert len(results) == 2
        for result in results:
            assert (result.verdict, result.reasons) == (
                Verdict.INCONCLUSIVE,
                [Reason.SELFCHECK_FAILED],
            )
        results, scanner = _scan(targets[:1])
        assert scanner.selfcheck_passed is True
        assert results[0].verdict is Verdict.CONFIRMED_OPEN


def test_the_concurrency_cap_holds() -> None:
    calls: dict[str, int] = {"now": 0, "most": 0}

    async def fake_probe(target: Target, ctx: ProbeContext, **kwargs: Any) -> ProbeResult:
        ip, port = target.ip, target.port
        calls["now"] += 1
        calls["most"] = max(calls["most"], calls["now"])
        await asyncio.sleep(0.05)
        calls["now"] -= 1
        return ProbeResult(target.given, ip, port, Protocol.HTTP, Verdict.CLOSED)

    probes: dict[Protocol, Callable[..., Awaitable[ProbeResult]]] = {Protocol.HTTP: fake_probe}
    canary = CanaryConfig("c.test", ("127.0.59.3", 9), ("127.0.59.3", 9), ("127.0.59.3", 9), b"k")
    hits: HitStore = proxy_traps.MemoryHitStore()
    options = dataclasses.replace(FAST, protocol="http", max_concurrency=3)
    scanner = Scanner(canary=canary, hits=hits, options=options, probes=probes)
    targets = [parse_target(f"127.0.57.{i}:8080") for i in range(1, 11)]
    results = asyncio.run(scanner.run(targets))
    assert len(results) == 10 and calls["most"] == 3


def test_run_each_takes_a_protocol_and_token_per_target() -> None:
    # Campaign scans know each target's protocol, and a greylisting retry repeats its token.
    token = "0123456789abcdef0123456789abcdef"
    with smtp_traps.run_trap("greylist", "127.0.57.20") as relay:

        async def main() -> list[ProbeResult]:
            async with proxy_traps.running_canary("127.0.59.4", v6=False) as (canary, hits):
                scanner = Scanner(canary=canary, hits=hits, options=FAST)
                target = parse_target(f"127.0.57.20:{relay.port}")
                return await scanner.run_each([(target, "smtp", token)])

        [result] = asyncio.run(main())
        assert any(token in command for command in relay.state.commands)
    assert result.protocol is Protocol.SMTP and result.token == token
    assert result.verdict is Verdict.INCONCLUSIVE and result.retry_after


# --- waiting for the canary holds no turn ----------------------------------------------------


def _scan_with_waiting_probes(layout: list[str], options: ScanOptions) -> list[str]:
    """Each fake SMTP probe 'connects', gives its turn back like a real probe waiting for its
    canary, and then waits until every target has started. Returns the order of events."""
    events: list[str] = []
    everyone_started = asyncio.Event()

    async def main() -> None:
        started = 0

        async def waiting_probe(target: Target, ctx: ProbeContext, **kwargs: Any) -> ProbeResult:
            ip, port = target.ip, target.port
            nonlocal started
            events.append(f"connect {ip}:{port}")
            started += 1
            if started == len(layout):
                everyone_started.set()
            release_turn()
            await asyncio.wait_for(everyone_started.wait(), 5)  # the canary wait
            events.append(f"judged {ip}:{port}")
            return ProbeResult(
                target=target.given,
                ip=ip,
                port=port,
                protocol=Protocol.SMTP,
                verdict=Verdict.LIKELY_OPEN,
                reasons=[],
            )

        async with proxy_traps.running_canary("127.0.59.2", v6=False) as (canary, hits):
            scanner = Scanner(
                canary=canary, hits=hits, options=options, probes={Protocol.SMTP: waiting_probe}
            )
            await scanner.run([parse_target(f"{ip}:{2525 + i}") for i, ip in enumerate(layout)])

    asyncio.run(main())
    return events


def test_it_lets_the_same_ip_go_on_while_a_probe_waits_for_its_canary() -> None:
    # Without release_turn() the second port of the IP could not start before the first was
    # judged, and the first waits for the second: the scan would fail with a timeout.
    options = dataclasses.replace(FAST, protocol="smtp")
    events = _scan_with_waiting_probes(["127.0.58.1", "127.0.58.1", "127.0.58.1"], options)
    connects = [i for i, e in enumerate(events) if e.startswith("connect")]
    judged = [i for i, e in enumerate(events) if e.startswith("judged")]
    assert len(connects) == len(judged) == 3 and max(connects) < min(judged), events


def test_it_frees_the_concurrency_slot_while_a_probe_waits_for_its_canary() -> None:
    options = dataclasses.replace(FAST, protocol="smtp", max_concurrency=1)
    events = _scan_with_waiting_probes(["127.0.58.2", "127.0.58.3"], options)
    assert [e.split()[0] for e in events] == ["connect", "connect", "judged", "judged"], events
