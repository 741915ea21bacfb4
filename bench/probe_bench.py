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
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bench.fleet import BEHAVIOURS
from bench.nmap_side import (
    BackgroundLoop,
    NmapRun,
    dns_responder,
    nmap_available,
    nmap_canary,
    off_loopback_capture,
    run_nmap,
)
from bench.probe_settings import (
    CANARY_DOMAIN,
    CONCURRENCY,
    CONFIRM_WINDOW,
    FLEET_CONCURRENCIES,
    FLEET_LIMITS,
    FLEET_SIZE,
    MIX,
    NMAP_CANARY_IP,
    NMAP_DNS_IP,
    NMAP_SCRIPTS,
    NMAP_TOKEN,
    OPEN_VERDICTS,
    PEER_FAMILY,
    PEER_LIMITS,
    PEER_NET,
    PEER_PORTS,
    PROBE_PARTS,
    ROOT,
    SCAN_CANARY_IP,
    Key,
)

# --- plans -----------------------------------------------------------------------------------


def fleet_ip(n: int) -> str:
    """Distinct loopback IPs 127.1.0.1 ... (250 a /24), never .0 or .255."""
    return f"127.1.{n // 250}.{n % 250 + 1}"


def fleet_plan(
    size: int, ports: dict[str, int] | None = None, *, first: int = 0
) -> list[tuple[str, int, str]]:
    """(ip, port, behaviour) for `size` targets from the `first`-th fleet address; `ports`
    overrides a family's port (tests that may not bind port 25 use 2525)."""
    cycle = [kind for kind, weight in MIX for _ in range(weight)]
    plan = []
    for n in range(size):
        kind = cycle[n % len(cycle)]
        port = (ports or {}).get(BEHAVIOURS[kind].family, BEHAVIOURS[kind].port)
        plan.append((fleet_ip(first + n), port, kind))
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
