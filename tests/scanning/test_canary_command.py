"""The deployed canary (`manage.py canary`) and the hit table the scan workers read.

The canary runs as its own process, as deployed; the probe in this process sees its hits only
through the database, so the test needs a database both processes share: PostgreSQL (CI sets
DATABASE_URL; locally `export DATABASE_URL=postgres://postgres@127.0.0.1:5432/test`).
"""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from fakes import proxy_traps
from scanning.hitstore import DatabaseHitStore
from scanning.models import CanaryHit as CanaryHitRow
from scanning.probes.base import Limits, ProbeContext, Reason, Target, Verdict
from scanning.probes.canary import CanaryConfig, CanaryHit, canary_answer, new_token
from scanning.probes.open_proxy import probe_http_proxy, selfcheck
from tests.conftest import require

BASE_DIR = Path(__file__).resolve().parents[2]
HOST = "127.0.57.1"
CLIENT = "127.0.57.2"
DOMAIN = "canary.sys-test.example"
SECRET = "canary-command-test-secret"


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"] or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_the_database_hit_store_round_trips() -> None:
    store = DatabaseHitStore(poll_interval=0.05)
    try:
        token = new_token()
        asyncio.run(
            store.record(CanaryHit(token, "http", "127.0.57.3", {"Via": "1.1 x"}, "GET /c/x"))
        )
        [hit] = asyncio.run(store.hits(token))
        assert (hit.kind, hit.peer_ip, hit.headers) == ("http", "127.0.57.3", {"Via": "1.1 x"})

        async def later() -> list[CanaryHit]:
            # Recorded from inside a loop (as the canary does) while another task waits for it.
            waiting = asyncio.ensure_future(store.wait_for(token, kind="smtp", timeout=5))
            await asyncio.sleep(0.1)
            await store.record(CanaryHit(token, "smtp", "::1", {}, "MAIL FROM:<>"))
            return await waiting

        [smtp] = asyncio.run(later())
        assert (smtp.kind, smtp.peer_ip) == ("smtp", "::1")
        assert asyncio.run(store.wait_for(new_token(), kind=None, timeout=0.2)) == []
    finally:
        store.close()
    assert CanaryHitRow.objects.filter(token=token).count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_canary_command_stores_hits_that_workers_see() -> None:
    require(
        connection.vendor == "postgresql",
        "the canary process and this test must share a database: set DATABASE_URL to PostgreSQL",
    )
    addrs = {name: (HOST, _free_port(HOST)) for name in ("HTTP", "TLS", "SMTP", "SELFCHECK")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANARY_")}
    env.update(
        DATABASE_URL=_database_url(),
        CANARY_DOMAIN=DOMAIN,
        CANARY_SECRET=SECRET,
        **{f"CANARY_{name}_ADDR": f"{h}:{p}" for name, (h, p) in addrs.items()},
    )
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "canary"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready = threading.Event()
    output: list[str] = []

    def watch() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if line.startswith("canary ready"):
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    store = DatabaseHitStore(poll_interval=0.05)
    try:
        assert ready.wait(30), (output, proc.poll())
        assert f"canary smtp listening on {HOST}:{addrs['SMTP'][1]}\n" in output

        # A plain fetch of /c/TOKEN, from a client address of our choosing.
        token = new_token()
        client = http.client.HTTPConnection(*addrs["HTTP"], timeout=5, source_address=(CLIENT, 0))
        client.request("GET", f"/c/{token}", headers={"X-Forwarded-For": "192.0.2.1"})
        reply = client.getresponse()
        assert (
            reply.status == 200 and canary_answer(SECRET.encode(), token) in reply.read().decode()
        )
        client.close()
        [hit] = asyncio.run(store.wait_for(token, kind="http", timeout=5))
        assert hit.peer_ip == CLIENT and hit.headers["X-Forwarded-For"] == "192.0.2.1"
        row = CanaryHitRow.objects.get(token=token)
        assert (row.kind, row.peer_ip, row.detail) == ("http", CLIENT, f"GET /c/{token} HTTP/1.1")

        # The SMTP sink files relayed mail under the recipient's token.
        mail_token = new_token()
        with smtplib.SMTP(*addrs["SMTP"], timeout=5, source_address=(CLIENT, 0)) as smtp:
            smtp.sendmail(
                f"probe-{mail_token}@{DOMAIN}",
                [f"rcpt-{mail_token}@{DOMAIN}"],
                b"Subject: t\r\n\r\nx",
            )
        [mail] = asyncio.run(store.wait_for(mail_token, kind="smtp", timeout=5))
        assert mail.peer_ip == CLIENT and mail.headers["Subject"] == "t"

        # A worker's probe of an open proxy: confirmed through hits it reads from the table.
        canary = CanaryConfig(
            domain=DOMAIN,
            http_addr=addrs["HTTP"],
            tls_addr=addrs["TLS"],
            smtp_addr=addrs["SMTP"],
            secret=SECRET.encode(),
            selfcheck_addr=addrs["SELFCHECK"],
        )
        limits = Limits(connect_timeout=2, reply_timeout=2, exchange_timeout=10)
        with proxy_traps.run_trap("open_http", "127.0.57.4") as (trap_host, trap_port):
            result = asyncio.run(
                probe_http_proxy(
                    Target.at(trap_host, trap_port),
                    ProbeContext(canary=canary, hits=store, limits=limits),
                )
            )
        assert result.verdict is Verdict.CONFIRMED_OPEN, result.reasons
        assert Reason.SECRET_RETURNED in result.reasons and Reason.TLS_TO_CANARY in result.reasons
        assert CanaryHitRow.objects.filter(token__startswith=result.token, kind="tls").exists()
        assert (
            asyncio.run(selfcheck(ProbeContext(canary=canary, hits=store, limits=limits))) is True
        )
    finally:
        store.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def test_the_canary_command_needs_its_settings() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANARY_")}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "manage.py", "canary"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "CANARY_HTTP_ADDR" in done.stderr
    assert time.monotonic() - started < 30
