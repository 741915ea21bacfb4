"""Loopback stand-ins for the five registries' RDAP services and a DNS resolver.

Each registry gets an HTTPS server (certificate from the throwaway authority in
fakes/registry_tls.py) on its own 127.0.60.x address that answers from the recorded files in
tests/fixtures/rdap/; a silent server accepts connections and never answers (timeouts); a UDP
responder answers PTR queries from a table. Nothing here leaves the machine. The tests and the
bench share it.
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from fakes import registry_tls as tls
from fakes.loopback_http import LoopbackHTTPServer

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "rdap"

# (status, headers, fixture file or None)
Route = tuple[int, dict[str, str], str | None]


class RdapServer:
    def __init__(
        self,
        host: str,
        prefix: str,
        *,
        authority: tls.Authority | None = None,
        certificate_for: str | None = None,
        plain_http: bool = False,
        delay: float = 0,
    ) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.prefix = prefix
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.hits[self.path] += 1
                status, headers, name = server.routes.get(self.path, (404, {}, "arin_404.json"))
                body = (FIXTURES / name).read_bytes() if name else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/rdap+json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if not delay:
                    self.wfile.write(body)
                    return
                try:
                    for i in range(len(body)):  # a slow drip: one byte per `delay` seconds
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(delay)
                except OSError:  # the client gave up
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = LoopbackHTTPServer((host, 0), Handler)  # no PTR lookup of its address
        self.scheme = "http" if plain_http else "https"
        if not plain_http:
            context = (authority or tls.trusted()).server_context(certificate_for or host)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.prefix}"

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def route(self, path: str, status: int, name: str | None, **headers: str) -> None:
        self.routes[f"{self.prefix}{path}"] = (status, headers, name)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class SilentServer:
    """Accepts connections and never says a word."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.host, self.port = host, self.sock.getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}/"

    def stop(self) -> None:
        self.sock.close()


class DnsResponder:
    """Answers PTR queries from `names`; NXDOMAIN for everything else."""

    def __init__(self, host: str) -> None:
        self.names: dict[str, str] = {}
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                wire, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text()
            self.queries.append(name)
            target = self.names.get(name)
            if target and question.rdtype == dns.rdatatype.PTR:
                response.answer.append(dns.rrset.from_text(name, 300, "IN", "PTR", target))
            else:
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.flags |= dns.flags.RA
            self.sock.sendto(response.to_wire(), peer)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.sock.close()


def write_bootstrap(v4: list[tuple[list[str], str]], v6: list[tuple[list[str], str]]) -> str:
    """IANA-shaped ipv4.json and ipv6.json in a fresh folder; returns the folder."""
    folder = Path(tempfile.mkdtemp(prefix="rdap-bootstrap-"))
    for name, services in (("ipv4.json", v4), ("ipv6.json", v6)):
        doc = {
            "description": f"RDAP bootstrap file for {name[:4]} address allocations (test)",
            "publication": "2025-01-07T20:00:02Z",
            "services": [[prefixes, [url]] for prefixes, url in services],
            "version": "1.0",
        }
        (folder / name).write_text(json.dumps(doc), encoding="utf-8")
    return str(folder)
