"""The RDAP client as an attacker on the path, or a hostile registry mirror, would test it.

Recorded answers are served over https from loopback with certificates from a throwaway
authority (fakes/registry_tls.py) that RDAP_CA_BUNDLE names for these tests.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from django.test import SimpleTestCase, override_settings

from campaign.attribution import rdap
from fakes import registry_tls as tls
from fakes.registries import FIXTURES, RdapServer, write_bootstrap
from tests.test_settings import start_django

SHIPPED = Path(__file__).resolve().parents[2] / "campaign" / "rdap_bootstrap"
ANSWER = "arin_192.0.2.0.json"


def fixture(document: dict) -> str:
    """A one-off recorded answer, as an absolute path the servers accept as a fixture name."""
    path = Path(tempfile.mkdtemp(prefix="rdap-answer-")) / "answer.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


class RdapClientTestCase(SimpleTestCase):
    def setUp(self) -> None:
        self.servers: list[RdapServer] = []

    def serve(self, host: str, **options: object) -> RdapServer:
        server = RdapServer(host, "/rdap/", **options)
        server.start()
        self.servers.append(server)
        self.addCleanup(server.stop)
        return server

    def lookup(self, registries: list[str], ip: str = "192.0.2.77", **settings: object) -> object:
        """Look `ip` up with a bootstrap whose one entry for 192.0.2.0/24 lists `registries`."""
        folder = write_bootstrap(v4=[], v6=[])
        doc = json.loads((Path(folder) / "ipv4.json").read_text())
        doc["services"] = [[["192.0.2.0/24"], registries]]
        (Path(folder) / "ipv4.json").write_text(json.dumps(doc))
        rdap.clear_bootstrap_cache()
        self.addCleanup(rdap.clear_bootstrap_cache)
        options = {
            "RDAP_BOOTSTRAP": folder,
            "RDAP_TIMEOUT": 0.5,
            "RDAP_DEADLINE": 5,
            "RDAP_CA_BUNDLE": tls.trusted().bundle,
            **settings,
        }
        with override_settings(**options):
            return rdap.lookup_ip(ip)

    def test_it_never_falls_back_to_http_when_the_https_certificate_is_bad(self) -> None:
        forged = self.serve("127.0.61.1", authority=tls.untrusted())
        plain = self.serve("127.0.61.2", plain_http=True)
        for server in (forged, plain):
            server.route("ip/192.0.2.77", 200, ANSWER)
        with self.assertRaisesRegex(rdap.RdapError, "CERTIFICATE_VERIFY_FAILED"):
            self.lookup([forged.base_url, plain.base_url])
        self.assertEqual(plain.hits["/rdap/ip/192.0.2.77"], 0)

    def test_it_refuses_a_certificate_issued_for_another_host(self) -> None:
        server = self.serve("127.0.61.3", certificate_for="127.0.61.99")
        server.route("ip/192.0.2.77", 200, ANSWER)
        with self.assertRaisesRegex(rdap.RdapError, "CERTIFICATE_VERIFY_FAILED|match"):
            self.lookup([server.base_url])

    def test_it_ignores_plain_http_registries_in_the_bootstrap(self) -> None:
        plain = self.serve("127.0.61.4", plain_http=True)
        plain.route("ip/192.0.2.77", 200, ANSWER)
        with self.assertRaises(rdap.RdapNoServer):
            self.lookup([plain.base_url])
        self.assertEqual(sum(plain.hits.values()), 0)

    def test_it_refuses_a_redirect_to_a_host_outside_the_bootstrap(self) -> None:
        elsewhere = self.serve("127.0.61.5")  # a valid certificate, but no registry
        elsewhere.route("ip/192.0.2.77", 200, ANSWER)
        registry = self.serve("127.0.61.6")
        registry.route("ip/192.0.2.77", 302, None, Location=elsewhere.url("ip/192.0.2.77"))
        with self.assertRaisesRegex(rdap.RdapError, "not a registry in the bootstrap"):
            self.lookup([registry.base_url])
        self.assertEqual(sum(elsewhere.hits.values()), 0)

    def test_it_refuses_a_redirect_down_to_http(self) -> None:
        registry = self.serve("127.0.61.7")
        target = f"http://127.0.61.7:{registry.port}/rdap/ip/192.0.2.77"
        registry.route("ip/192.0.2.77", 302, None, Location=target)
        with self.assertRaisesRegex(rdap.RdapError, "not https"):
            self.lookup([registry.base_url])

    def test_it_refuses_a_referral_to_a_host_outside_the_bootstrap(self) -> None:
        elsewhere = self.serve("127.0.61.8")
        elsewhere.route("ip/192.0.2.77", 200, ANSWER)
        pointer = {
            "objectClassName": "ip network",
            "handle": "NET-192-0-2-0-1",
            "links": [
                {
                    "rel": "related",
                    "type": "application/rdap+json",
                    "href": elsewhere.url("ip/192.0.2.77"),
                }
            ],
        }
        registry = self.serve("127.0.61.9")
        registry.route("ip/192.0.2.77", 200, fixture(pointer))
        with self.assertRaisesRegex(rdap.RdapError, "referral .* not a registry in the bootstrap"):
            self.lookup([registry.base_url])
        self.assertEqual(sum(elsewhere.hits.values()), 0)

    def test_it_still_follows_a_redirect_to_another_registry_in_the_bootstrap(self) -> None:
        ripe = self.serve("127.0.61.10")
        ripe.route("ip/192.0.2.77", 200, ANSWER)
        arin = self.serve("127.0.61.11")
        arin.route("ip/192.0.2.77", 302, None, Location=ripe.url("ip/192.0.2.77"))
        answer = self.lookup([arin.base_url, ripe.base_url])
        self.assertEqual(answer.url, ripe.url("ip/192.0.2.77"))

    def test_it_bounds_the_total_time_of_a_lookup_against_a_slow_drip(self) -> None:
        # Each byte comes well within the per-read timeout; only a deadline over the whole
        # lookup stops it (unbounded, this answer would take minutes to arrive).
        slow = self.serve("127.0.61.12", delay=0.05)
        slow.route("ip/192.0.2.77", 200, ANSWER)
        with self.assertRaisesRegex(rdap.RdapTimeout, "past its 1s deadline"):
            self.lookup([slow.base_url], RDAP_DEADLINE=1)


class ShippedBootstrapTestCase(SimpleTestCase):
    def test_the_shipped_bootstrap_names_https_registries_only(self) -> None:
        for name in ("ipv4.json", "ipv6.json"):
            doc = json.loads((SHIPPED / name).read_text(encoding="utf-8"))
            urls = {url for entry in doc["services"] for url in entry[1]}
            with self.subTest(name=name):
                self.assertTrue(urls)
                self.assertEqual({u for u in urls if not u.startswith("https://")}, set())


def test_it_refuses_to_start_with_an_http_bootstrap_url(tmp_path: Path) -> None:
    result = start_django(tmp_path, RDAP_BOOTSTRAP="http://127.0.0.1:9/rdap/")
    assert result.returncode != 0
    assert "RDAP_BOOTSTRAP" in result.stderr.splitlines()[-1]


def test_the_recorded_answers_exist() -> None:
    assert (FIXTURES / ANSWER).is_file()
