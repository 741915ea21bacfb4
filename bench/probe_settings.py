"""What the probe bench is set to: its loopback addresses, sizes, concurrencies, limits and the
mix of fake servers, each overridable from the environment where it says so."""

from __future__ import annotations

import os
from pathlib import Path

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
