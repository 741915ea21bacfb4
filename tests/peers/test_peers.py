"""The real peers do what their configurations claim, checked by real protocol exchanges.

Addresses: 127.0.0.40 is the canary side (SMTP sink, HTTP origin), 127.0.0.50 the "other" client,
127.0.0.41-79 the peers (one per test, so a slow shutdown never collides with the next start).
"""

from __future__ import annotations

import base64
import http.client
import smtplib
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fakes.peers import AUTH_PASSWORD, AUTH_USER, Peer, require_peer, start_peer
from fakes.peers import common as servers

pytestmark = pytest.mark.peers

CANARY_IP = "127.0.0.40"
CANARY_DOMAIN = "canary.test"
OTHER_CLIENT = "127.0.0.50"


class SmtpSink(socketserver.ThreadingTCPServer):
    """A tiny SMTP server that accepts everything and keeps each message."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _SinkHandler)
        self.messages: list[dict[str, object]] = []
        self.cond = threading.Condition()

    @property
    def address(self) -> tuple[str, int]:
        return CANARY_IP, int(self.server_address[1])

    def wait_for(self, needle: str, timeout: float = 20) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for msg in self.messages:
                    if needle in str(msg["data"]):
                        return msg
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"sink never received {needle!r}; got {self.messages!r}")
                self.cond.wait(remaining)


class _SinkHandler(socketserver.StreamRequestHandler):
    server: SmtpSink

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 sink.canary.test ESMTP test sink")
        mail_from, rcpts = "", list[str]()
        while line := self.rfile.readline(4096):
            cmd = line.decode("latin-1").rstrip("\r\n")
            verb = cmd[:4].upper()
            if verb == "EHLO":
                self.reply("250-sink.canary.test")
                self.reply("250 8BITMIME")
            elif verb == "HELO":
                self.reply("250 sink.canary.test")
            elif verb == "MAIL":
                mail_from, rcpts = cmd[10:], []
                self.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                rcpts.append(cmd[8:])
                self.reply("250 2.1.5 Ok")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                data = []
                while (body := self.rfile.readline(65536)) not in (b".\r\n", b""):
                    data.append(body.decode("latin-1"))
                with self.server.cond:
                    self.server.messages.append(
                        {
                            "peer": self.client_address[0],
                            "from": mail_from,
                            "rcpts": rcpts,
                            "data": "".join(data),
                        }
                    )
                    self.server.cond.notify_all()
                self.reply("250 2.0.0 Ok: queued")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            elif verb in ("RSET", "NOOP"):
                self.reply("250 2.0.0 Ok")
            else:
                self.reply("502 5.5.2 Error: command not recognized")


class _OriginHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = f"origin says {self.path} to {self.client_address[0]}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink(CANARY_IP)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class _Origin(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks getfqdn() for its address: a PTR query to the machine's
        # resolver, which leaves the machine. Loopback tests name no one.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "origin.canary.test", self.server_address[1]


@pytest.fixture(scope="module")
def origin() -> Iterator[tuple[str, int]]:
    server = _Origin((CANARY_IP, 0), _OriginHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield CANARY_IP, int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _smtp(peer: Peer, source: str = OTHER_CLIENT) -> smtplib.SMTP:
    client = smtplib.SMTP(
        peer.host, peer.port, local_hostname="client.test", timeout=10, source_address=(source, 0)
    )
    client.ehlo()
    return client


def _relay_attempt(peer: Peer, rcpt: str, *, login: bool = False) -> tuple[int, bytes]:
    with _smtp(peer) as client:
        if login:
            client.login(AUTH_USER, AUTH_PASSWORD)
        code, text = client.mail(f"probe@{CANARY_DOMAIN}")
        assert code == 250, (code, text)
        return client.rcpt(rcpt)


def _send(peer: Peer, token: str, *, rcpt: str | None = None, login: bool = False) -> None:
    with _smtp(peer) as client:
        if login:
            client.login(AUTH_USER, AUTH_PASSWORD)
        message = f"Subject: relay test {token}\r\n\r\nrelay test token {token}\r\n"
        refused = client.sendmail(
            f"probe-{token}@{CANARY_DOMAIN}", [rcpt or f"rcpt-{token}@{CANARY_DOMAIN}"], message
        )
        assert refused == {}


def _assert_delivered(sink: SmtpSink, peer: Peer, token: str) -> None:
    try:
        msg = sink.wait_for(token)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{peer.log()}") from None
    assert msg["peer"] == peer.host  # the MTA delivered from its own address, not 127.0.0.1


# --- Postfix -------------------------------------------------------------------------------


def test_postfix_open_relays_to_the_canary_and_discards_the_rest(sink: SmtpSink) -> None:
    require_peer("postfix")
    with start_peer(
        "postfix",
        "open",
        listen="127.0.0.41",
        canary_smtp=sink.address,
        canary_domain=CANARY_DOMAIN,
    ) as peer:
        _send(peer, "pfopen1")
        _assert_delivered(sink, peer, "pfopen1")
        # Any other domain is accepted (an open relay) but discarded: nothing leaves.
        _send(peer, "pfopen2", rcpt="someone@elsewhere.test")
        discarded = "to=<someone@elsewhere.test>, relay=none, delay="
        deadline = time.monotonic() + 10
        while discarded not in peer.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "status=sent (peer under test delivers only to the canary)" in peer.log(), peer.log()
        assert not any("pfopen2" in str(m["data"]) for m in sink.messages)


def test_postfix_closed_denies_relay(sink: SmtpSink) -> None:
    require_peer("postfix")
    with start_peer("postfix", "closed", listen="127.0.0.42", canary_smtp=sink.address) as peer:
        code, text = _relay_attempt(peer, f"rcpt@{CANARY_DOMAIN}")
        assert code == 554 and b"Relay access denied" in text, (code, text)


def test_postfix_auth_relays_only_after_auth(sink: SmtpSink) -> None:
    require_peer("postfix")
    with start_peer("postfix", "auth", listen="127.0.0.43", canary_smtp=sink.address) as peer:
        with _smtp(peer) as client:
            assert "PLAIN" in client.esmtp_features.get("auth", ""), client.esmtp_features
        code, text = _relay_attempt(peer, f"rcpt@{CANARY_DOMAIN}")
        assert code == 554 and b"Relay access denied" in text, (code, text)
        with _smtp(peer) as client, pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(AUTH_USER, "wrong")
        _send(peer, "pfauth1", login=True)
        _assert_delivered(sink, peer, "pfauth1")


def test_postfix_reconfigure_closes_a_running_relay(sink: SmtpSink) -> None:
    require_peer("postfix")
    with start_peer("postfix", "open", listen="127.0.0.44", canary_smtp=sink.address) as peer:
        pid = peer.pid
        assert _relay_attempt(peer, f"rcpt@{CANARY_DOMAIN}")[0] == 250
        peer.reconfigure("closed")
        assert peer.pid == pid  # postfix reload: same master
        assert _relay_attempt(peer, f"rcpt@{CANARY_DOMAIN}")[0] == 554


# --- Exim ----------------------------------------------------------------------------------


def test_exim_open_relays_to_the_canary(sink: SmtpSink) -> None:
    require_peer("exim")
    with start_peer("exim", "open", listen="127.0.0.45", canary_smtp=sink.address) as peer:
        with smtplib.SMTP(local_hostname="client.test", timeout=10) as client:
            code, banner = client.connect(peer.host, peer.port)
            assert code == 220 and b"ESMTP Exim 4." in banner, banner
        _send(peer, "exopen1")
        _assert_delivered(sink, peer, "exopen1")
        _send(peer, "exopen2", rcpt="someone@elsewhere.test")  # accepted, blackholed
        time.sleep(0.5)
        assert not any("exopen2" in str(m["data"]) for m in sink.messages)


def test_exim_closed_denies_relay(sink: SmtpSink) -> None:
    require_peer("exim")
    with start_peer("exim", "closed", listen="127.0.0.46", canary_smtp=sink.address) as peer:
        code, text = _relay_attempt(peer, f"rcpt@{CANARY_DOMAIN}")
        assert code == 550 and b"relay not permitted" in text, (code, text)


def test_exim_auth_answers_530_and_relays_after_auth(sink: SmtpSink) -> None:
    require_peer("exim")
    with start_peer("exim", "auth", listen="127.0.0.47", canary_smtp=sink.address) as peer:
        with _smtp(peer) as client:
            assert "PLAIN" in client.esmtp_features.get("auth", ""), client.esmtp_features
        code, text = _relay_attempt(peer, f"rcpt@{CANARY_DOMAIN}")
        assert code == 530 and b"Authentication required" in text, (code, text)
        _send(peer, "exauth1", login=True)
        _assert_delivered(sink, peer, "exauth1")


def test_exim_reconfigure_closes_a_running_relay(sink: SmtpSink) -> None:
    require_peer("exim")
    with start_peer("exim", "open", listen="127.0.0.48", canary_smtp=sink.address) as peer:
        assert _relay_attempt(peer, f"rcpt@{CANARY_DOMAIN}")[0] == 250
        peer.reconfigure("closed")
        assert _relay_attempt(peer, f"rcpt@{CANARY_DOMAIN}")[0] == 550


# --- HTTP proxies --------------------------------------------------------------------------


def _proxy_get(
    peer: Peer, url: str, *, source: str = OTHER_CLIENT, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(peer.host, peer.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", url, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _proxy_connect(peer: Peer, target: tuple[str, int], *, source: str = OTHER_CLIENT) -> bytes:
    """CONNECT through the proxy, then GET / through the tunnel; returns the origin's answer."""
    conn = http.client.HTTPConnection(peer.host, peer.port, timeout=10, source_address=(source, 0))
    try:
        conn.set_tunnel(*target)
        conn.request("GET", "/through-tunnel")
        return conn.getresponse().read()
    finally:
        conn.close()


def test_squid_open_fetches_by_address_and_by_hosts_file_name(origin: tuple[str, int]) -> None:
    require_peer("squid")
    with start_peer("squid", "open", listen="127.0.0.51", canary_ip=CANARY_IP) as peer:
        status, headers, body = _proxy_get(peer, f"http://{origin[0]}:{origin[1]}/c/tok1")
        assert status == 200 and body == b"origin says /c/tok1 to 127.0.0.51", (status, body)
        assert "squid" in headers.get("Via", ""), headers
        status, _, body = _proxy_get(peer, f"http://{CANARY_DOMAIN}:{origin[1]}/c/tok2")
        assert status == 200 and b"/c/tok2" in body
        assert _proxy_connect(peer, origin).startswith(b"origin says /through-tunnel")
        status, _, body = _proxy_get(peer, "http://nx-host.invalid/")
        assert status in (503, 403), (status, body)  # its own error page: no resolver to ask


def test_squid_closed_refuses_other_clients(origin: tuple[str, int]) -> None:
    require_peer("squid")
    with start_peer("squid", "closed", listen="127.0.0.52", canary_ip=CANARY_IP) as peer:
        status, _, _ = _proxy_get(peer, f"http://{origin[0]}:{origin[1]}/c/tok")
        assert status == 403
        status, _, _ = _proxy_get(peer, f"http://{origin[0]}:{origin[1]}/c/tok", source=peer.host)
        assert status == 200  # still a proxy for its own address


def test_squid_auth_answers_407_with_proxy_authenticate(origin: tuple[str, int]) -> None:
    require_peer("squid")
    with start_peer("squid", "auth", listen="127.0.0.53", canary_ip=CANARY_IP) as peer:
        url = f"http://{origin[0]}:{origin[1]}/c/tok"
        status, headers, _ = _proxy_get(peer, url)
        assert status == 407 and headers.get("Proxy-Authenticate", "").startswith("Basic"), headers
        creds = base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
        status, _, body = _proxy_get(peer, url, headers={"Proxy-Authorization": f"Basic {creds}"})
        assert status == 200 and b"/c/tok" in body


def test_squid_reconfigure_closes_a_running_proxy(origin: tuple[str, int]) -> None:
    require_peer("squid")
    with start_peer("squid", "open", listen="127.0.0.54", canary_ip=CANARY_IP) as peer:
        url = f"http://{origin[0]}:{origin[1]}/c/tok"
        pid = peer.pid
        assert _proxy_get(peer, url)[0] == 200
        peer.reconfigure("closed")
        assert peer.pid == pid  # squid -k reconfigure: same process
        assert _proxy_get(peer, url)[0] == 403


def test_tinyproxy_open_fetches_and_connects(origin: tuple[str, int]) -> None:
    require_peer("tinyproxy")
    with start_peer("tinyproxy", "open", listen="127.0.0.55", canary_ip=CANARY_IP) as peer:
        status, headers, body = _proxy_get(peer, f"http://{origin[0]}:{origin[1]}/c/tok1")
        assert status == 200 and body == b"origin says /c/tok1 to 127.0.0.55", (status, body)
        assert "tinyproxy" in headers.get("Via", ""), headers
        status, _, body = _proxy_get(peer, f"http://{CANARY_DOMAIN}:{origin[1]}/c/tok2")
        assert status == 200 and b"/c/tok2" in body
        assert _proxy_connect(peer, origin).startswith(b"origin says /through-tunnel")
        status, _, _ = _proxy_get(peer, "http://nx-host.invalid/")
        assert status == 403  # filtered before any lookup


def test_tinyproxy_closed_refuses_and_reconfigures(origin: tuple[str, int]) -> None:
    require_peer("tinyproxy")
    with start_peer("tinyproxy", "open", listen="127.0.0.56", canary_ip=CANARY_IP) as peer:
        url = f"http://{origin[0]}:{origin[1]}/c/tok"
        assert _proxy_get(peer, url)[0] == 200
        peer.reconfigure("closed")
        assert _proxy_get(peer, url)[0] == 403
        assert _proxy_get(peer, url, source=peer.host)[0] == 200


# --- SOCKS proxies -------------------------------------------------------------------------


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return data


def _socks5_methods(
    peer: Peer, methods: bytes, *, source: str = OTHER_CLIENT
) -> tuple[socket.socket, int]:
    sock = socket.create_connection(peer.address, timeout=10, source_address=(source, 0))
    sock.sendall(b"\x05" + bytes([len(methods)]) + methods)
    version, method = _recv_exact(sock, 2)
    assert version == 5
    return sock, method


def _socks5_connect(sock: socket.socket, host: str, port: int) -> int:
    try:
        addr = b"\x01" + socket.inet_aton(host)
    except OSError:
        addr = b"\x03" + bytes([len(host)]) + host.encode()
    sock.sendall(b"\x05\x01\x00" + addr + struct.pack(">H", port))
    head = _recv_exact(sock, 4)
    tail = {1: 4, 4: 16}.get(head[3]) or _recv_exact(sock, 1)[0]
    _recv_exact(sock, tail + 2)
    return head[1]


def _get_through(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {CANARY_DOMAIN}\r\n\r\n".encode())
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def _socks5_fetch(
    peer: Peer, host: str, port: int, path: str, *, creds: tuple[str, str] | None = None
) -> bytes:
    sock, method = _socks5_methods(peer, b"\x02" if creds else b"\x00")
    with sock:
        if creds:
            assert method == 2
            user, password = (c.encode() for c in creds)
            sock.sendall(b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
            assert _recv_exact(sock, 2) == b"\x01\x00"
        else:
            assert method == 0
        reply = _socks5_connect(sock, host, port)
        assert reply == 0, reply
        return _get_through(sock, path)


def _socks4_fetch(peer: Peer, host: str, port: int, path: str) -> bytes:
    with socket.create_connection(
        peer.address, timeout=10, source_address=(OTHER_CLIENT, 0)
    ) as sock:
        sock.sendall(b"\x04\x01" + struct.pack(">H", port) + socket.inet_aton(host) + b"probe\x00")
        reply = _recv_exact(sock, 8)
        assert reply[1] == 0x5A, reply
        return _get_through(sock, path)


def test_dante_open_connects_by_address_and_name(origin: tuple[str, int]) -> None:
    require_peer("dante")
    with start_peer("dante", "open", listen="127.0.0.61", canary_ip=CANARY_IP) as peer:
        assert b"origin says /s5 to 127.0.0.61" in _socks5_fetch(peer, *origin, "/s5")
        assert b"/s5name" in _socks5_fetch(peer, CANARY_DOMAIN, origin[1], "/s5name")
        assert b"/s4" in _socks4_fetch(peer, *origin, "/s4")


def test_dante_auth_requires_username_method(origin: tuple[str, int]) -> None:
    require_peer("dante")
    with start_peer("dante", "auth", listen="127.0.0.62", canary_ip=CANARY_IP) as peer:
        sock, method = _socks5_methods(peer, b"\x00\x02")
        sock.close()
        assert method == 0x02
        sock, method = _socks5_methods(peer, b"\x00")
        sock.close()
        assert method == 0xFF


def test_dante_closed_refuses_other_clients_and_reconfigures(origin: tuple[str, int]) -> None:
    require_peer("dante")
    with start_peer("dante", "open", listen="127.0.0.63", canary_ip=CANARY_IP) as peer:
        assert b"/before" in _socks5_fetch(peer, *origin, "/before")
        peer.reconfigure("closed")
        with pytest.raises((ConnectionError, OSError, AssertionError)):
            _socks5_fetch(peer, *origin, "/after")
        peer.reconfigure("auth")
        sock, method = _socks5_methods(peer, b"\x00")
        sock.close()
        assert method == 0xFF


def test_microsocks_open_connects(origin: tuple[str, int]) -> None:
    require_peer("microsocks")
    with start_peer("microsocks", "open", listen="127.0.0.64", canary_ip=CANARY_IP) as peer:
        assert b"origin says /ms to 127.0.0.64" in _socks5_fetch(peer, *origin, "/ms")
        assert b"/msname" in _socks5_fetch(peer, CANARY_DOMAIN, origin[1], "/msname")


def test_microsocks_auth_requires_credentials_and_reconfigures(origin: tuple[str, int]) -> None:
    require_peer("microsocks")
    with start_peer("microsocks", "open", listen="127.0.0.65", canary_ip=CANARY_IP) as peer:
        assert b"/open" in _socks5_fetch(peer, *origin, "/open")
        peer.reconfigure("auth")
        sock, method = _socks5_methods(peer, b"\x00")
        sock.close()
        assert method == 0xFF
        assert b"/authed" in _socks5_fetch(
            peer, *origin, "/authed", creds=(AUTH_USER, AUTH_PASSWORD)
        )


# --- availability --------------------------------------------------------------------------


def test_a_missing_server_is_a_skip_reason_locally_and_a_failure_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setattr(servers, "EXIM_ROOT", servers.Path(str(tmp_path)) / "no-exim")
    monkeypatch.delenv("CI", raising=False)
    reason = servers.peer_available("exim")
    assert reason is not None and "exim4 not found" in reason and "install-peers.sh" in reason
    monkeypatch.setenv("CI", "true")
    with pytest.raises(servers.PeerUnavailable, match="exim4 not found"):
        servers.peer_available("exim")
    with pytest.raises(servers.PeerUnavailable):
        require_peer("exim")  # never a skip in CI


@pytest.mark.parametrize("name", sorted(servers.CONFIGS))
def test_stop_leaves_no_process_behind(name: str) -> None:
    require_peer(name)
    # An address of its own per server: Postfix and Exim both want port 25, and a socket the
    # previous server's kernel state still holds must not fail the next one.
    listen = f"127.0.0.{80 + sorted(servers.CONFIGS).index(name)}"
    with start_peer(name, "open", listen=listen, canary_ip=CANARY_IP) as peer:
        assert peer.pid is not None
        session = [peer.pid, *servers._session_pids(peer.pid)]
        if name in ("postfix", "exim", "dante"):
            with socket.create_connection(peer.address, timeout=5):
                pass  # makes the server fork its helpers, which must go too
            time.sleep(0.2)
            session = [peer.pid, *servers._session_pids(peer.pid)]
    assert peer.pid is None
    assert [pid for pid in session if servers._alive(pid)] == []
