"""`manage.py canary`: the deployed canary (HTTP, TLS, SMTP sink, self-check port).

Hits go to the CanaryHit table, where the scan workers (other processes) look for their tokens.
After each relayed test message is stored, a worker is asked to upgrade the provisional finding
that carries its token (`sweeps.confirm_findings`); beat runs the same task for any request lost.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, cast

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from scanning.probes.base import host_port
from scanning.probes.canary import CanaryConfig, CanaryHit, HitStore
from scanning.probes.canary_http import start_http_canary, start_selfcheck_port
from scanning.probes.smtp_sink import start_smtp_sink

log = logging.getLogger(__name__)


def _show(addr: tuple[str, int]) -> str:
    return host_port(*addr)


def ask_for_confirmation(token: str) -> None:
    """Queue the upgrade of the finding that sent this delivery. A broker that is down loses
    only the message: the delivery is in the table and beat's sweep finds it."""
    from scanning.tasks import confirm_findings_task

    try:
        confirm_findings_task.delay([token])
    except Exception:  # the canary keeps listening whatever the broker does
        log.warning("confirmation of %s… not queued; the next sweep takes it", token[:8])


class ConfirmingHitStore:
    """The table's hit store, asking for a confirmation once each delivery is stored."""

    def __init__(self, store: HitStore) -> None:
        self.store = store

    async def record(self, hit: CanaryHit) -> None:
        await self.store.record(hit)
        if hit.kind != "smtp":  # proxy findings are final when stored (docs/probes.md)
            return
        # Off the loop and not awaited: sending to the broker blocks, and the sink need not wait.
        asyncio.get_running_loop().run_in_executor(None, ask_for_confirmation, hit.token)

    async def hits(self, token: str) -> list[CanaryHit]:
        return await self.store.hits(token)

    async def wait_for(self, token: str, *, kind: str | None, timeout: float) -> list[CanaryHit]:
        return await self.store.wait_for(token, kind=kind, timeout=timeout)


class Command(BaseCommand):
    help = "Run the scanner's canary: HTTP, TLS and SMTP sink; hits are stored for the workers."

    def handle(self, *args: Any, **options: Any) -> None:
        missing = [
            name
            for name in (
                "CANARY_DOMAIN",
                "CANARY_SECRET",
                "CANARY_HTTP_ADDR",
                "CANARY_TLS_ADDR",
                "CANARY_SMTP_ADDR",
            )
            if not getattr(settings, name)
        ]
        if missing:
            raise CommandError(f"the canary needs {', '.join(missing)}", returncode=2)
        canary = CanaryConfig(
            domain=settings.CANARY_DOMAIN,
            # all three were checked above
            http_addr=cast(tuple[str, int], settings.CANARY_HTTP_ADDR),
            tls_addr=cast(tuple[str, int], settings.CANARY_TLS_ADDR),
            smtp_addr=cast(tuple[str, int], settings.CANARY_SMTP_ADDR),
            secret=settings.CANARY_SECRET.encode(),
            selfcheck_addr=getattr(settings, "CANARY_SELFCHECK_ADDR", None),
        )
        try:
            asyncio.run(self.serve(canary))
        except OSError as exc:
            raise CommandError(f"the canary cannot listen: {exc}") from None

    async def serve(self, canary: CanaryConfig) -> None:
        from scanning.hitstore import DatabaseHitStore

        table = DatabaseHitStore()
        hits = ConfirmingHitStore(table)
        servers: list[asyncio.Server] = []
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            servers.append(await start_http_canary(canary, hits, *canary.http_addr))
            servers.append(await start_http_canary(canary, hits, *canary.tls_addr, tls=True))
            servers.append(await start_smtp_sink(canary, hits, *canary.smtp_addr))
            names = ["http", "tls", "smtp"]
            if canary.selfcheck_addr:
                servers.append(await start_selfcheck_port(*canary.selfcheck_addr))
                names.append("selfcheck")
            for name, server in zip(names, servers, strict=True):
                addr = server.sockets[0].getsockname()[:2]
                self.stdout.write(f"canary {name} listening on {_show(addr)}")
            self.stdout.write(f"canary ready for {canary.domain}")
            self.stdout.flush()
            await stop.wait()
        finally:
            for server in servers:
                server.close()
            for server in servers:
                try:
                    await asyncio.wait_for(server.wait_closed(), 5)
                except (TimeoutError, OSError):
                    pass
            await asyncio.to_thread(table.close)  # pending writes finish before the exit
