"""What kind of open server a finding shows: the three kinds the campaign writes about."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from scanning.models import Protocol

RELAY = "relay"
HTTP_PROXY = "http-proxy"
SOCKS_PROXY = "socks-proxy"

KIND_LABELS = {
    RELAY: _("Open relay"),
    HTTP_PROXY: _("HTTP proxy"),
    SOCKS_PROXY: _("SOCKS proxy"),
}
KIND_PROTOCOLS = {
    RELAY: (Protocol.SMTP,),
    HTTP_PROXY: (Protocol.HTTP,),
    SOCKS_PROXY: (Protocol.SOCKS4, Protocol.SOCKS5),
}
PROTOCOL_KIND = {
    protocol: kind for kind, protocols in KIND_PROTOCOLS.items() for protocol in protocols
}


def kind_of(protocol: str) -> str | None:
    return PROTOCOL_KIND.get(protocol)
