"""Country names as registries write them in vCard addresses, to ISO 3166-1 alpha-2 codes.

Only names seen in RDAP answers matter here; a name not listed leaves the country unknown, and the
owner goes to the lead agency's triage rather than to a guessed partner.
"""

from __future__ import annotations

# Registry pseudo-codes (Europe, Asia-Pacific, unknown) name no country.
NOT_COUNTRIES = {"EU", "AP", "ZZ", "XX"}

NAMES = {
    "ARGENTINA": "AR",
    "AUSTRALIA": "AU",
    "AUSTRIA": "AT",
    "BELGIUM": "BE",
    "BRAZIL": "BR",
    "BRASIL": "BR",
    "BULGARIA": "BG",
    "CANADA": "CA",
    "CHILE": "CL",
    "CHINA": "CN",
    "COLOMBIA": "CO",
    "CYPRUS": "CY",
    "CZECH REPUBLIC": "CZ",
    "CZECHIA": "CZ",
    "DENMARK": "DK",
    "EGYPT": "EG",
    "FINLAND": "FI",
    "FRANCE": "FR",
    "GERMANY": "DE",
    "GHANA": "GH",
    "GREECE": "GR",
    "HONG KONG": "HK",
    "HUNGARY": "HU",
    "INDIA": "IN",
    "INDONESIA": "ID",
    "IRELAND": "IE",
    "ISRAEL": "IL",
    "ITALY": "IT",
    "JAPAN": "JP",
    "KENYA": "KE",
    "KOREA": "KR",
    "KOREA, REPUBLIC OF": "KR",
    "REPUBLIC OF KOREA": "KR",
    "SOUTH KOREA": "KR",
    "LITHUANIA": "LT",
    "LUXEMBOURG": "LU",
    "MALAYSIA": "MY",
    "MEXICO": "MX",
    "MOROCCO": "MA",
    "NETHERLANDS": "NL",
    "THE NETHERLANDS": "NL",
    "NEW ZEALAND": "NZ",
    "NIGERIA": "NG",
    "NORWAY": "NO",
    "PANAMA": "PA",
    "PERU": "PE",
    "PHILIPPINES": "PH",
    "POLAND": "PL",
    "PORTUGAL": "PT",
    "ROMANIA": "RO",
    "RUSSIA": "RU",
    "RUSSIAN FEDERATION": "RU",
    "SINGAPORE": "SG",
    "SOUTH AFRICA": "ZA",
    "SPAIN": "ES",
    "SWEDEN": "SE",
    "SWITZERLAND": "CH",
    "TAIWAN": "TW",
    "THAILAND": "TH",
    "TURKEY": "TR",
    "TURKIYE": "TR",
    "UKRAINE": "UA",
    "UNITED KINGDOM": "GB",
    "GREAT BRITAIN": "GB",
    "UNITED STATES": "US",
    "UNITED STATES OF AMERICA": "US",
    "USA": "US",
    "URUGUAY": "UY",
    "VENEZUELA": "VE",
    "VIET NAM": "VN",
    "VIETNAM": "VN",
}


def country_code(text: str) -> str:
    """An ISO code for a code or a known name; '' when it names no single country."""
    value = " ".join(text.replace(".", " ").split()).upper()
    if len(value) == 2 and value.isascii() and value.isalpha():
        code = "GB" if value == "UK" else value
        return "" if code in NOT_COUNTRIES else code
    return NAMES.get(value, "")
