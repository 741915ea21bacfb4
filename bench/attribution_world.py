"""Attribution for the `workers` bench: N targets, each in its own /24 of 198.18.0.0/15 (the
benchmarking range), and an RDAP registry on loopback (HTTPS, the tests' authority) answering
for every address with the recorded ARIN answer re-addressed to that /24 and its registrant
renamed, so each target is one RDAP request and one owner. Reverse DNS goes to the tests'
loopback resolver (NXDOMAIN for all). Nothing leaves the machine.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from fakes import registry_tls as tls
from fakes.registries import FIXTURES, DnsResponder, RdapServer, write_bootstrap

SPACE = ipaddress.ip_network("198.18.0.0/15")
RECORDED = json.loads((FIXTURES / "arin_192.0.2.0.json").read_text(encoding="utf-8"))


def readdressed(address: str) -> dict[str, Any]:
    """The recorded answer for the /24 holding `address`, with a registrant of its own."""
    net = ipaddress.ip_network(f"{address}/24", strict=False)
    tag = str(net.network_address).replace(".", "-")
    answer = copy.deepcopy(RECORDED)
    answer["handle"] = f"NET-{tag}-1"
    answer["startAddress"] = str(net.network_address)
    answer["endAddress"] = str(net.broadcast_address)
    answer["cidr0_cidrs"] = [{"v4prefix": str(net.network_address), "length": 24}]
    for entity in answer["entities"]:
        if "registrant" in entity.get("roles", []):
            entity["handle"] = f"BENCH-{tag}"
    return answer


class Registries:
    def __init__(self, count: int) -> None:
        if count > SPACE.num_addresses // 256:
            raise ValueError(f"at most {SPACE.num_addresses // 256} targets, one per /24")
        self.count = count
        self.rdap = RdapServer("127.0.61.1", "/registry/")
        self.dns = DnsResponder("127.0.61.53")
        self.served = 0
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                address = self.path.rsplit("/", 1)[-1]
                try:
                    body = json.dumps(readdressed(address)).encode()
                    status = 200
                except ValueError:
                    body, status = b"{}", 404
                registry.served += 1
                self.send_response(status)
                self.send_header("Content-Type", "application/rdap+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.rdap.httpd.RequestHandlerClass = Handler
        self.bootstrap = write_bootstrap(v4=[([str(SPACE)], self.rdap.base_url)], v6=[])
        self.target_ids: list[int] = []

    def __enter__(self) -> Registries:
        from django.utils import timezone

        from campaign.models import Partner
        from scanning.models import Target

        # Owners in countries without a partner of their own go to the lead agency.
        if not Partner.objects.filter(is_lead=True).exists():
            Partner.objects.create(
                country="ZZ", country_name="Benchland", agency="Bench Lead", languages=["en"],
                is_lead=True, reply_to="triage@lead.example",
            )  # fmt: skip
        self.rdap.start()
        self.dns.start()
        now = timezone.now()
        base = int(SPACE.network_address)
        rows = Target.objects.bulk_create(
            Target(
                ip=str(ipaddress.ip_address(base + 256 * i + 1)),
                port=25,
                protocol="smtp",
                first_seen=now,
                last_seen=now,
            )
            for i in range(self.count)
        )
        self.target_ids = [t.pk for t in rows]
        return self

    def __exit__(self, *exc: object) -> None:
        self.rdap.stop()
        self.dns.stop()

    def env(self) -> dict[str, str]:
        """What a worker host needs to use these registries."""
        return {
            "RDAP_BOOTSTRAP": self.bootstrap,
            "RDAP_CA_BUNDLE": tls.trusted().bundle,
            "RDAP_TIMEOUT": "5",
            "ATTRIBUTION_DNS_SERVER": f"{self.dns.host}:{self.dns.port}",
            "ATTRIBUTION_DNS_TIMEOUT": "1",
        }

    def requests(self) -> int:
        return self.served

    def attribute(self, *, batch: int, timeout: float = 300) -> dict[str, Any]:
        """Queue `campaign.attribute_targets` tasks of `batch` targets each on `default` and
        wait for every target to be attributed (or to carry an error)."""
        from django.db.models import Q

        from bench.worker_work import through_broker
        from campaign.models import Attribution, ServerOwner
        from config.celery import app

        with through_broker():
            for i in range(0, len(self.target_ids), batch):
                chunk = self.target_ids[i : i + batch]
                app.send_task("campaign.attribute_targets", args=[chunk], queue="default")
        deadline = time.monotonic() + timeout
        done = Attribution.objects.filter(target_id__in=self.target_ids).filter(
            Q(attributed_at__isnull=False) | ~Q(error="")
        )
        finished = False
        while time.monotonic() < deadline:
            if done.count() >= len(self.target_ids):
                finished = True
                break
            time.sleep(0.2)
        return {
            "finished": finished,
            "owners": ServerOwner.objects.count(),
            "errors": Attribution.objects.exclude(error="").count(),
        }
