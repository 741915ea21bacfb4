"""Fake servers on loopback, shared by the test suite and the benchmarks.

`smtp_traps` plays mail servers (open relays, catch-alls, greylisting, tarpits, ...), and
`proxy_traps` plays proxies and not-proxies (open HTTP/SOCKS proxies, captive pages, grant-all
SOCKS servers, ...) and runs a loopback canary. Each behaves like a real server the probes meet,
so a probe's verdict can be checked against what the server really is. They listen on, and
forward to, 127.0.0.0/8 and ::1 only, and never resolve a name.
"""
