"""`manage.py probe` as scripts and partners run it: JSON Lines and exit statuses.

Most tests run the command in this process (tests/commandline.py); one starts it as a script does.

Peers are traps on 127.0.58.x / ::1; the command starts its own canary on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from fakes import proxy_traps, smtp_traps
from tests.commandline import manage

BASE_DIR = Path(__file__).resolve().parents[2]
KEYS = {
    "target",
    "ip",
    "port",
    "protocol",
    "transport",
    "verdict",
    "evidence_level",
    "reasons",
    "software",
    "duration_ms",
}


# The command with no deployed canary and no private-range permission from the environment: the
# flags alone decide.
_BARE_SETTINGS = {
    "SCAN_ALLOW_PRIVATE": False,
    "CANARY_DOMAIN": "",
    "CANARY_HTTP_ADDR": "",
    "CANARY_TLS_ADDR": "",
    "CANARY_SMTP_ADDR": "",
    "CANARY_SELFCHECK_ADDR": "",
    "CANARY_SECRET": "",
}


def probe(*args: str) -> tuple[int, list[dict[str, Any]], str, float]:
    """Run the command in this process; (exit status, parsed JSON lines, stderr, seconds)."""
    started = time.monotonic()
    with override_settings(**_BARE_SETTINGS):
        done = manage("probe", *args)
    elapsed = time.monotonic() - started
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, lines, done.stderr, elapsed


def probe_in_a_new_process(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    """The command as a script starts it: its own interpreter, settings from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANARY_")}
    env["SCAN_ALLOW_PRIVATE"] = "0"
    done = subprocess.run(
        [sys.executable, "manage.py", "probe", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, lines, done.stderr


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@contextlib.contextmanager
def slow_smtp(
    hosts: list[str], delay: float, seen: dict[str, int] | None = None
) -> Iterator[list[str]]:
    """Closed SMTP servers that wait `delay` seconds before greeting; yields HOST:PORT each.
    `seen["most"]` becomes the most connections that were open at once."""
    loop = asyncio.new_event_loop()
    seen = seen if seen is not None else {}
    seen.update(open=0, most=0)
    ready = threading.Event()
    addresses: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["open"] += 1
        seen["most"] = max(seen["most"], seen["open"])
        try:
            await asyncio.sleep(delay)
            writer.write(b"220 slow.trap.test ESMTP\r\n")
            while line := await asyncio.wait_for(reader.readline(), 30):
                verb = line[:4].upper()
                if verb == b"RCPT":
                    writer.write(b"554 5.7.1 Relay access denied\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    break
                elif verb in (b"EHLO", b"HELO", b"MAIL", b"RSET", b"NOOP"):
                    writer.write(b"250 slow.trap.test\r\n")
                else:
                    writer.write(b"502 5.5.2 Error: command not recognized\r\n")
                await writer.drain()
        except (OSError, TimeoutError, asyncio.CancelledError):
            pass
        finally:
            seen["open"] -= 1
            writer.close()

    def main() -> None:
        asyncio.set_event_loop(loop)
        servers = [loop.run_until_complete(asyncio.start_server(handle, h, 0)) for h in hosts]
        for host, server in zip(hosts, servers, strict=True):
            addresses.append(f"{host}:{server.sockets[0].getsockname()[1]}")
        ready.set()
        loop.run_forever()
        for server in servers:
            server.close()
        loop.close()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield addresses
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_it_prints_one_json_line_per_target_with_the_brief_keys() -> None:
    with (
        smtp_traps.run_trap("closed", "127.0.58.1") as closed,
        smtp_traps.run_trap("greylist", "127.0.58.2") as greylist,
    ):
        targets = [f"127.0.58.1:{closed.port}", f"127.0.58.2:{greylist.port}"]
        status, lines, stderr = probe_in_a_new_process(
            "--allow-private", "--protocol", "smtp", "--json", *targets
        )
    assert status == 0, stderr
    assert sorted(line["target"] for line in lines) == sorted(targets)
    for line in lines:
        assert KEYS <= set(line), line.keys()
        assert line["protocol"] == "smtp" and line["ip"] in ("127.0.58.1", "127.0.58.2")
        assert isinstance(line["port"], int) and isinstance(line["duration_ms"], int)
    by_ip = {line["ip"]: line for line in lines}
    closed_line = by_ip["127.0.58.1"]
    assert (closed_line["verdict"], closed_line["evidence_level"]) == ("closed", "none")
    assert "rcpt_5xx_all" in closed_line["reasons"]
    assert closed_line["software"]["family"] == "Postfix"
    assert "retry_after" not in closed_line
    grey = by_ip["127.0.58.2"]
    assert grey["verdict"] == "inconclusive" and "temp_reject_4xx" in grey["reasons"]
    assert grey["retry_after"] >= 1  # campaign scans come back later


def test_it_echoes_an_ipv6_target_as_given() -> None:
    if not _has_ipv6_loopback():
        pytest.skip("no ::1 on this host")
    with smtp_traps.run_trap("closed", "::1") as trap:
        status, lines, stderr, _ = probe("--allow-private", f"[::1]:{trap.port}")
    assert status == 0, stderr
    assert [(line["target"], line["ip"], line["port"]) for line in lines] == [
        (f"[::1]:{trap.port}", "::1", trap.port)
    ]
    assert lines[0]["protocol"] == "smtp"  # auto: the greeting said SMTP


def test_it_refuses_loopback_without_allow_private_and_sends_nothing() -> None:
    with (
        smtp_traps.run_trap("closed", "127.0.58.3") as first,
        smtp_traps.run_trap("open", "127.0.58.4") as second,
    ):
        status, lines, stderr, _ = probe(f"127.0.58.3:{first.port}", f"127.0.58.4:{second.port}")
        assert status == 2
        assert lines == []
        assert f"127.0.58.3:{first.port}" in stderr and "loopback" in stderr
        assert first.state.connections == 0 and second.state.connections == 0


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["127.0.58.5:99999"], "127.0.58.5:99999"),
        (["127.0.58.5:0"], "127.0.58.5:0"),
        (["127.0.58.5"], "127.0.58.5"),
        (["999.0.0.1:25"], "999.0.0.1:25"),
        (["::1:25"], "::1:25"),
        (["mx.example.com:25"], "mx.example.com"),
        (["--protocol", "ftp", "127.0.58.5:25"], "--protocol"),
        (["--canary-smtp", "nowhere", "127.0.58.5:25"], "--canary-smtp"),
        (["--canary-smtp", "127.0.58.5:0", "127.0.58.5:25"], "--canary-smtp"),
        (["--canary-smtp", "mail.example:2525", "127.0.58.5:25"], "--canary-smtp"),
        (["--canary-domain", "canary.example.invalid", "127.0.58.5:25"], "--canary-domain"),
        (["--source", "not-an-ip", "127.0.58.5:25"], "--source"),
        (["--source", "::1", "127.0.58.5:25"], "--source"),
        ([], "HOST:PORT"),
    ],
)
def test_bad_arguments_exit_2_naming_the_bad_one(args: list[str], named: str) -> None:
    status, lines, stderr, _ = probe("--allow-private", *args)
    assert status == 2, stderr
    assert lines == []
    assert named in stderr


def test_auto_picks_the_protocol_each_peer_speaks() -> None:
    with (
        smtp_traps.run_trap("closed", "127.0.58.6") as mail,
        proxy_traps.run_trap("socks5", "127.0.58.7") as (_, socks_port),
    ):
        status, lines, stderr, _ = probe(
            "--allow-private",
            "--protocol",
            "auto",
            f"127.0.58.6:{mail.port}",
            f"127.0.58.7:{socks_port}",
        )
    assert status == 0, stderr
    found = sorted((line["ip"], line["protocol"], line["verdict"]) for line in lines)
    assert found == [("127.0.58.6", "smtp", "closed"), ("127.0.58.7", "socks5", "confirmed-open")]
    socks = next(line for line in lines if line["protocol"] == "socks5")
    assert {"canary_hit", "secret_returned"} <= set(socks["reasons"])


def test_it_probes_targets_concurrently() -> None:
    delay = 2.0
    hosts = [f"127.0.58.{i}" for i in range(10, 15)]
    seen: dict[str, int] = {}
    with slow_smtp(hosts, delay, seen) as targets:
        status, lines, stderr, _ = probe("--allow-private", "--protocol", "smtp", *targets)
    assert status == 0, stderr
    assert sorted(line["target"] for line in lines) == sorted(targets)
    assert all(line["verdict"] == "closed" for line in lines), [line["verdict"] for line in lines]
    durations = [line["duration_ms"] / 1000 for line in lines]
    assert min(durations) >= delay, durations
    # One after another, never more than one server would have had a visitor at a time.
    assert seen["most"] == len(hosts), seen


def test_confirm_delivers_to_the_commands_own_sink() -> None:
    sink = ("127.0.58.20", free_port("127.0.58.20"))
    with smtp_traps.run_trap("open", "127.0.58.21", sink=sink) as relay:
        status, lines, stderr, _ = probe(
            "--allow-private",
            "--confirm",
            "--wait",  # returns when the delivery arrives; long enough for a loaded machine
            "60",
            "--protocol",
            "smtp",
            "--canary-smtp",
            f"{sink[0]}:{sink[1]}",
            "--canary-domain",
            "canary.sys-test.example",
            f"127.0.58.21:{relay.port}",
        )
        # The trap counts a forward once its own session with the sink has ended, which may be
        # just after our canary has recorded the message.
        deadline = time.monotonic() + 10
        while relay.state.forwarded == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert relay.state.forwarded == 1, relay.state.forward_errors
    assert status == 0, stderr
    [line] = [line for line in lines if line["final"]]
    assert (line["verdict"], line["evidence_level"]) == ("confirmed-open", "strong")
    assert "delivered_to_canary" in line["reasons"]
    [message] = relay.state.messages
    assert b"canary.sys-test.example" in message  # addressed only to our own canary domain


def _probe_queueing_relay(host: str, *wait: str) -> tuple[int, list[dict[str, Any]], str]:
    # An open relay that keeps the message queued for 2 s before it delivers to our sink.
    sink = (host, free_port(host))
    relay_host = host.rsplit(".", 1)[0] + "." + str(int(host.rsplit(".", 1)[1]) + 1)
    with smtp_traps.run_trap("open", relay_host, sink=sink, forward_delay=2) as relay:
        status, lines, stderr, _ = probe(
            "--allow-private",
            "--confirm",
            *wait,
            "--protocol",
            "smtp",
            "--canary-smtp",
            f"{sink[0]}:{sink[1]}",
            "--canary-domain",
            "canary.sys-test.example",
            f"{relay_host}:{relay.port}",
        )
    return status, lines, stderr


def test_a_late_delivery_upgrades_the_line_within_wait() -> None:
    status, lines, stderr = _probe_queueing_relay("127.0.58.30", "--wait", "15")
    assert status == 0, stderr
    first, last = lines  # the session's provisional line, then the final one
    assert (first["final"], first["verdict"]) == (False, "likely-open-weak")
    assert "accepted_not_delivered" in first["reasons"]
    assert (last["final"], last["verdict"], last["evidence_level"]) == (
        True,
        "confirmed-open",
        "strong",
    )
    assert "delivered_to_canary" in last["reasons"]
    assert "accepted_not_delivered" not in last["reasons"]
    assert first["token"] == last["token"] and first["token"] not in json.dumps(last["details"])


def test_wait_zero_returns_the_provisional_line_at_once() -> None:
    status, lines, stderr = _probe_queueing_relay("127.0.58.32", "--wait", "0")
    assert status == 0, stderr
    [line] = lines
    assert (line["final"], line["verdict"]) == (False, "likely-open-weak")


def test_it_refuses_a_negative_wait() -> None:
    status, lines, stderr, _ = probe("--allow-private", "--wait", "-1", "127.0.0.1:25")
    assert status == 2 and lines == [] and "--wait" in stderr


def test_without_confirm_an_open_relay_is_only_the_servers_word() -> None:
    with smtp_traps.run_trap("open", "127.0.58.22") as relay:
        status, lines, stderr, _ = probe("--allow-private", f"127.0.58.22:{relay.port}")
        assert relay.state.messages == []  # no DATA without --confirm
    assert status == 0, stderr
    [line] = lines
    assert line["verdict"] == "likely-open-weak" and line["evidence_level"] == "weak"
    assert line["final"] is True  # nothing was sent to confirm, so nothing is awaited
