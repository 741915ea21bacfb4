"""Open proxy probes (HTTP GET/CONNECT, SOCKS4/4a, SOCKS5) judged by our own canary.

A handshake proves nothing: the verdict is `confirmed-open` only when the canary logged the
probe's token and the proxy handed back HMAC(secret, token), which only the canary knows. The
only destinations ever asked for are the canary's configured addresses (docs/probes.md).

Each probe is `probe(target, context)`. The work is split by job: scanning.probes.proxy_http and
scanning.probes.proxy_socks speak the protocols, scanning.probes.proxy_wire reads and writes
within the bounds, scanning.probes.proxy_probe keeps a probe's tests and asks the canary, and
scanning.probes.proxy_judgement turns the tests into a verdict.
"""

from __future__ import annotations

from scanning.probes.proxy_http import probe_http_proxy, selfcheck
from scanning.probes.proxy_judgement import anonymity
from scanning.probes.proxy_socks import probe_socks4, probe_socks5

__all__ = ["anonymity", "probe_http_proxy", "probe_socks4", "probe_socks5", "selfcheck"]
