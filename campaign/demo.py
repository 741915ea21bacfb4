"""Demo data of `load_demo`: the 26 partner nations, staff, a campaign, owners, cases."""

from __future__ import annotations

from dataclasses import dataclass

# country, name, agency, languages in order (a listed language without letters is skipped)
PARTNERS: list[tuple[str, str, str, list[str]]] = [
    ("US", "United States", "Federal Trade Commission", ["en"]),
    ("GB", "United Kingdom", "Information Commissioner's Office", ["en"]),
    ("JP", "Japan", "Ministry of Internal Affairs and Communications", ["ja"]),
    ("KR", "Korea", "Korea Internet & Security Agency", ["ko"]),
    ("TW", "Taiwan", "National Communications Commission", ["zh-hant"]),
    ("BR", "Brazil", "Comitê Gestor da Internet no Brasil", ["pt-br"]),
    ("AR", "Argentina", "Agencia de Acceso a la Información Pública", ["es"]),
    ("AU", "Australia", "Australian Communications and Media Authority", ["en"]),
    ("CA", "Canada", "Canadian Radio-television and Telecommunications Commission", ["en", "fr"]),
    ("CL", "Chile", "Servicio Nacional del Consumidor", ["es"]),
    ("DE", "Germany", "Bundesnetzagentur", ["de"]),
    ("NL", "Netherlands", "Autoriteit Consument & Markt", ["nl"]),
    ("ES", "Spain", "Agencia Española de Protección de Datos", ["es"]),
    ("BE", "Belgium", "FOD Economie / SPF Economie", ["nl", "fr"]),
    ("DK", "Denmark", "Forbrugerombudsmanden", ["da"]),
    ("NO", "Norway", "Forbrukertilsynet", ["nb"]),
    ("CH", "Switzerland", "Bundesamt für Kommunikation BAKOM", ["de", "fr", "it"]),
    ("IE", "Ireland", "Commission for Communications Regulation", ["ga", "en"]),
    ("PL", "Poland", "Urząd Komunikacji Elektronicznej", ["pl"]),
    ("LT", "Lithuania", "Ryšių reguliavimo tarnyba", ["lt"]),
    ("MY", "Malaysia", "Malaysian Communications and Multimedia Commission", ["ms", "en"]),
    ("CO", "Colombia", "Superintendencia de Industria y Comercio", ["es"]),
    ("PE", "Peru", "INDECOPI", ["es"]),
    ("PA", "Panama", "Autoridad Nacional de los Servicios Públicos", ["es"]),
    ("BG", "Bulgaria", "Communications Regulation Commission", ["bg"]),
    ("CY", "Cyprus", "Office of the Commissioner of Electronic Communications", ["el", "en", "tr"]),
]
# IANA time zone of each partner (its capital): export dates and sending windows.
TIME_ZONES: dict[str, str] = {
    "US": "America/New_York",
    "GB": "Europe/London",
    "JP": "Asia/Tokyo",
    "KR": "Asia/Seoul",
    "TW": "Asia/Taipei",
    "BR": "America/Sao_Paulo",
    "AR": "America/Argentina/Buenos_Aires",
    "AU": "Australia/Sydney",
    "CA": "America/Toronto",
    "CL": "America/Santiago",
    "DE": "Europe/Berlin",
    "NL": "Europe/Amsterdam",
    "ES": "Europe/Madrid",
    "BE": "Europe/Brussels",
    "DK": "Europe/Copenhagen",
    "NO": "Europe/Oslo",
    "CH": "Europe/Zurich",
    "IE": "Europe/Dublin",
    "PL": "Europe/Warsaw",
    "LT": "Europe/Vilnius",
    "MY": "Asia/Kuala_Lumpur",
    "CO": "America/Bogota",
    "PE": "America/Lima",
    "PA": "America/Panama",
    "BG": "Europe/Sofia",
    "CY": "Asia/Nicosia",
}
LEAD_COUNTRY = "US"

# The agency, country and signatory as letters in each language print them; languages not
# listed use the English fields.
LOCAL_NAMES: dict[str, dict[str, dict[str, str]]] = {
    "JP": {
        "ja": {
            "agency": "総務省",
            "country_name": "日本",
            "signatory_name": "セキュア・ユア・サーバー担当",
            "signatory_title": "ネットワークセキュリティ啓発室",
        }
    },
    "KR": {
        "ko": {
            "agency": "한국인터넷진흥원",
            "country_name": "대한민국",
            "signatory_name": "Secure Your Server 담당팀",
            "signatory_title": "네트워크 보안 안내",
        }
    },
    "TW": {
        "zh-hant": {
            "agency": "國家通訊傳播委員會",
            "country_name": "臺灣",
            "signatory_name": "Secure Your Server 專案小組",
            "signatory_title": "網路安全推廣",
        }
    },
    "DE": {"de": {"country_name": "Deutschland", "signatory_title": "Netzsicherheit"}},
    "CH": {
        "de": {"country_name": "Schweiz", "signatory_title": "Netzsicherheit"},
        "fr": {
            "agency": "Office fédéral de la communication OFCOM",
            "country_name": "Suisse",
            "signatory_title": "Sécurité des réseaux",
        },
        "it": {
            "agency": "Ufficio federale delle comunicazioni UFCOM",
            "country_name": "Svizzera",
            "signatory_title": "Sicurezza delle reti",
        },
    },
    "BE": {
        "nl": {"agency": "FOD Economie", "country_name": "België"},
        "fr": {"agency": "SPF Economie", "country_name": "Belgique"},
    },
    "CA": {
        "fr": {
            "agency": "Conseil de la radiodiffusion et des télécommunications canadiennes",
            "signatory_title": "Sensibilisation à la sécurité des réseaux",
        }
    },
}

# Staff with one role each, for two partners; the lead agency gets a caseworker who sees all.
STAFF: list[tuple[str, str, str]] = [
    ("gb-viewer", "GB", "viewer"),
    ("gb-caseworker", "GB", "caseworker"),
    ("gb-approver", "GB", "approver"),
    ("de-viewer", "DE", "viewer"),
    ("de-caseworker", "DE", "caseworker"),
    ("de-approver", "DE", "approver"),
    ("lead-caseworker", "US", "caseworker"),
    ("lead-approver", "US", "approver"),
]
DEMO_PASSWORD = "demo-password"
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin-demo-password"


@dataclass(frozen=True)
class DemoServer:
    ip: str
    port: int
    protocol: str
    verdict: str
    software: str
    banner: str


@dataclass(frozen=True)
class DemoOwner:
    name: str
    country: str
    abuse: str
    network: str
    cidr: str
    servers: tuple[DemoServer, ...]
    preferred_language: str = ""


# Documentation address ranges only (RFC 5737, RFC 3849): the demo never names a real host.
OWNERS: list[DemoOwner] = [
    DemoOwner(
        "Thames Valley Hosting Ltd",
        "GB",
        "abuse@thames-hosting.example",
        "noc@thames-hosting.example",
        "192.0.2.0/26",
        (
            DemoServer(
                "192.0.2.10",
                25,
                "smtp",
                "confirmed-open",
                "Postfix",
                "220 mail.thames-hosting.example ESMTP Postfix (Debian/GNU)",
            ),
            DemoServer(
                "192.0.2.11",
                3128,
                "http",
                "likely-open",
                "Squid",
                "HTTP/1.1 400 Bad Request\r\nServer: squid/5.7",
            ),
        ),
    ),
    DemoOwner(
        "Pennine Community Broadband",
        "GB",
        "abuse@pennine-cb.example",
        "",
        "192.0.2.64/26",
        (DemoServer("192.0.2.70", 1080, "socks5", "likely-open-weak", "Dante", ""),),
    ),
    DemoOwner(
        "Rheinland Datenzentrum GmbH",
        "DE",
        "abuse@rheinland-dz.example",
        "noc@rheinland-dz.example",
        "198.51.100.0/26",
        (
            DemoServer(
                "198.51.100.5",
                25,
                "smtp",
                "confirmed-open",
                "Exim",
                "220 mx1.rheinland-dz.example ESMTP Exim 4.96 Mon, 02 Nov 2026 10:00:00 +0100",
            ),
            DemoServer(
                "198.51.100.6",
                8080,
                "http",
                "confirmed-open",
                "tinyproxy",
                "HTTP/1.1 400 Bad Request\r\nServer: tinyproxy/1.11.1",
            ),
        ),
    ),
    DemoOwner(
        "Bäckerei Schmidt KG",
        "DE",
        "info@baeckerei-schmidt.example",
        "",
        "198.51.100.64/28",
        (
            DemoServer(
                "198.51.100.66",
                25,
                "smtp",
                "likely-open",
                "Microsoft Exchange",
                "220 mail.baeckerei-schmidt.example Microsoft ESMTP MAIL Service ready",
            ),
        ),
    ),
    DemoOwner(
        "Sakura Net Services K.K.",
        "JP",
        "abuse@sakura-net.example",
        "",
        "203.0.113.0/27",
        (
            DemoServer(
                "203.0.113.7",
                25,
                "smtp",
                "confirmed-open",
                "Sendmail",
                "220 mail.sakura-net.example ESMTP Sendmail 8.17.1/8.17.1",
            ),
        ),
    ),
    DemoOwner(
        "Hanbit Cloud",
        "KR",
        "abuse@hanbit-cloud.example",
        "",
        "203.0.113.32/27",
        (
            DemoServer(
                "203.0.113.40", 3128, "http", "confirmed-open", "Squid", "Server: squid/4.10"
            ),
        ),
    ),
    DemoOwner(
        "Formosa Link Co.",
        "TW",
        "abuse@formosa-link.example",
        "",
        "203.0.113.64/27",
        (DemoServer("203.0.113.70", 1080, "socks5", "confirmed-open", "3proxy", ""),),
    ),
    DemoOwner(
        "Provedor Ipê Ltda",
        "BR",
        "abuse@ipe.example",
        "noc@ipe.example",
        "203.0.113.96/27",
        (
            DemoServer(
                "203.0.113.99",
                25,
                "smtp",
                "confirmed-open",
                "Postfix",
                "220 mx.ipe.example ESMTP Postfix",
            ),
        ),
    ),
    DemoOwner(
        "Alpenblick Informatik AG",
        "CH",
        "abuse@alpenblick.example",
        "",
        "203.0.113.128/27",
        (
            DemoServer(
                "203.0.113.130",
                25,
                "smtp",
                "confirmed-open",
                "OpenSMTPD",
                "220 mail.alpenblick.example ESMTP OpenSMTPD",
            ),
        ),
        preferred_language="fr",
    ),
    DemoOwner(
        "Prairie Web Hosting Inc.",
        "CA",
        "abuse@prairie-web.example",
        "",
        "203.0.113.160/27",
        (
            DemoServer(
                "203.0.113.161",
                8080,
                "http",
                "likely-open",
                "Apache mod_proxy",
                "Server: Apache/2.4.57",
            ),
        ),
    ),
    DemoOwner(
        "Unrouted Example Networks",
        "ZZ",
        "abuse@unrouted.example",
        "",
        "203.0.113.192/27",
        (
            DemoServer(
                "203.0.113.200",
                25,
                "smtp",
                "likely-open",
                "qmail",
                "220 mail.unrouted.example ESMTP",
            ),
        ),
    ),
    DemoOwner(
        "Vistula Hosting Sp. z o.o.",
        "PL",
        "abuse@vistula.example",
        "",
        "203.0.113.224/28",
        (
            DemoServer(
                "203.0.113.225", 3128, "http", "confirmed-open", "Squid", "Server: squid/6.1"
            ),
        ),
    ),
    DemoOwner(
        "Lakeside Library Board",
        "US",
        "it@lakeside-library.example",
        "",
        "2001:db8:10::/48",
        (
            DemoServer(
                "2001:db8:10::25",
                25,
                "smtp",
                "confirmed-open",
                "Postfix",
                "220 mail.lakeside-library.example ESMTP Postfix",
            ),
        ),
    ),
]
