"""An http.server for tests that names no one: HTTPServer.server_bind() asks getfqdn() for its
own address, a PTR query that leaves the machine for any 127.0.x.y not in /etc/hosts."""

from __future__ import annotations

import socketserver
from http.server import ThreadingHTTPServer


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
