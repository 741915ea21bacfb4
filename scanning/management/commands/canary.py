"""`manage.py canary`: the deployed canary (HTTP, TLS, SMTP sink, self-check port).

Hits go to the CanaryHit table, where the scan workers (other processes) look for their tokens.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any, cast

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from scanning.probes.base import host_port
from scanning.probes.canary import CanaryConfig
from scanning.probes.canary_http import start_http_canary, start_selfcheck_port
from scanning.probes.smtp_sink import start_smtp_sink


def _show(addr: tuple[str, int]) -> str:
    return host_port(*addr)


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

        hits = DatabaseHitStore()
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
            await asyncio.to_thread(hits.close)  # pending writes finish before the exit
