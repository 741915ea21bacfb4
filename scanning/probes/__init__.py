"""Evidence-graded probes for open SMTP relays and open proxies.

Plain asyncio: sockets in, dataclasses out. Nothing here imports Django (docs/architecture.md).
"""
