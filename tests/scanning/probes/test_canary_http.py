"""The HTTP/TLS canary and the self-check port, spoken to directly over loopback."""

from __future__ import annotations

import asyncio
import ssl

from cryptography import x509
from cryptography.x509.oid import NameOID

from scanning.probes.canary import CanaryConfig, MemoryHitStore, canary_answer, new_token
from scanning.probes.canary_http import (
    start_http_canary,
    start_selfcheck_port,
    token_from_target,
)

HOST = "127.0.30.2"
CLIENT = "127.0.32.2"
CANARY = CanaryConfig(
    domain="canary.sys-test.example",
    http_addr=(HOST, 0),
    tls_addr=(HOST, 0),
    smtp_addr=(HOST, 0),
    secret=b"canary-test-secret",
)


async def _exchange(port: int, request: bytes, *, tls: bool = False) -> tuple[bytes, bytes | None]:
    ctx = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(
        HOST,
        port,
        local_addr=(CLIENT, 0),
        ssl=ctx,
        server_hostname=CANARY.domain if tls else None,
    )
    cert = writer.get_extra_info("ssl_object").getpeercert(binary_form=True) if tls else None
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return data, cert


def _serve(request: bytes, *, tls: bool = False) -> tuple[bytes, MemoryHitStore, bytes | None]:
    async def go() -> tuple[bytes, MemoryHitStore, bytes | None]:
        hits = MemoryHitStore()
        server = await start_http_canary(CANARY, hits, HOST, 0, tls=tls)
        try:
            data, cert = await _exchange(server.sockets[0].getsockname()[1], request, tls=tls)
        finally:
            server.close()
        return data, hits, cert

    return asyncio.run(go())


def test_it_answers_and_logs_an_origin_form_request() -> None:
    token = new_token()
    data, hits, _ = _serve(f"GET /c/{token} HTTP/1.1\r\nHost: x\r\nVia: 1.1 p\r\n\r\n".encode())
    assert data.startswith(b"HTTP/1.1 200 ")
    assert canary_answer(CANARY.secret, token).encode() in data
    (hit,) = hits.recorded(token)
    assert (hit.kind, hit.peer_ip) == ("http", CLIENT)
    assert hit.headers["Via"] == "1.1 p"
    assert hit.detail == f"GET /c/{token} HTTP/1.1"


def test_it_accepts_absolute_form_with_any_host() -> None:
    token = f"{new_token()}-get"
    request = f"GET http://203.0.113.9:8080/c/{token} HTTP/1.1\r\nHost: elsewhere\r\n\r\n"
    data, hits, _ = _serve(request.encode())
    assert canary_answer(CANARY.secret, token).encode() in data
    assert len(hits.recorded(token)) == 1


def test_it_gives_404_to_everything_else() -> None:
    token = new_token()
    for request in (
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        f"POST /c/{token} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        f"GET /c/{token}/../x HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        b"CONNECT 127.0.30.2:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        data, hits, _ = _serve(request)
        assert data.startswith(b"HTTP/1.1 404 "), request
        assert hits.recorded(token) == []


def test_it_drops_oversized_headers() -> None:
    token = new_token()
    data, hits, _ = _serve(f"GET /c/{token} HTTP/1.1\r\nX: {'a' * 9000}\r\n\r\n".encode())
    assert data == b""
    assert hits.recorded(token) == []


def test_it_serves_tls_with_a_self_signed_certificate() -> None:
    token = new_token()
    data, hits, cert = _serve(f"GET /c/{token} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), tls=True)
    assert canary_answer(CANARY.secret, token).encode() in data
    assert hits.recorded(token)[0].kind == "tls"
    assert cert is not None
    parsed = x509.load_der_x509_certificate(cert)
    cn = parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == CANARY.domain


def test_selfcheck_port_is_never_a_proxy() -> None:
    async def go() -> list[bytes]:
        server = await start_selfcheck_port(HOST, 0)
        port = server.sockets[0].getsockname()[1]
        try:
            replies = []
            for request in (
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET http://a.invalid/ HTTP/1.1\r\nHost: a.invalid\r\n\r\n",
                b"CONNECT 127.0.30.2:443 HTTP/1.1\r\n\r\n",
            ):
                replies.append((await _exchange(port, request))[0])
            return replies
        finally:
            server.close()

    replies = asyncio.run(go())
    assert len(set(replies)) == 1
    assert replies[0].startswith(b"HTTP/1.1 404 ")


def test_token_from_target() -> None:
    assert token_from_target("/c/abc123") == "abc123"
    assert token_from_target("http://h:1/c/abc-get") == "abc-get"
    assert token_from_target("http://h/c/abc?x=1") == "abc"
    assert token_from_target("/c/") is None
    assert token_from_target("/x/abc") is None
    assert token_from_target("http://h/") is None
