from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from fakes.smtp_traps import TrapAddress, final_recipient, run_trap
from scanning.probes.base import (
    EvidenceLevel,
    Limits,
    ProbeContext,
    ProbeResult,
    Reason,
    Target,
    Transport,
    TransportStatus,
    Verdict,
)
from scanning.probes.canary import CanaryConfig, MemoryHitStore, new_token
from scanning.probes.smtp_relay import probe_smtp
from scanning.probes.smtp_sink import start_smtp_sink

LIMITS = Limits(connect_timeout=1, reply_timeout=1, exchange_timeout=5, confirm_wait=2)
# The exchange bound (plus the outer guard's second) and the confirmation wait: the most a probe
# may take.
BOUND_MS = (LIMITS.exchange_timeout + 1 + LIMITS.confirm_wait) * 1000
DOMAIN = "canary.test"
SINK_HOST = "127.0.22.1"


def canary(sink_port: int = 0, domain: str = DOMAIN) -> CanaryConfig:
    return CanaryConfig(
        domain=domain,
        http_addr=(SINK_HOST, 9),
        tls_addr=(SINK_HOST, 9),
        smtp_addr=(SINK_HOST, sink_port),
        secret=b"test-secret",
    )


def probe_trap(
    kind: str,
    host: str,
    *,
    source: str,
    forward: bool = False,
    port: int = 0,
    trap_opts: dict[str, Any] | None = None,
    **probe_kwargs: Any,
) -> tuple[ProbeResult, TrapAddress, MemoryHitStore]:
    """Start the canary sink and a trap, probe the trap once."""

    async def main() -> tuple[ProbeResult, TrapAddress, MemoryHitStore]:
        hits = MemoryHitStore()
        sink = await start_smtp_sink(canary(), hits, SINK_HOST, 0)
        sink_port = sink.sockets[0].getsockname()[1]
        opts = dict(trap_opts or {})
        if forward:
            opts["sink"] = (SINK_HOST, sink_port)
        try:
            with run_trap(kind, host, port=port, **opts) as trap:
                result = await probe_smtp(
                    Target.at(trap.host, trap.port),
                    ProbeContext(
                        canary=canary(sink_port),
                        hits=hits,
                        limits=LIMITS,
                        source=source,
                        **probe_kwargs,
                    ),
                )
        finally:
            sink.close()
        return result, trap, hits

    return asyncio.run(main())


def assert_redacted(result: ProbeResult) -> None:
    assert result.token
    everything = json.dumps({"transcript": result.transcript, "details": result.details})
    assert result.token not in everything
    assert "[REDACTED]" in everything


def variant(result: ProbeResult, name: str) -> dict[str, Any]:
    return next(v for v in result.details["variants"] if v["name"] == name)


def test_it_confirms_a_relay_that_delivers_to_the_canary() -> None:
    result, trap, hits = probe_trap(
        "open", "127.0.20.1", source="127.0.21.1", forward=True, confirm=True
    )
    assert result.verdict is Verdict.CONFIRMED_OPEN
    assert result.evidence_level is EvidenceLevel.STRONG
    for reason in (Reason.RCPT_2XX_EXTERNAL, Reason.DATA_ACCEPTED, Reason.DELIVERED_TO_CANARY):
        assert reason in result.reasons
    assert result.transport_status is TransportStatus.SUCCESS
    assert result.details["delivered"] is True
    assert result.details["data"]["outcome"] == "accepted"
    assert result.details["canary_hits"][0]["peer_ip"] == "127.0.20.1"  # the relay's own address
    [hit] = hits.recorded(result.token or "")
    assert hit.kind == "smtp" and hit.headers["Subject"].endswith(result.token or "")
    assert result.software is not None and result.software.family == "Postfix"
    assert result.duration_ms < BOUND_MS
    assert_redacted(result)
    assert any(line["text"].startswith("220 mx.trap.test ESMTP") for line in result.transcript)


def test_it_sends_one_small_message_to_the_canary_domain_only() -> None:
    result, trap, _ = probe_trap(
        "open", "127.0.20.2", source="127.0.21.2", forward=True, confirm=True
    )
    assert result.verdict is Verdict.CONFIRMED_OPEN
    [message] = trap.state.messages
    assert len(message) <= 1024
    assert b"To: <rcpt-" in message and f"@{DOMAIN}>".encode() in message
    assert b"scanner.secure-your-server.invalid" in message
    rcpts = [c for c in trap.state.commands if c.upper().startswith("RCPT TO:")]
    destinations = {final_recipient(c.split(":", 1)[1]) for c in rcpts}
    # Every recipient ends at the canary, except the control, which no MTA can deliver.
    assert {d.rsplit("@", 1)[1] for d in destinations if d} == {DOMAIN}
    assert any(".invalid" in c for c in rcpts)


def test_it_calls_an_unconfirmed_relay_that_accepts_everything_weak() -> None:
    result, _, _ = probe_trap("open", "127.0.20.3", source="127.0.21.3", confirm=False)
    assert result.verdict is Verdict.LIKELY_OPEN_WEAK
    assert result.evidence_level is EvidenceLevel.WEAK
    assert Reason.CONTROL_INVALID_ACCEPTED in result.reasons
    assert Reason.CONFIRMATION_SKIPPED in result.reasons
    assert result.details["control_accepted"] is True
    assert result.details["data"] is None
    assert result.duration_ms < LIMITS.exchange_timeout * 1000


def test_it_calls_a_catch_all_that_discards_weak() -> None:
    result, trap, _ = probe_trap("catchall", "127.0.20.4", source="127.0.21.4", confirm=True)
    assert result.verdict is Verdict.LIKELY_OPEN_WEAK
    assert Reason.ACCEPTED_NOT_DELIVERED in result.reasons
    assert Reason.CONTROL_INVALID_ACCEPTED in result.reasons
    assert result.details["data"]["outcome"] == "accepted"
    assert result.details["delivered"] is False
    assert len(trap.state.messages) == 1
    assert result.duration_ms < BOUND_MS


def test_it_calls_a_discriminating_relay_likely_open() -> None:
    result, _, _ = probe_trap("discriminating", "127.0.20.5", source="127.0.21.5", confirm=True)
    assert result.verdict is Verdict.LIKELY_OPEN
    assert result.evidence_level is EvidenceLevel.MEDIUM
    assert Reason.CONTROL_INVALID_REFUSED in result.reasons
    assert Reason.RCPT_2XX_EXTERNAL in result.reasons
    assert Reason.ACCEPTED_NOT_DELIVERED in result.reasons
    assert result.details["control_accepted"] is False
    control = variant(result, "control-invalid")
    assert control["rcpt_code"] == 550 and "Domain not found" in control["rcpt_text"]


def test_it_confirms_a_discriminating_relay_that_delivers() -> None:
    result, _, _ = probe_trap(
        "discriminating", "127.0.20.6", source="127.0.21.6", forward=True, confirm=True
    )
    assert result.verdict is Verdict.CONFIRMED_OPEN


def test_it_calls_a_server_refusing_every_variant_closed() -> None:
    result, trap, _ = probe_trap("closed", "127.0.20.7", source="127.0.21.7", confirm=True)
    assert result.verdict is Verdict.CLOSED
    assert result.evidence_level is EvidenceLevel.NONE
    assert Reason.RCPT_5XX_ALL in result.reasons
    names = [v["name"] for v in result.details["variants"]]
    assert names[0] == "control-invalid"
    assert len([n for n in names if n.startswith("sender-")]) == 6
    assert len([n for n in names if n.startswith("rcpt-")]) == 9
    assert all(v["rcpt_code"] == 554 for v in result.details["variants"])
    assert "Relay access denied" in variant(result, "rcpt-bang")["rcpt_text"]
    # docs/probes.md: at most 8 refused RCPTs per connection, then QUIT and reconnect.
    assert trap.state.max_refused_per_connection <= LIMITS.max_refused_rcpt_per_connection
    assert trap.state.connections == 2
    assert result.details["data"] is None
    assert result.software is not None and result.software.family == "Postfix"
    assert result.duration_ms < LIMITS.exchange_timeout * 1000


def test_it_tries_every_sender_and_recipient_form() -> None:
    result, _, _ = probe_trap("closed", "127.0.20.8", source="127.0.21.8")
    sent = {v["name"]: (v["mail_from"], v["rcpt_to"]) for v in result.details["variants"]}
    rcpt = f"rcpt-[REDACTED]@{DOMAIN}"
    assert sent["sender-null"] == ("<>", f"<{rcpt}>")
    assert sent["sender-own-hostname"][0] == "<probe-[REDACTED]@mx.trap.test>"
    assert sent["sender-ip-literal"][0] == "<probe-[REDACTED]@[127.0.20.8]>"
    assert sent["sender-localhost"][0] == "<probe-[REDACTED]@localhost>"
    assert sent["sender-unqualified"][0] == "<probe-[REDACTED]>"
    assert sent["rcpt-quoted"][1] == f'<"{rcpt}">'
    assert sent["rcpt-unbracketed"][1] == rcpt
    assert sent["rcpt-percent-ip"][1] == f"<rcpt-[REDACTED]%{DOMAIN}@[127.0.20.8]>"
    assert sent["rcpt-percent-host"][1] == f"<rcpt-[REDACTED]%{DOMAIN}@mx.trap.test>"
    assert sent["rcpt-double-at"][1] == f"<{rcpt}@[127.0.20.8]>"
    assert sent["rcpt-quoted-local"][1] == f'<"{rcpt}"@[127.0.20.8]>'
    assert sent["rcpt-source-route"][1] == f"<@[127.0.20.8]:{rcpt}>"
    assert sent["rcpt-bang"][1] == f"<{DOMAIN}!rcpt-[REDACTED]>"
    assert sent["rcpt-bang-ip"][1] == f"<{DOMAIN}!rcpt-[REDACTED]@[127.0.20.8]>"
    # The recipient forms use the first sender that MAIL FROM accepted.
    assert sent["rcpt-bang"][0] == sent["sender-external"][0]


def test_it_stays_under_a_strict_error_limit() -> None:
    # A server that drops clients at their 10th error (Postfix's default) never drops us.
    result, trap, _ = probe_trap(
        "closed", "127.0.20.9", source="127.0.21.9", trap_opts={"drop_after": 10}
    )
    assert result.verdict is Verdict.CLOSED
    assert trap.state.max_refused_per_connection <= 8


def test_it_binds_the_source_address() -> None:
    result, trap, _ = probe_trap("closed", "127.0.20.10", source="127.0.21.10")
    assert trap.state.peers and set(trap.state.peers) == {"127.0.21.10"}
    assert "from 127.0.21.10" in result.transcript[0]["text"]


def test_it_tries_the_whole_list_when_asked() -> None:
    result, _, _ = probe_trap("catchall", "127.0.20.11", source="127.0.21.11", full=True)
    assert result.verdict is Verdict.LIKELY_OPEN_WEAK
    accepted = [v for v in result.details["variants"] if v["outcome"] == "accepted"]
    assert len(accepted) == 16  # the control, 6 sender forms, 9 recipient forms


def test_it_stops_at_the_first_accepted_variant() -> None:
    result, trap, _ = probe_trap("catchall", "127.0.20.12", source="127.0.21.12")
    assert [v["name"] for v in result.details["variants"]] == ["control-invalid", "sender-external"]
    assert not any(c.upper().startswith("DATA") for c in trap.state.commands)


def test_it_keeps_postscreen_temp_rejects_inconclusive() -> None:
    result, _, _ = probe_trap("postscreen", "127.0.20.13", source="127.0.21.13", confirm=True)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert Reason.TEMP_REJECT_4XX in result.reasons
    assert result.retry_after == 300
    assert result.as_json()["retry_after"] == 300
    assert "4.3.2" in variant(result, "sender-external")["rcpt_text"]


def test_it_gets_through_greylisting_when_the_same_pair_is_retried() -> None:
    token = new_token()

    async def main() -> tuple[ProbeResult, ProbeResult]:
        hits = MemoryHitStore()
        sink = await start_smtp_sink(canary(), hits, SINK_HOST, 0)
        sink_port = sink.sockets[0].getsockname()[1]
        try:
            with run_trap("greylist", "127.0.20.14", sink=(SINK_HOST, sink_port)) as trap:
                results = []
                for _ in range(2):
                    results.append(
                        await probe_smtp(
                            Target.at(trap.host, trap.port),
                            ProbeContext(
                                canary=canary(sink_port),
                                hits=hits,
                                limits=LIMITS,
                                source="127.0.21.14",
                                confirm=True,
                            ),
                            token=token,
                        )
                    )
        finally:
            sink.close()
        return results[0], results[1]

    first, retry = asyncio.run(main())
    assert first.verdict is Verdict.INCONCLUSIVE
    assert Reason.TEMP_REJECT_4XX in first.reasons
    assert first.retry_after == 300
    assert "Greylisted" in variant(first, "sender-external")["rcpt_text"]
    assert retry.verdict is Verdict.CONFIRMED_OPEN
    assert retry.retry_after is None


def test_it_recognises_auth_required() -> None:
    result, _, _ = probe_trap("auth", "127.0.20.15", source="127.0.21.15", confirm=True)
    assert result.verdict is Verdict.AUTH_REQUIRED
    assert Reason.AUTH_REQUIRED_530 in result.reasons
    assert result.details["auth_mechanisms"] == ["PLAIN", "LOGIN"]
    assert "Authentication required" in variant(result, "sender-external")["rcpt_text"]


def test_it_uses_advertised_starttls_and_records_tls_facts() -> None:
    result, _, _ = probe_trap("starttls", "127.0.20.16", source="127.0.21.16")
    assert result.verdict is Verdict.CLOSED
    assert result.transport is Transport.STARTTLS
    assert Reason.STARTTLS_USED in result.reasons
    tls = result.details["tls"]
    assert tls["version"].startswith("TLS") and tls["cipher"]
    assert tls["cert_subject"] == "CN=mx.trap.test" and tls["cert_self_signed"] is True
    assert result.details["starttls_advertised"] is True
    assert "STARTTLS" in [line["text"] for line in result.transcript if line["direction"] == ">"]


def test_it_answers_a_starttls_demand_and_is_not_fooled_into_auth_required() -> None:
    result, _, _ = probe_trap(
        "starttls",
        "127.0.20.17",
        source="127.0.21.17",
        forward=True,
        confirm=True,
        trap_opts={"advertise": False, "after_tls": "open"},
    )
    assert result.verdict is Verdict.CONFIRMED_OPEN
    assert Reason.TLS_REQUIRED in result.reasons and Reason.STARTTLS_USED in result.reasons
    assert Reason.AUTH_REQUIRED_530 not in result.reasons
    assert result.transport is Transport.STARTTLS
    assert result.details["starttls_advertised"] is False


def test_it_keeps_a_failed_required_starttls_inconclusive() -> None:
    result, _, _ = probe_trap(
        "starttls", "127.0.20.18", source="127.0.21.18", trap_opts={"broken_tls": True}
    )
    assert result.verdict is Verdict.INCONCLUSIVE
    assert Reason.TLS_REQUIRED in result.reasons and Reason.STARTTLS_FAILED in result.reasons
    assert result.duration_ms < LIMITS.exchange_timeout * 1000


def test_it_speaks_implicit_tls_on_port_465() -> None:
    result, _, _ = probe_trap(
        "closed", "127.0.20.19", source="127.0.21.19", port=465, trap_opts={"tls": True}
    )
    assert result.port == 465
    assert result.transport is Transport.IMPLICIT_TLS
    assert result.verdict is Verdict.CLOSED
    assert result.details["tls"]["cert_subject"] == "CN=mx.trap.test"


def test_it_reports_a_failed_implicit_tls_handshake() -> None:
    result, _, _ = probe_trap("closed", "127.0.20.20", source="127.0.21.20", port=465)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert Reason.TLS_HANDSHAKE_FAILED in result.reasons
    assert result.transport_status is TransportStatus.PROTOCOL_ERROR
    assert result.duration_ms < LIMITS.exchange_timeout * 1000


def test_it_gives_up_on_a_silent_tarpit_in_time() -> None:
    result, _, _ = probe_trap("tarpit", "127.0.20.21", source="127.0.21.21")
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.transport_status is TransportStatus.IO_TIMEOUT
    assert Reason.TIMEOUT in result.reasons
    # One greeting wait, then one wait for an answer to EHLO.
    assert result.duration_ms < 2 * LIMITS.reply_timeout * 1000 + 500
    assert any("no greeting" in line["text"] for line in result.transcript)


def test_it_gives_up_on_a_dripping_tarpit_in_time() -> None:
    result, _, _ = probe_trap(
        "tarpit", "127.0.20.22", source="127.0.21.22", trap_opts={"drip": True}
    )
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.transport_status is TransportStatus.IO_TIMEOUT
    assert result.duration_ms < LIMITS.reply_timeout * 1000 + 500


def test_it_stops_reading_a_huge_banner() -> None:
    for x, single_line in ((23, False), (24, True)):
        result, _, _ = probe_trap(
            "bigbanner",
            f"127.0.20.{x}",
            source=f"127.0.21.{x}",
            trap_opts={"single_line": single_line},
        )
        assert result.verdict is Verdict.INCONCLUSIVE
        assert Reason.OVERSIZED_REPLY in result.reasons
        assert result.transport_status is TransportStatus.PROTOCOL_ERROR
        assert result.details["bytes_read"] <= LIMITS.host_bytes
        assert result.duration_ms < LIMITS.reply_timeout * 1000


def test_it_calls_binary_garbage_not_smtp() -> None:
    result, _, _ = probe_trap("garbage", "127.0.20.25", source="127.0.21.25")
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert Reason.NO_SMTP_GREETING in result.reasons and Reason.GARBAGE_REPLY in result.reasons
    assert result.transport_status is TransportStatus.PROTOCOL_ERROR
    assert result.duration_ms < LIMITS.reply_timeout * 1000


def test_it_calls_an_http_server_not_smtp() -> None:
    result, _, _ = probe_trap("http", "127.0.20.26", source="127.0.21.26")
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert Reason.NO_SMTP_GREETING in result.reasons
    assert any("HTTP/1.1 400" in line["text"] for line in result.transcript)
    assert result.duration_ms < 2 * LIMITS.reply_timeout * 1000 + 500
    result, _, _ = probe_trap(
        "http", "127.0.20.27", source="127.0.21.27", trap_opts={"speak_first": True}
    )
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert result.duration_ms < LIMITS.reply_timeout * 1000


def test_it_keeps_a_server_that_hangs_up_after_the_greeting_inconclusive() -> None:
    result, _, _ = probe_trap("greet-disconnect", "127.0.20.28", source="127.0.21.28")
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.transport_status is TransportStatus.CONNECTION_CLOSED
    assert Reason.CONNECTION_RESET in result.reasons
    assert result.details["banner"] == "flaky.trap.test ESMTP"


def test_it_reports_a_refused_connection() -> None:
    with socket.socket() as s:
        s.bind(("127.0.20.29", 0))
        port = s.getsockname()[1]

    async def main() -> ProbeResult:
        return await probe_smtp(
            Target.at("127.0.20.29", port),
            ProbeContext(
                canary=canary(), hits=MemoryHitStore(), limits=LIMITS, source="127.0.21.29"
            ),
        )

    result = asyncio.run(main())
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.transport_status is TransportStatus.CONNECTION_REFUSED
    assert Reason.CONNECT_FAILED in result.reasons


def test_it_uses_ipv6_literals() -> None:
    async def main() -> ProbeResult:
        with run_trap("closed", "::1") as trap:
            return await probe_smtp(
                Target.at("::1", trap.port),
                ProbeContext(canary=canary(), hits=MemoryHitStore(), limits=LIMITS),
            )

    result = asyncio.run(main())
    assert result.verdict is Verdict.CLOSED
    assert result.ip_version == 6
    assert variant(result, "sender-ip-literal")["mail_from"] == "<probe-[REDACTED]@[IPv6:::1]>"
    assert variant(result, "rcpt-source-route")["rcpt_to"].startswith("<@[IPv6:::1]:")


def test_its_json_carries_what_the_probe_command_prints() -> None:
    result, _, _ = probe_trap("closed", "127.0.20.30", source="127.0.21.30")
    out = result.as_json()
    assert out["protocol"] == "smtp" and out["verdict"] == "closed"
    assert out["evidence_level"] == "none" and "rcpt_5xx_all" in out["reasons"]
    assert out["software"] == {"family": "Postfix", "version": None, "source": "banner"}
    assert "retry_after" not in out
    json.dumps(out)  # JSON Lines: every value must serialise
    details = out["details"]
    for key in ("banner", "ehlo", "capabilities", "auth_mechanisms", "tls", "variants"):
        assert key in details
    for key in ("control_accepted", "data", "delivered"):
        assert key in details


def test_it_backs_off_on_a_421_greeting() -> None:
    result, _, _ = probe_trap(
        "closed",
        "127.0.20.31",
        source="127.0.21.31",
        trap_opts={
            "greeting": "421 4.7.0 mx.trap.test Too many connections, try again in 60 seconds"
        },
    )
    assert result.verdict is Verdict.INCONCLUSIVE
    assert Reason.SERVICE_UNAVAILABLE_421 in result.reasons
    assert result.retry_after == 60
    assert result.details["banner"].startswith("4.7.0 mx.trap.test Too many")


def test_it_keeps_a_rejected_greeting_inconclusive() -> None:
    result, trap, _ = probe_trap(
        "closed",
        "127.0.20.32",
        source="127.0.21.32",
        trap_opts={"greeting": "554 5.7.1 mx.trap.test Your address is listed"},
    )
    assert result.verdict is Verdict.INCONCLUSIVE
    assert Reason.GREETING_REJECTED in result.reasons
    assert result.retry_after is None
    assert trap.state.commands == []  # nothing said after a refusal to talk


def test_it_reads_exim_from_its_banner() -> None:
    banner = "mx.trap.test ESMTP Exim 4.96 Fri, 27 Nov 2026 17:00:00 +0000"
    result, _, _ = probe_trap(
        "closed", "127.0.20.33", source="127.0.21.33", trap_opts={"banner": banner}
    )
    assert result.software is not None
    assert (result.software.family, result.software.version) == ("Exim", "4.96")


def test_it_retries_a_demanded_starttls_after_a_failed_optional_one() -> None:
    result, trap, _ = probe_trap(
        "starttls", "127.0.20.34", source="127.0.21.34", trap_opts={"broken_tls": "handshake"}
    )
    assert result.verdict is Verdict.INCONCLUSIVE
    assert Reason.STARTTLS_FAILED in result.reasons and Reason.TLS_REQUIRED in result.reasons
    # Optional TLS failed, plain text met a STARTTLS demand, the demanded TLS failed too.
    assert trap.state.connections == 3
    assert result.duration_ms < LIMITS.exchange_timeout * 1000


def test_a_rcpt_left_unanswered_after_an_accepted_mail_is_not_an_acceptance() -> None:
    # A closed server under load: MAIL FROM gets 250, the RCPT reply never comes. That is
    # something in the way (inconclusive), never an accepted relay variant.
    async def main() -> ProbeResult:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"220 slow.example ESMTP\r\n")
            await writer.drain()
            while line := await reader.readline():
                command = line.decode(errors="replace").strip().upper()
                if command.startswith(("EHLO", "HELO")):
                    writer.write(b"250 slow.example\r\n")
                elif command.startswith(("MAIL", "RSET")):
                    writer.write(b"250 2.1.0 Ok\r\n")
                elif command.startswith("RCPT"):
                    await asyncio.sleep(60)  # the reply that never comes
                elif command.startswith("QUIT"):
                    writer.write(b"221 Bye\r\n")
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.22.90", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await probe_smtp(
                Target.at("127.0.22.90", port),
                ProbeContext(
                    canary=canary(), hits=MemoryHitStore(), limits=LIMITS, source="127.0.22.91"
                ),
            )
        finally:
            server.close()

    result = asyncio.run(main())
    assert result.verdict == Verdict.INCONCLUSIVE
    assert all(v["outcome"] != "accepted" for v in result.details["variants"])
