"""Probe benchmark: our scanner against real peers and a 2,000-target loopback fleet, with
nmap's smtp-open-relay, http-open-proxy and socks-open-proxy scripts side by side.

`run()` returns one dict (bench/__main__.py prints it):

- `peers`: every installed real server (Postfix, Exim, Squid, tinyproxy, Dante, microsocks, in
  each configuration) started at once on its own 127.0.96.x; our scan of all of them in one run
  and nmap's three scripts over the same servers; per peer the truth, our verdict, nmap's call.
- `fleet`: FLEET_SIZE loopback targets on distinct IPs (127.1.x.y) served by one asyncio process
  (bench/fleet.py) mixing the trap behaviours; our targets/s, wall time, verdict counts and the
  scan worker's peak RSS; nmap over the same targets; agreement per behaviour, the cases where
  nmap is wrong, and the ratio of our targets/s to nmap's.
- `safety`: what nmap was allowed to reach and a tcpdump count of packets off loopback while it ran.

Measurement: our scan runs in its own process (`python -m bench.probe_bench scan SPEC OUT`), the
same way a Celery scan worker would: it starts its canary (HTTP, TLS, SMTP sink, self-check port)
on 127.0.97.1, runs `Scanner.run` over every target with `--protocol auto` (picked by port: 25
SMTP, 3128 HTTP, 1080 SOCKS5 then SOCKS4), the relay confirmation on, no per-network rate limit,
and reports its wall time and its own ru_maxrss. Our targets/s is computed over the worker's
whole process lifetime (interpreter start and canary included), the same basis as nmap's, which
is timed from launch to exit. nmap runs its three scripts as three concurrent invocations (one
port and host list each, `-Pn -n -sT -T4`, `--max-parallelism` equal to our concurrency so NSE
may hold as many sockets as we do), and the nmap wall time is from the first launch to the last
exit.

Safety: nmap's targets are asserted to be in 127.0.0.0/8; its proxy scripts get `proxy.url`
pointing at a loopback canary (127.0.98.1:80; the SOCKS script always uses port 80), so its
built-in www.google.com / wikipedia / computerhistory tests never run; the SOCKS script resolves
the URL's host with its own DNS client, so nmap gets `--dns-servers` naming a loopback responder
started here (it answers loopback IP literals, NXDOMAIN otherwise) and, when we may, runs in a
private mount namespace whose /etc/resolv.conf names only that responder. The fleet, the proxies
and the relays forward to loopback only. During the whole section (our scans and nmap's),
tcpdump watches for packets off loopback; it sees the whole machine, so other programs' traffic
is counted too, and the packets that name the bench's addresses or names (PTR of 127.1.x.y, the
canary domain, the scripts' default sites, ...) are counted apart and listed: that count must be 0.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import ipaddress
import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bench.fleet import BEHAVIOURS

ROOT = Path(__file__).resolve().parent.parent
CANARY_DOMAIN = "canary.bench.secure-your-server.test"
SCAN_CANARY_IP = "127.0.97.1"  # the scan worker's canary: HTTP, TLS, SMTP sink, self-check
NMAP_CANARY_IP = "127.0.98.1"  # nmap's proxy.url target (port 80: socks-open-proxy's only port)
NMAP_DNS_IP = "127.0.98.53"  # answers nmap's own DNS client (SOCKS script) from loopback
PEER_NET = "127.0.96."
FLEET_SIZE = int(os.environ.get("BENCH_FLEET_SIZE", "2000"))
# Every target at once: each has its own IP, so one connection per IP still holds; the scan is
# then as long as its slowest target (a SOCKS server that grants and forwards nothing).
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "2000"))
# The fleet is also scanned at these concurrencies ("all": every target at once), rightness
# reported for each: being right must not depend on how hard the machine is pushed.
FLEET_CONCURRENCIES = os.environ.get("BENCH_FLEET_CONCURRENCIES", "64,256,all")
# Which parts of the section run (BENCH_PROBE_PARTS=fleet skips the real peers).
PROBE_PARTS = os.environ.get("BENCH_PROBE_PARTS", "peers,fleet")
# After the sessions, how long the worker keeps its canary up for late confirmations (a relay's
# queued delivery, a proxy's slow forward): what a campaign's confirmation sweep would record.
CONFIRM_WINDOW = float(os.environ.get("BENCH_CONFIRM_WINDOW", "10"))
NMAP_TOKEN = "nmap-bench"
# nmap's scripts have their own 10 s socket timeouts; a --script-timeout below their natural
# length only drops results (open relays then go unreported), so none is set unless asked for.
SCRIPT_TIMEOUT = int(os.environ.get("BENCH_NMAP_SCRIPT_TIMEOUT", "0"))
NMAP_PATTERN = "canary: this request came through"  # in our canary's 200 body, nowhere else
OPEN_VERDICTS = frozenset({"confirmed-open", "likely-open"})  # what a letter goes out for

# One cycle of 20 targets; the fleet repeats it, so every behaviour is spread over all its IPs.
MIX: list[tuple[str, int]] = [
    ("smtp_open_relay", 2),
    ("smtp_catchall", 2),
    ("smtp_closed", 2),
    ("smtp_postscreen", 2),
    ("smtp_tarpit", 1),
    ("http_open_proxy", 2),
    ("http_captive", 2),
    ("http_closed_403", 2),
    ("socks_grant_all", 2),
    ("socks5_open", 3),
]
FLEET_LIMITS = {
    "connect_timeout": 3.0,
    "reply_timeout": 2.0,
    "exchange_timeout": 30.0,
    "confirm_wait": 5.0,
}
PEER_LIMITS = {
    "connect_timeout": 5.0,
    "reply_timeout": 5.0,
    "exchange_timeout": 20.0,
    "confirm_wait": 15.0,
}
NMAP_SCRIPTS = {"smtp": "smtp-open-relay", "http": "http-open-proxy", "socks": "socks-open-proxy"}
NMAP_PORTRULE_PORTS = {
    "smtp": {25, 465, 587},
    "http": {8123, 3128, 8000, 8080},
    "socks": {1080, 9050},
}
PEER_PORTS = {
    "postfix": 25,
    "exim": 25,
    "squid": 3128,
    "tinyproxy": 3128,
    "dante": 1080,
    "microsocks": 1080,
}
PEER_FAMILY = {25: "smtp", 3128: "http", 1080: "socks"}

Key = tuple[str, int]  # (ip, port)


# --- plans -----------------------------------------------------------------------------------


def fleet_ip(n: int) -> str:
    """Distinct loopback IPs 127.1.0.1 ... (250 a /24), never .0 or .255."""
    return f"127.1.{n // 250}.{n % 250 + 1}"


def fleet_plan(size: int, ports: dict[str, int] | None = None) -> list[tuple[str, int, str]]:
    """(ip, port, behaviour) for `size` targets; `ports` overrides a family's port (tests that
    may not bind port 25 use 2525)."""
    cycle = [kind for kind, weight in MIX for _ in range(weight)]
    plan = []
    for n in range(size):
        kind = cycle[n % len(cycle)]
        port = (ports or {}).get(BEHAVIOURS[kind].family, BEHAVIOURS[kind].port)
        plan.append((fleet_ip(n), port, kind))
    return plan


def free_port(ip: str) -> int:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


def canary_ports(ip: str = SCAN_CANARY_IP) -> dict[str, Any]:
    return {
        "ip": ip,
        "domain": CANARY_DOMAIN,
        "http": free_port(ip),
        "tls": free_port(ip),
        "smtp": free_port(ip),
        "selfcheck": free_port(ip),
    }


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- our scan, in a worker process -----------------------------------------------------------


async def _scan(spec: dict[str, Any]) -> dict[str, Any]:
    from scanning.probes.base import Limits
    from scanning.probes.canary import CanaryConfig, MemoryHitStore
    from scanning.probes.canary_http import start_http_canary, start_selfcheck_port
    from scanning.probes.loop_lag import monitor
    from scanning.probes.proxy_judgement import awaited_tokens, rejudge_with_hits
    from scanning.probes.runner import Scanner, ScanOptions, Target
    from scanning.probes.smtp_relay import awaits_confirmation, confirm_with_hits
    from scanning.probes.smtp_sink import start_smtp_sink

    c = spec["canary"]
    ip = c["ip"]
    canary = CanaryConfig(
        domain=c["domain"],
        http_addr=(ip, c["http"]),
        tls_addr=(ip, c["tls"]),
        smtp_addr=(ip, c["smtp"]),
        secret=os.urandom(32),
        selfcheck_addr=(ip, c["selfcheck"]),
    )
    hits = MemoryHitStore()
    servers = [
        await start_http_canary(canary, hits, ip, c["http"]),
        await start_http_canary(canary, hits, ip, c["tls"], tls=True),
        await start_smtp_sink(canary, hits, ip, c["smtp"]),
        await start_selfcheck_port(ip, c["selfcheck"]),
    ]
    with contextlib.suppress(OSError):
        six = await start_http_canary(canary, hits, "::1", 0)
        servers.append(six)
        canary = dataclasses.replace(canary, http_addr6=("::1", six.sockets[0].getsockname()[1]))
    options = ScanOptions(
        protocol="auto",
        allow_private=True,
        confirm=bool(spec.get("confirm", True)),
        limits=Limits(**spec["limits"]),
        max_concurrency=int(spec["concurrency"]),
        network_rate=0,  # the bench measures the probes, not the manners' rate limit
    )
    scanner = Scanner(canary=canary, hits=hits, options=options)
    targets = [Target(f"{t_ip}:{port}", t_ip, int(port)) for t_ip, port in spec["targets"]]
    lag = monitor()  # how late the worker's loop ran: the timeouts' enemy under load
    started = time.perf_counter()
    results = await scanner.run(targets)
    seconds = time.perf_counter() - started
    lag.stop()

    # Provisional results wait for their late hits here, the scan being over (as a campaign's
    # confirmation sweep would upgrade them); what is still provisional after the window stays
    # as the session judged it.
    def waiting_for(r: Any) -> list[str]:
        return [r.token] if awaits_confirmation(r) and r.token else awaited_tokens(r)

    provisional = sum(1 for r in results if waiting_for(r))
    upgraded = 0
    window_end = time.perf_counter() + float(spec.get("confirm_window", CONFIRM_WINDOW))
    while any(waiting_for(r) for r in results) and time.perf_counter() < window_end:
        await asyncio.sleep(0.2)
        for i, r in enumerate(results):
            tokens = waiting_for(r)
            found = [h for t in tokens for h in await hits.wait_for(t, kind=None, timeout=0)]
            if found:
                results[i] = (
                    confirm_with_hits(r, found)
                    if awaits_confirmation(r)
                    else rejudge_with_hits(r, found)
                )
                upgraded += 1
    final_seconds = time.perf_counter() - started
    for server in servers:
        server.close()
    if os.environ.get("BENCH_DEBUG_RESULTS"):  # whole findings, transcripts included
        with open(os.environ["BENCH_DEBUG_RESULTS"], "w", encoding="utf-8") as f:
            json.dump([r.as_json() for r in results], f)
    return {
        "scan_seconds": seconds,
        "final_seconds": final_seconds,
        "provisional_at_scan_end": provisional,
        "upgraded_late": upgraded,
        "selfcheck_passed": scanner.selfcheck_passed,
        "loop_lag": lag.summary(),
        "concurrency_limit": {  # where the adaptive cap went (scanning/probes/loop_lag.py)
            "lowest": getattr(scanner._slots, "lowest_limit", None),
            "peak": getattr(scanner._slots, "peak_limit", None),
        },
        "results": [
            {
                "ip": r.ip,
                "port": r.port,
                "protocol": str(r.protocol),
                "verdict": str(r.verdict),
                "reasons": [str(x) for x in r.reasons],
                "software": r.software.family if r.software else None,
                "duration_ms": r.duration_ms,
            }
            for r in results
        ],
    }


def scan_main(spec_path: str, out_path: str) -> int:
    """The scan worker: `python -m bench.probe_bench scan SPEC.json OUT.json`."""
    nofile = raise_nofile()
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    report = asyncio.run(_scan(spec))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report["nofile"] = nofile
    report["maxrss_kb"] = usage.ru_maxrss
    report["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(report, f)
    return 0


def run_scan(
    targets: Iterable[Key],
    canary: dict[str, Any],
    limits: dict[str, float],
    concurrency: int,
    timeout: float = 240,
) -> dict[str, Any]:
    """Our scan in a worker process; adds process_seconds (launch to exit) to its report."""
    with tempfile.TemporaryDirectory(prefix="probe-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec = {
            "targets": [list(t) for t in targets],
            "canary": canary,
            "limits": limits,
            "concurrency": concurrency,
            "confirm": True,
        }
        spec_path.write_text(json.dumps(spec))
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.probe_bench", "scan", str(spec_path), str(out_path)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise RuntimeError(f"scan worker did not finish in {timeout:.0f}s") from None
        process_seconds = time.perf_counter() - started
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"scan worker failed ({proc.returncode}): {err.decode()[-2000:]}")
        report = json.loads(out_path.read_text())
    report["process_seconds"] = process_seconds
    return report


def verdicts_by_target(results: list[dict[str, Any]]) -> dict[Key, str]:
    """One verdict per (ip, port): the strongest over the protocols it spoke."""
    order = [
        "not-applicable",
        "closed",
        "auth-required",
        "inconclusive",
        "likely-open-weak",
        "likely-open",
        "confirmed-open",
    ]
    out: dict[Key, str] = {}
    for r in results:
        key = (r["ip"], int(r["port"]))
        if key not in out or order.index(r["verdict"]) > order.index(out[key]):
            out[key] = r["verdict"]
    return out


# --- the fleet process -----------------------------------------------------------------------


@contextlib.contextmanager
def fleet_process(
    plan: list[tuple[str, int, str]], sink: Key | None, hold_seconds: float = 60
) -> Iterator[int]:
    """Start bench.fleet serving `plan`; yields its PID once every listener is bound."""
    with tempfile.TemporaryDirectory(prefix="probe-fleet-") as tmp:
        spec_path = Path(tmp) / "fleet.json"
        spec_path.write_text(
            json.dumps(
                {
                    "targets": plan,
                    "sink": list(sink) if sink else None,
                    "hold_seconds": hold_seconds,
                }
            )
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.fleet", str(spec_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            line = proc.stdout.readline().decode() if ready else ""
            if not line.startswith("ready"):
                done = proc.poll() is not None and proc.stderr is not None
                err = proc.stderr.read().decode()[-2000:] if done and proc.stderr else ""
                raise RuntimeError(f"fleet did not start: {line!r} {err}")
            yield proc.pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


# --- nmap's side: its canary, its DNS, its runs ----------------------------------------------


class BackgroundLoop:
    """An asyncio loop in a daemon thread, for servers the parent keeps while nmap runs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def dns_answer(query: bytes) -> bytes | None:
    """NXDOMAIN for everything except an A query for a loopback IPv4 literal, which answers itself.

    nmap's SOCKS script resolves proxy.url's host (an IP literal here) with its own DNS client.
    """
    if len(query) < 17 or query[2] & 0x80 or query[4:6] != b"\0\1":
        return None
    labels, end = [], 12
    while end < len(query) and query[end]:
        size = query[end]
        labels.append(query[end + 1 : end + 1 + size].decode("latin-1"))
        end += 1 + size
    question = query[12 : end + 5]
    qtype = query[end + 1 : end + 3]
    name = ".".join(labels)
    rd = query[2] & 0x01
    try:
        addr = ipaddress.IPv4Address(name)
    except ValueError:
        addr = None
    if addr is not None and addr.is_loopback and qtype == b"\0\1":
        header = query[:2] + bytes([0x84 | rd, 0x80]) + b"\0\1\0\1\0\0\0\0"
        answer = b"\xc0\x0c\0\1\0\1\0\0\0\x3c\0\x04" + addr.packed
        return header + question + answer
    rcode = 0 if addr is not None else 3  # NODATA for AAAA of a literal, NXDOMAIN otherwise
    return query[:2] + bytes([0x84 | rd, 0x80 | rcode]) + b"\0\1\0\0\0\0\0\0" + question


@contextlib.contextmanager
def dns_responder(ip: str = NMAP_DNS_IP) -> Iterator[Key]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, 53))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                query, client = sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = dns_answer(query)
            if reply:
                with contextlib.suppress(OSError):
                    sock.sendto(reply, client)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield (ip, 53)
    finally:
        stop.set()
        thread.join(2)
        sock.close()


@contextlib.contextmanager
def nmap_canary(loop: BackgroundLoop, ip: str = NMAP_CANARY_IP) -> Iterator[Any]:
    """Our HTTP canary on ip:80 for nmap's proxy.url; yields its hit store."""
    from scanning.probes.canary import CanaryConfig, MemoryHitStore
    from scanning.probes.canary_http import start_http_canary

    hits = MemoryHitStore()
    canary = CanaryConfig(
        domain=CANARY_DOMAIN,
        http_addr=(ip, 80),
        tls_addr=(ip, 443),
        smtp_addr=(ip, 25),
        secret=os.urandom(32),
    )

    async def start() -> asyncio.Server:
        return await start_http_canary(canary, hits, ip, 80)

    server = loop.call(start())
    try:
        yield hits
    finally:
        loop.loop.call_soon_threadsafe(server.close)


def nmap_available() -> str | None:
    if shutil.which("nmap") is None:
        return "nmap not installed (scripts/bench-deps.sh installs Debian's)"
    missing = [
        s for s in NMAP_SCRIPTS.values() if not Path(f"/usr/share/nmap/scripts/{s}.nse").exists()
    ]
    return f"nmap scripts missing: {missing}" if missing else None


def assert_loopback(hosts: Iterable[str]) -> None:
    for host in hosts:
        if not ipaddress.ip_address(host).is_loopback:
            raise AssertionError(f"refusing to point nmap at {host}: loopback only")


def nmap_argv(
    family: str, port: int, hosts_file: str, count: int, parallelism: int, host_timeout: int
) -> list[str]:
    script = NMAP_SCRIPTS[family]
    if port not in NMAP_PORTRULE_PORTS[family]:
        script = "+" + script  # run it on this port even though its portrule would not
    if family == "smtp":
        args = f"smtp-open-relay.domain={CANARY_DOMAIN}"
    else:
        url = f"http://{NMAP_CANARY_IP}/c/{NMAP_TOKEN}-{family}"
        assert_loopback([NMAP_CANARY_IP])
        args = f'proxy.url={url},proxy.pattern="{NMAP_PATTERN}"'
    return [
        "nmap",
        "-Pn",
        "-n",
        "-sT",
        "-T4",
        "-p",
        str(port),
        "-iL",
        hosts_file,
        "-oX",
        "-",
        "--host-timeout",
        f"{host_timeout}s",
        *(["--script-timeout", f"{SCRIPT_TIMEOUT}s"] if SCRIPT_TIMEOUT else []),
        "--max-parallelism",
        str(parallelism),
        "--min-hostgroup",
        str(max(count, 1)),
        "--max-retries",
        "1",
        "--dns-servers",
        NMAP_DNS_IP,
        "--script",
        script,
        "--script-args",
        args,
    ]


def _isolated(argv: list[str], etc: Path) -> list[str]:
    """argv in a private mount namespace whose resolv.conf names only our loopback responder."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return argv
    script = (
        "set -e; for f in resolv.conf hosts; do "
        'if [ -e "/etc/$f" ]; then mount --bind "$0/$f" "/etc/$f"; fi; done; exec "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(etc), *argv]


def parse_nmap_xml(xml_text: str, family: str) -> dict[Key, str]:
    """nmap's call per (ip, port): open, not-open, auth-required, error, timeout, port-<state>."""
    calls: dict[Key, str] = {}
    if not xml_text.strip():
        return calls
    root = ET.fromstring(xml_text)
    for host in root.iter("host"):
        addr = host.find("address")
        if addr is None:
            continue
        ip = addr.get("addr", "")
        timed_out = host.get("timedout") == "true"
        for port_el in host.iter("port"):
            port = int(port_el.get("portid", "0"))
            state_el = port_el.find("state")
            state = state_el.get("state", "") if state_el is not None else ""
            script = port_el.find("script")
            if state != "open":
                calls[(ip, port)] = f"port-{state or 'unknown'}"
            elif script is None:
                # The proxy scripts say nothing when a proxy is not open; the relay script
                # always says something, so its silence is a timeout or a crash.
                silent = "not-open" if family != "smtp" else "no-output"
                calls[(ip, port)] = "timeout" if timed_out else silent
            else:
                calls[(ip, port)] = _nmap_call(family, script)
        if timed_out and not host.findall(".//port"):
            calls.setdefault((ip, 0), "timeout")
    return calls


def _nmap_call(family: str, script: ET.Element) -> str:
    output = script.get("output", "")
    if family == "smtp":
        if "Server is an open relay" in output:
            return "open"
        if "authentication needed" in output:
            return "auth-required"
        if "doesn't seem to be an open relay" in output:
            return "not-open"
        return "error"
    if family == "http":
        return "open" if "Potentially OPEN proxy" in output else "not-open"
    status = next((e.text for e in script.iter("elem") if e.get("key") == "status"), None)
    return "open" if status == "open" else "not-open"


@dataclasses.dataclass
class NmapRun:
    family: str
    hosts: int
    seconds: float
    returncode: int
    calls: dict[Key, str]
    stderr: str


def run_nmap(
    groups: dict[str, tuple[int, list[str]]],
    parallelism: int,
    host_timeout: int,
    timeout: float = 240,
) -> tuple[float, list[NmapRun]]:
    """One nmap per family (its port and hosts), all at once; (wall seconds, runs)."""
    for family, (port, hosts) in groups.items():
        assert_loopback(hosts)
        args = nmap_argv(family, port, "-", 1, 1, 1)
        if family != "smtp":  # the proxy scripts' default is www.google.com: never that
            assert f"proxy.url=http://{NMAP_CANARY_IP}/" in args[-1], args
    with tempfile.TemporaryDirectory(prefix="probe-nmap-") as tmp:
        etc = Path(tmp) / "etc"
        etc.mkdir()
        (etc / "resolv.conf").write_text(f"nameserver {NMAP_DNS_IP}\noptions timeout:1\n")
        (etc / "hosts").write_text("127.0.0.1 localhost\n")
        for path in etc.iterdir():
            path.chmod(0o644)
        procs = []
        started = time.perf_counter()
        for family, (port, hosts) in groups.items():
            if not hosts:
                continue
            hosts_file = Path(tmp) / f"{family}.txt"
            hosts_file.write_text("\n".join(hosts) + "\n")
            argv = nmap_argv(family, port, str(hosts_file), len(hosts), parallelism, host_timeout)
            out, err = (
                open(Path(tmp) / f"{family}.xml", "wb"),
                open(Path(tmp) / f"{family}.err", "wb"),
            )
            proc = subprocess.Popen(
                _isolated(argv, etc), stdout=out, stderr=err, stdin=subprocess.DEVNULL
            )
            out.close()
            err.close()
            procs.append((family, len(hosts), proc, time.perf_counter()))
        ended: dict[int, float] = {}
        deadline = started + timeout
        while len(ended) < len(procs):  # each run's own end time, whichever finishes first
            for _, _, proc, _ in procs:
                if proc.pid not in ended and proc.poll() is not None:
                    ended[proc.pid] = time.perf_counter()
            if time.perf_counter() > deadline:
                for _, _, proc, _ in procs:
                    if proc.pid not in ended:
                        os.kill(proc.pid, signal.SIGKILL)
                        proc.wait()
                        ended[proc.pid] = time.perf_counter()
            time.sleep(0.02)
        runs = []
        for family, count, proc, launched in procs:
            seconds = ended[proc.pid] - launched
            xml_text = (Path(tmp) / f"{family}.xml").read_text(errors="replace")
            try:
                calls = parse_nmap_xml(xml_text, family)
            except ET.ParseError:
                calls = {}
            err_text = (Path(tmp) / f"{family}.err").read_text(errors="replace")[-1000:]
            runs.append(NmapRun(family, count, seconds, proc.returncode, calls, err_text))
        wall = time.perf_counter() - started
    return wall, runs


@contextlib.contextmanager
def off_loopback_capture() -> Iterator[dict[str, Any]]:
    """tcpdump (whole machine) for packets not on loopback; fills the dict on exit."""
    found: dict[str, Any] = {}
    if shutil.which("tcpdump") is None or os.geteuid() != 0:
        found["note"] = "tcpdump unavailable or not root: not checked"
        yield found
        return
    with tempfile.NamedTemporaryFile(prefix="probe-tcpdump-", suffix=".txt") as out:
        proc = subprocess.Popen(
            ["tcpdump", "-i", "any", "-n", "-l", "not net 127.0.0.0/8 and not ip6 host ::1"],
            stdout=out,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], 5)  # "listening on any ..."
        if ready:
            proc.stderr.readline()
        try:
            yield found
        finally:
            time.sleep(0.5)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            lines = [ln for ln in Path(out.name).read_text(errors="replace").splitlines() if ln]
            ours = [ln for ln in lines if _mentions_bench(ln)]
            found.update(
                {
                    "filter": "not net 127.0.0.0/8 and not ip6 host ::1",
                    "packets_off_loopback": len(lines),
                    "packets_naming_bench_names_or_addresses": len(ours),
                    "bench_packets": ours[:5],
                    "other_traffic_sample": [ln for ln in lines if ln not in ours][:3],
                }
            )


BENCH_DNS_NEEDLES = (
    ".1.127.in-addr.arpa",  # PTR of a fleet address (127.1.x.y)
    ".96.0.127.in-addr.arpa",  # peers
    ".97.0.127.in-addr.arpa",  # our canary
    ".98.0.127.in-addr.arpa",  # nmap's canary and DNS responder
    "? 127.",  # a name lookup of an IP literal (nmap's SOCKS script, were it to leak)
    "www.google.com",  # the proxy scripts' defaults, were proxy.url ignored
    "wikipedia",
    "computerhistory",
    "scanme",  # smtp-open-relay's default domain
    "secure-your-server",  # our canary domain
)


def _mentions_bench(line: str) -> bool:
    return any(n in line for n in BENCH_DNS_NEEDLES)


# --- comparing verdicts -----------------------------------------------------------------------


def compare(
    truth: dict[Key, bool],
    group: dict[Key, str],
    ours: dict[Key, str],
    nmap: dict[Key, str] | None,
    examples: int = 3,
) -> dict[str, Any]:
    """Per group (a fleet behaviour or a peer): the truth, our verdicts and nmap's calls, who
    was right (open means confirmed-open or likely-open for us, "open" for nmap), how often we
    agree, and the targets where nmap or we called it wrong."""
    groups: dict[str, list[Key]] = collections.defaultdict(list)
    for key, name in group.items():
        groups[name].append(key)
    per: dict[str, Any] = {}
    nmap_wrong: list[dict[str, Any]] = []
    ours_wrong: list[dict[str, Any]] = []
    for name in sorted(groups):
        keys = sorted(groups[name])
        is_open = {truth[k] for k in keys}
        entry: dict[str, Any] = {
            "truth": "open" if is_open == {True} else "not-open" if is_open == {False} else "mixed",
            "targets": len(keys),
            "ours": dict(collections.Counter(ours.get(k, "missing") for k in keys)),
        }
        ours_right = [k for k in keys if (ours.get(k) in OPEN_VERDICTS) == truth[k]]
        entry["ours_right"] = len(ours_right)
        wrong = [k for k in keys if k not in set(ours_right)]
        if wrong:
            ours_wrong.append(
                {
                    "group": name,
                    "count": len(wrong),
                    "truth": entry["truth"],
                    "ours": sorted({ours.get(k, "missing") for k in wrong}),
                    "examples": [f"{ip}:{port}" for ip, port in wrong[:examples]],
                }
            )
        if nmap is not None:
            calls = [nmap.get(k, "missing") for k in keys]
            entry["nmap"] = dict(collections.Counter(calls))
            nmap_right = [k for k in keys if (nmap.get(k) == "open") == truth[k]]
            entry["nmap_right"] = len(nmap_right)
            agree = [k for k in keys if (nmap.get(k) == "open") == (ours.get(k) in OPEN_VERDICTS)]
            entry["agree"] = len(agree)
            entry["agreement"] = round(len(agree) / len(keys), 3)
            wrong = [k for k in keys if k not in set(nmap_right)]
            if wrong:
                nmap_wrong.append(
                    {
                        "group": name,
                        "count": len(wrong),
                        "truth": entry["truth"],
                        "nmap": sorted({nmap.get(k, "missing") for k in wrong}),
                        "ours": sorted({ours.get(k, "missing") for k in wrong}),
                        "examples": [f"{ip}:{port}" for ip, port in wrong[:examples]],
                    }
                )
        per[name] = entry
    total = len(group)
    summary: dict[str, Any] = {
        "per_group": per,
        "ours_right": sum(e["ours_right"] for e in per.values()),
        "targets": total,
        "ours_wrong": ours_wrong,
    }
    if nmap is not None:
        summary["nmap_right"] = sum(e["nmap_right"] for e in per.values())
        summary["agreement"] = round(sum(e["agree"] for e in per.values()) / max(total, 1), 3)
        summary["nmap_wrong"] = nmap_wrong
    return summary


def _session_seconds(scan: dict[str, Any]) -> float:
    """The worker's lifetime without its wait for late confirmations (reported apart)."""
    return float(scan["process_seconds"]) - (scan["final_seconds"] - scan["scan_seconds"])


def _concurrencies(size: int) -> list[int]:
    levels = [size if x.strip() == "all" else int(x) for x in FLEET_CONCURRENCIES.split(",") if x]
    return sorted({min(level, size) for level in [*levels, CONCURRENCY] if level > 0})


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


# --- (a) real peers ---------------------------------------------------------------------------


@dataclasses.dataclass
class PeerSpec:
    name: str
    config: str
    ip: str
    port: int

    @property
    def label(self) -> str:
        return f"{self.name}-{self.config}"


def peer_specs() -> tuple[list[PeerSpec], list[str]]:
    from fakes.peers import CONFIGS, peer_unavailable_reason

    specs, notes = [], []
    n = 11
    for name, configs in CONFIGS.items():
        reason = peer_unavailable_reason(name)
        if reason:
            notes.append(f"skipped {name}: {reason}")
            continue
        for config in configs:
            specs.append(PeerSpec(name, config, f"{PEER_NET}{n}", PEER_PORTS[name]))
            n += 1
    return specs, notes


@contextlib.contextmanager
def running_peers(
    specs: list[PeerSpec], canary: dict[str, Any]
) -> Iterator[tuple[list[PeerSpec], list[str], float]]:
    """Start every peer at once; yields (started, failure notes, start seconds).

    Each peer is started, kept and stopped by its own thread: fakes/peers.py gives a peer
    PR_SET_PDEATHSIG, which fires when the *thread* that forked it ends, so a pool thread that
    finished its start would take the peer down with it.
    """
    from fakes.peers import start_peer

    started: list[PeerSpec] = []
    notes: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    done = threading.Semaphore(0)

    def own(spec: PeerSpec) -> None:
        try:
            cm = start_peer(
                spec.name,
                spec.config,
                listen=spec.ip,
                port=spec.port,
                canary_smtp=(canary["ip"], canary["smtp"]),
                canary_domain=CANARY_DOMAIN,
                canary_ip=canary["ip"],
            )
            with cm:
                with lock:
                    started.append(spec)
                done.release()
                stop.wait()
        except Exception as exc:  # one broken peer must not sink the others' figures
            with lock:
                notes.append(f"{spec.label}: {type(exc).__name__}: {str(exc)[:300]}")
            done.release()

    began = time.perf_counter()
    threads = [threading.Thread(target=own, args=(s,), daemon=True) for s in specs]
    for thread in threads:
        thread.start()
    try:
        for _ in threads:
            done.acquire(timeout=60)
        start_seconds = time.perf_counter() - began
        with lock:
            ready = sorted(started, key=lambda s: ipaddress.ip_address(s.ip))
        yield ready, notes, start_seconds
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def bench_peers(nmap_skip: str | None) -> dict[str, Any]:
    specs, notes = peer_specs()
    if not specs:
        return {"skipped": "no real peers installed (.ci/install-peers.sh)", "notes": notes}
    canary = canary_ports()
    out: dict[str, Any] = {}
    with running_peers(specs, canary) as (started, failed, start_seconds):
        notes += failed
        out["started"] = len(started)
        out["start_seconds"] = round(start_seconds, 1)
        if not started:
            return {"skipped": "no peer started", "notes": notes}
        keys = [(s.ip, s.port) for s in started]
        scan = run_scan(keys, canary, PEER_LIMITS, CONCURRENCY)
        ours = verdicts_by_target(scan["results"])
        out["ours"] = {
            "targets": len(keys),
            "wall_seconds": round(scan["process_seconds"], 2),
            "scan_seconds": round(scan["scan_seconds"], 2),
            "targets_per_second": _rate(len(keys), _session_seconds(scan)),
            "seconds_until_every_verdict_final": round(scan["final_seconds"], 2),
            "peak_rss_mb": round(scan["maxrss_kb"] / 1024, 1),
            "selfcheck_passed": scan["selfcheck_passed"],
        }
        nmap_calls: dict[Key, str] | None = None
        if nmap_skip:
            out["nmap"] = {"skipped": nmap_skip}
        else:
            groups: dict[str, tuple[int, list[str]]] = {}
            for family in NMAP_SCRIPTS:
                port = next(p for p, f in PEER_FAMILY.items() if f == family)
                groups[family] = (port, [s.ip for s in started if s.port == port])
            wall, runs = run_nmap(groups, CONCURRENCY, host_timeout=120)
            nmap_calls = {k: v for r in runs for k, v in r.calls.items()}
            out["nmap"] = _nmap_summary(len(keys), wall, runs)
        truth = {(s.ip, s.port): s.config == "open" for s in started}
        label = {(s.ip, s.port): s.label for s in started}
        out["per_peer"] = {
            s.label: {
                "target": f"{s.ip}:{s.port}",
                "truth": "open" if s.config == "open" else "not-open",
                "ours": ours.get((s.ip, s.port), "missing"),
                "reasons": sorted(
                    {
                        x
                        for r in scan["results"]
                        if (r["ip"], r["port"]) == (s.ip, s.port)
                        for x in r["reasons"]
                    }
                ),
                **(
                    {"nmap": nmap_calls.get((s.ip, s.port), "missing")}
                    if nmap_calls is not None
                    else {}
                ),
            }
            for s in started
        }
        cmp = compare(truth, label, ours, nmap_calls)
        out["ours_right"] = f"{cmp['ours_right']}/{cmp['targets']}"
        if nmap_calls is not None:
            out["nmap_right"] = f"{cmp['nmap_right']}/{cmp['targets']}"
            out["agreement"] = cmp["agreement"]
            out["nmap_wrong"] = cmp["nmap_wrong"]
            out["ratio_targets_per_second_ours_over_nmap"] = (
                round(out["ours"]["targets_per_second"] / out["nmap"]["targets_per_second"], 2)
                if out["nmap"]["targets_per_second"]
                else None
            )
        out["ours_wrong"] = cmp["ours_wrong"]
        out["wrong_verdicts"] = sum(w["count"] for w in cmp["ours_wrong"])
    if notes:
        out["notes"] = notes
    return out


def _nmap_summary(targets: int, wall: float, runs: list[NmapRun]) -> dict[str, Any]:
    return {
        "targets": targets,
        "wall_seconds": round(wall, 2),
        "targets_per_second": _rate(targets, wall),
        "runs": {
            r.family: {
                "script": NMAP_SCRIPTS[r.family],
                "hosts": r.hosts,
                "seconds": round(r.seconds, 2),
                "returncode": r.returncode,
                **({"stderr": r.stderr.strip()[-300:]} if r.returncode else {}),
            }
            for r in runs
        },
    }


# --- (b) the fleet ----------------------------------------------------------------------------


def bench_fleet(nmap_skip: str | None, size: int = FLEET_SIZE) -> dict[str, Any]:
    # Port 25 needs root; otherwise the SMTP behaviours are served on 2525.
    plan = fleet_plan(size, None if os.geteuid() == 0 else {"smtp": 2525})
    canary = canary_ports()
    out: dict[str, Any] = {
        "load_average_at_start": os.getloadavg()[0],  # other work on the machine skews figures
        "targets": size,
        "mix": {kind: sum(1 for *_, k in plan if k == kind) for kind, _ in MIX},
        "distinct_ips": len({ip for ip, *_ in plan}),
        "limits": FLEET_LIMITS,
        "concurrency": CONCURRENCY,
    }
    began = time.perf_counter()
    with fleet_process(plan, sink=(canary["ip"], canary["smtp"])):
        out["fleet_start_seconds"] = round(time.perf_counter() - began, 2)
        keys = [(ip, port) for ip, port, _ in plan]
        scan = run_scan(keys, canary, FLEET_LIMITS, CONCURRENCY)
        ours = verdicts_by_target(scan["results"])
        out["ours"] = {
            "wall_seconds": round(scan["process_seconds"], 2),
            "scan_seconds": round(scan["scan_seconds"], 2),
            "seconds_until_every_verdict_final": round(scan["final_seconds"], 2),
            "provisional_at_scan_end": scan["provisional_at_scan_end"],
            "upgraded_late": scan["upgraded_late"],
            "targets_per_second": _rate(size, _session_seconds(scan)),
            "targets_per_second_scan_only": _rate(size, scan["scan_seconds"]),
            "peak_rss_mb": round(scan["maxrss_kb"] / 1024, 1),
            "cpu_seconds": round(scan["cpu_seconds"], 2),
            "cpu_ms_per_target": round(1000 * scan["cpu_seconds"] / size, 2),
            "open_files_limit": scan["nofile"],
            "selfcheck_passed": scan["selfcheck_passed"],
            "loop_lag": scan.get("loop_lag"),
            "concurrency_limit": scan.get("concurrency_limit"),
            "verdicts": dict(collections.Counter(ours.values())),
        }
        nmap_calls: dict[Key, str] | None = None
        if nmap_skip:
            out["nmap"] = {"skipped": nmap_skip}
        else:
            groups: dict[str, tuple[int, list[str]]] = {}
            for family in NMAP_SCRIPTS:
                items = [(ip, port) for ip, port, k in plan if BEHAVIOURS[k].family == family]
                groups[family] = (items[0][1] if items else 0, [ip for ip, _ in items])
            wall, runs = run_nmap(groups, CONCURRENCY, host_timeout=90)
            nmap_calls = {k: v for r in runs for k, v in r.calls.items()}
            out["nmap"] = _nmap_summary(size, wall, runs)
            out["nmap"]["calls"] = dict(
                collections.Counter(nmap_calls.get(k, "missing") for k in keys)
            )
        truth = {(ip, port): BEHAVIOURS[k].open for ip, port, k in plan}
        group = {(ip, port): k for ip, port, k in plan}
        # The same fleet at other concurrencies: rightness must hold at each one.
        by_concurrency: dict[str, Any] = {}
        for level in _concurrencies(size):
            if level == CONCURRENCY:
                other, other_ours = scan, ours
            else:
                other = run_scan(keys, canary, FLEET_LIMITS, level)
                other_ours = verdicts_by_target(other["results"])
            judged = compare(truth, group, other_ours, None)
            by_concurrency[str(level)] = {
                "ours_right": f"{judged['ours_right']}/{size}",
                "wrong": sum(w["count"] for w in judged["ours_wrong"]),
                "ours_wrong": judged["ours_wrong"],
                "targets_per_second": _rate(size, _session_seconds(other)),
                "seconds_until_every_verdict_final": round(other["final_seconds"], 2),
                "loop_lag": other.get("loop_lag"),
                "concurrency_limit": other.get("concurrency_limit"),
            }
        out["rightness_by_concurrency"] = by_concurrency
    cmp = compare(truth, group, ours, nmap_calls)
    out["per_behaviour"] = cmp["per_group"]
    out["ours_right"] = f"{cmp['ours_right']}/{size}"
    out["ours_wrong"] = cmp["ours_wrong"]
    # Any target judged wrong at any concurrency fails the bench (bench/__main__.py).
    out["wrong_verdicts"] = sum(c["wrong"] for c in by_concurrency.values())
    if nmap_calls is not None:
        out["nmap_right"] = f"{cmp['nmap_right']}/{size}"
        out["agreement"] = cmp["agreement"]
        out["nmap_wrong"] = cmp["nmap_wrong"]
        nmap_tps = out["nmap"]["targets_per_second"]
        out["ratio_targets_per_second_ours_over_nmap"] = (
            round(out["ours"]["targets_per_second"] / nmap_tps, 2) if nmap_tps else None
        )
        out["goal_ratio"] = 5
    return out


# --- entry point ------------------------------------------------------------------------------


def run() -> dict[str, Any]:
    raise_nofile()
    nmap_skip = nmap_available()
    report: dict[str, Any] = {}
    loop = BackgroundLoop()
    capture: dict[str, Any] = {}
    try:
        with contextlib.ExitStack() as stack:
            if not nmap_skip:
                stack.enter_context(dns_responder())
                stack.enter_context(nmap_canary(loop))
                capture = stack.enter_context(off_loopback_capture())
            parts = [p.strip() for p in PROBE_PARTS.split(",")]
            sections = (("peers", bench_peers), ("fleet", bench_fleet))
            for name, section in [(n, f) for n, f in sections if n in parts]:
                started = time.perf_counter()
                try:
                    report[name] = section(nmap_skip)
                except Exception as exc:  # keep the other section's figures
                    report[name] = {"error": f"{type(exc).__name__}: {exc}"}
                    traceback.print_exc(file=sys.stderr)
                report[name]["section_seconds"] = round(time.perf_counter() - started, 1)
    finally:
        loop.close()
    report["wrong_verdicts"] = sum(
        int(report[n].get("wrong_verdicts", 0)) for n in ("peers", "fleet") if n in report
    )
    report["safety"] = {
        "nmap_targets": "asserted within 127.0.0.0/8 before every nmap run",
        "nmap_proxy_url": f"http://{NMAP_CANARY_IP}/c/{NMAP_TOKEN}-<family> (loopback canary; "
        "overrides the scripts' www.google.com default)",
        "nmap_dns": f"--dns-servers {NMAP_DNS_IP} (loopback responder) and, as root, a private "
        "mount namespace whose resolv.conf names only it",
        "tcpdump_during_section": capture or {"note": "nmap skipped: not run"},
    }
    return report


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "scan":
        sys.exit(scan_main(sys.argv[2], sys.argv[3]))
    print(json.dumps(run(), indent=2))
