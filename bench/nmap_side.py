"""nmap's side of the probe bench: its canary and DNS on loopback, its command lines (targets
asserted to be loopback), its XML read into verdicts, and a capture that proves nothing left
loopback."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bench.probe_settings import (
    CANARY_DOMAIN,
    NMAP_CANARY_IP,
    NMAP_DNS_IP,
    NMAP_PATTERN,
    NMAP_PORTRULE_PORTS,
    NMAP_SCRIPTS,
    NMAP_TOKEN,
    SCRIPT_TIMEOUT,
    Key,
)

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
