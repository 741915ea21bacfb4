"""The HTTP canary (plain and TLS) that proxy probes aim at, and the self-check port.

`GET /c/<token>` is logged as a hit (who connected, what headers arrived) and answered with
canary_answer(secret, token), which never travels in the request: only a proxy that really
reached us can hand it back. Everything else gets a 404.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import re
import ssl
import tempfile
from collections.abc import Awaitable, Callable

from scanning.probes.canary import CanaryConfig, CanaryHit, HitStore, canary_answer

HEAD_MAX_BYTES = 8 * 1024
MAX_HEADERS = 100
READ_TIMEOUT = 10.0
TLS_HANDSHAKE_TIMEOUT = 10.0

# Tokens are new_token() hex, optionally with a "-<test>" suffix the proxy probe adds per test.
# At most 64 characters: what the deployed hit table keeps (scanning.models.CanaryHit.token), so
# the canary never answers for a token it could not log as asked.
_CANARY_PATH = re.compile(r"^/c/([A-Za-z0-9][A-Za-z0-9_-]{0,63})(?:\?.*)?$")
_ABSOLUTE_FORM = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*(.*)$")

NOT_FOUND_BODY = b"404 not found\n"
SELFCHECK_BODY = (
    b"<html><head><title>404 Not Found</title></head>"
    b"<body><h1>Not Found</h1><p>secure-your-server self-check: not a proxy.</p></body></html>\n"
)


class _BadRequest(Exception):
    pass


async def _read_head(reader: asyncio.StreamReader, timeout: float) -> bytes:
    buf = bytearray()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            end = buf.find(b"\n\n")
        if end >= 0:
            return bytes(buf[:end])
        if len(buf) >= HEAD_MAX_BYTES:
            raise _BadRequest("head too large")
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise _BadRequest("timeout")
        try:
            chunk = await asyncio.wait_for(reader.read(HEAD_MAX_BYTES - len(buf)), remaining)
        except TimeoutError as exc:
            raise _BadRequest("timeout") from exc
        if not chunk:
            raise _BadRequest("closed")
        buf += chunk


def parse_request_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """(method, request target, headers) of a request head; duplicate headers are joined."""
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _BadRequest("bad request line")
    headers: dict[str, str] = {}
    for line in lines[1 : MAX_HEADERS + 1]:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            continue
        name, value = name.strip(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return parts[0], parts[1], headers


def token_from_target(target: str) -> str | None:
    absolute = _ABSOLUTE_FORM.match(target)
    path = (absolute.group(1) or "/") if absolute else target
    match = _CANARY_PATH.match(path)
    return match.group(1) if match else None


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _peer_ip(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if peer else ""


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 2.0)
    except (OSError, TimeoutError, ssl.SSLError):
        pass


_Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _canary_handler(canary: CanaryConfig, hits: HitStore, kind: str) -> _Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await _read_head(reader, READ_TIMEOUT)
            method, target, headers = parse_request_head(head)
            token = token_from_target(target) if method == "GET" else None
            if token is None:
                writer.write(_response("404 Not Found", NOT_FOUND_BODY))
            else:
                request_line = head.split(b"\n", 1)[0].decode("latin-1").strip()
                await hits.record(
                    CanaryHit(
                        token=token,
                        kind=kind,
                        peer_ip=_peer_ip(writer),
                        headers=headers,
                        detail=request_line[:512],
                    )
                )
                answer = canary_answer(canary.secret, token)
                body = (
                    "secure-your-server canary: this request came through a proxy that was "
                    f"tested by the Secure Your Server scanner.\nanswer={answer}\n"
                ).encode()
                writer.write(_response("200 OK", body))
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
        except (_BadRequest, OSError, TimeoutError, ssl.SSLError, UnicodeError):
            pass
        finally:
            await _close(writer)

    return handle


def self_signed_context(cn: str) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate; probes verify the secret, not it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(cn))
    except ValueError:
        alt = x509.DNSName(cn)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .sign(key, hashes.SHA256())
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain only reads files; the directory lives just long enough to load them.
    with tempfile.TemporaryDirectory() as tmp:
        cert_path = os.path.join(tmp, "cert.pem")
        key_path = os.path.join(tmp, "key.pem")
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


async def start_http_canary(
    canary: CanaryConfig, hits: HitStore, host: str, port: int, *, tls: bool = False
) -> asyncio.Server:
    handler = _canary_handler(canary, hits, "tls" if tls else "http")
    if not tls:
        return await asyncio.start_server(handler, host, port)
    return await asyncio.start_server(
        handler,
        host,
        port,
        ssl=self_signed_context(canary.domain),
        ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
    )


async def _selfcheck_handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await _read_head(reader, READ_TIMEOUT)
        writer.write(_response("404 Not Found", SELFCHECK_BODY, "text/html; charset=utf-8"))
        await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
    except (_BadRequest, OSError, TimeoutError):
        pass
    finally:
        await _close(writer)


async def start_selfcheck_port(host: str, port: int) -> asyncio.Server:
    """A port known not to be a proxy: every request, CONNECT included, gets the same 404."""
    return await asyncio.start_server(_selfcheck_handle, host, port)
