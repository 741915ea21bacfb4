"""A fast asyncio fleet: thousands of loopback targets, each playing one trap behaviour.

One process serves every target (one listener per IP and port), so the benchmark can aim 2,000
distinct addresses at the scanner, one connection per IP being the scanner's rule. Run it as

    python -m bench.fleet SPEC.json

where SPEC is {"targets": [[ip, port, behaviour], ...], "sink": [ip, port] | null,
"hold_seconds": 60}. It prints one line "ready N" on stdout once every listener is bound and
serves until SIGTERM/SIGINT (the benchmark stops it by its PID).

The behaviours (BEHAVIOURS, what each target plays and whether it is really open) and their
servers live in fakes/fleet.py, built from the same fake servers the tests use.

Safety: nothing here resolves a name or connects anywhere but 127.0.0.0/8 or ::1, and it listens
on 127.0.0.0/8 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import resource
import signal
import sys
from collections.abc import Callable

from fakes.fleet import BEHAVIOURS, LINE_MAX, Behaviour, cancel_background, handler_for

__all__ = ["BEHAVIOURS", "Behaviour", "main", "serve"]


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def serve(spec: dict[str, object], ready: Callable[[int], None] | None = None) -> None:
    targets = spec["targets"]
    assert isinstance(targets, list)
    sink_spec = spec.get("sink")
    sink = (str(sink_spec[0]), int(sink_spec[1])) if isinstance(sink_spec, list) else None
    hold = float(spec.get("hold_seconds", 60))  # type: ignore[arg-type]
    handlers = {kind: handler_for(kind, sink, hold) for kind in BEHAVIOURS}
    servers: list[asyncio.Server] = []
    for ip, port, kind in targets:
        if not ipaddress.ip_address(ip).is_loopback:
            raise ValueError(f"the fleet listens on loopback only, not {ip}")
        servers.append(
            await asyncio.start_server(
                handlers[kind], ip, int(port), reuse_address=True, backlog=256, limit=LINE_MAX * 4
            )
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready(len(servers))
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()
        cancel_background()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.fleet SPEC.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        spec = json.load(f)
    raise_nofile()

    def ready(count: int) -> None:
        sys.stdout.write(f"ready {count}\n")
        sys.stdout.flush()

    asyncio.run(serve(spec, ready))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
