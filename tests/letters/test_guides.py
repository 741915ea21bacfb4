"""The fix guides (letters/guides): every language has every key, keeps the placeholders, passes
the tone check and is not English; the software mapping; and the five guides whose change is the
one the end-to-end tests apply to turn a real open server closed (tests/peers)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from letters import guides
from letters.tone import LANGUAGES, check_text
from tests.letters.test_shipped_templates import ENGLISH_WORDS

PEERS_DIR = Path(__file__).resolve().parents[1] / "peers"
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
PRESENT = guides.languages()
OTHERS = [lang for lang in PRESENT if lang != "en"]
NON_LATIN = {
    "ja": re.compile(r"[\u3040-\u30ff\u4e00-\u9fff\u3005]"),
    "ko": re.compile(r"[\uac00-\ud7af]"),
    "zh-hant": re.compile(r"[\u4e00-\u9fff]"),
    "bg": re.compile(r"[\u0400-\u04ff]"),
    "el": re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]"),
}


def _strings(data: Any, path: str = "") -> dict[str, str]:
    """Every string of a language file, by dotted path (list items as path[i])."""
    out: dict[str, str] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(_strings(value, f"{path}.{key}" if path else key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.update(_strings(value, f"{path}[{i}]"))
    else:
        assert isinstance(data, str), (path, data)
        out[path] = data
    return out


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W\d_]+", text.lower())


# Words of the commands, configuration lines and server replies ("match from any for any",
# "relay not permitted", "that domain isn't in my list") may stand in any language's prose.
SNIPPET_WORDS = frozenset(_words(" ".join(_strings(guides.snippets()).values())))


# --- structure -------------------------------------------------------------------------------


def test_it_ships_every_guide_in_english_and_every_snippet() -> None:
    en = guides.language_data("en")
    snippets = guides.snippets()
    assert set(en) == {*guides.KINDS, "checklist"}  # the page's texts are in locale/
    assert set(snippets) == set(guides.KINDS)
    for kind, software_keys in guides.SOFTWARE_KEYS.items():
        assert tuple(en[kind]) == software_keys
        assert set(snippets[kind]) == set(software_keys)
        for software in software_keys:
            assert set(en[kind][software]) == set(guides.GUIDE_FIELDS), (kind, software)
            assert set(snippets[kind][software]) == set(guides.SNIPPET_FIELDS), (kind, software)
            if software != "generic":
                assert snippets[kind][software]["change"].strip(), (kind, software)
                assert snippets[kind][software]["file"], (kind, software)
    assert set(en["checklist"]) == {"title", "items"} and len(en["checklist"]["items"]) == 5


def test_every_language_of_the_brief_ships_guides() -> None:
    assert set(PRESENT) == set(LANGUAGES), set(LANGUAGES) ^ set(PRESENT)


@pytest.mark.parametrize("language", OTHERS)
def test_it_has_exactly_the_keys_of_english(language: str) -> None:
    en, other = guides.language_data("en"), guides.language_data(language)
    assert set(_strings(other)) == set(_strings(en)), set(_strings(other)) ^ set(_strings(en))


@pytest.mark.parametrize("language", PRESENT)
def test_it_keeps_the_placeholders_of_english(language: str) -> None:
    en = _strings(guides.language_data("en"))
    for path, text in _strings(guides.language_data(language)).items():
        found = PLACEHOLDER.findall(text)
        if path.endswith((".confirm", ".change", ".test")):  # guide prose may name {file} anywhere
            assert set(found) <= {"{file}"}, path
        else:
            assert Counter(found) == Counter(PLACEHOLDER.findall(en[path])), path
        assert "{" not in PLACEHOLDER.sub("", text) and "}" not in PLACEHOLDER.sub("", text), path


@pytest.mark.parametrize("language", PRESENT)
def test_every_string_passes_the_tone_check(language: str) -> None:
    problems = {
        path: [issue.phrase for issue in check_text(text, language)]
        for path, text in _strings(guides.language_data(language)).items()
    }
    assert not {path: phrases for path, phrases in problems.items() if phrases}


@pytest.mark.parametrize("language", PRESENT)
def test_no_string_is_empty(language: str) -> None:
    for path, text in _strings(guides.language_data(language)).items():
        assert text.strip(), path


# --- not English -----------------------------------------------------------------------------


def _english_share(language: str) -> tuple[float, list[str]]:
    words = _words(" ".join(_strings(guides.language_data(language)).values()))
    english = [w for w in words if w in ENGLISH_WORDS and w not in SNIPPET_WORDS]
    return len(english) / max(len(words), 1), english


def test_the_english_word_counter_recognises_the_english_guides() -> None:
    share, _ = _english_share("en")
    assert share > 0.08, share


@pytest.mark.parametrize("language", OTHERS)
def test_it_is_not_english_prose(language: str) -> None:
    share, english = _english_share(language)
    assert share < 0.02, Counter(english).most_common(10)
    en = _strings(guides.language_data("en"))
    for path, text in _strings(guides.language_data(language)).items():
        if text == en[path]:  # "Port", a product name: fine; a sentence left in English: not
            common = [w for w in _words(text) if w in ENGLISH_WORDS and w not in SNIPPET_WORDS]
            assert len(common) < 2, (path, text)


@pytest.mark.parametrize("language", [lang for lang in OTHERS if lang in NON_LATIN])
def test_it_is_written_in_its_script(language: str) -> None:
    text = " ".join(_strings(guides.language_data(language)).values())
    # Directive names and commands are Latin in every language; the rest is the language's own.
    letters = [w for w in re.findall(r"[^\W\d_]+", text) if w.lower() not in SNIPPET_WORDS]
    chars = [c for word in letters for c in word]
    share = sum(bool(NON_LATIN[language].match(c)) for c in chars) / len(chars)
    assert share > 0.6, share


# --- the Python API --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "kind", "key"),
    [
        ("Postfix", "smtp_relay", "postfix"),
        ("Zimbra (Postfix)", "smtp_relay", "postfix"),
        ("Exim", "smtp_relay", "exim"),
        ("exim4", "smtp_relay", "exim"),
        ("Sendmail", "smtp_relay", "sendmail"),
        ("Microsoft Exchange", "smtp_relay", "exchange"),
        ("Microsoft IIS SMTP", "smtp_relay", "generic"),
        ("OpenSMTPD", "smtp_relay", "opensmtpd"),
        ("qmail", "smtp_relay", "qmail"),
        ("netqmail", "smtp_relay", "qmail"),
        ("MDaemon", "smtp_relay", "generic"),
        ("Squid", "http_proxy", "squid"),
        ("tinyproxy", "http_proxy", "tinyproxy"),
        ("Apache httpd", "http_proxy", "apache"),
        ("Apache mod_proxy", "http_proxy", "apache"),
        ("Apache", "http_proxy", "apache"),
        ("Apache Traffic Server", "http_proxy", "generic"),
        ("nginx", "http_proxy", "nginx"),
        ("3proxy", "http_proxy", "3proxy"),
        ("Privoxy", "http_proxy", "generic"),
        ("Dante", "socks_proxy", "dante"),
        ("Dante 1.4", "socks_proxy", "dante"),
        ("3proxy", "socks_proxy", "3proxy"),
        ("microsocks", "socks_proxy", "microsocks"),
        ("Squid", "socks_proxy", "generic"),  # a family of another kind: the generic guide
        ("Postfix", "http_proxy", "generic"),
        ("Dante", "http_proxy", "generic"),
        ("", "smtp_relay", "generic"),
        (None, "socks_proxy", "generic"),
    ],
)
def test_it_maps_fingerprint_families_to_guides(family: str | None, kind: str, key: str) -> None:
    assert guides.normalise_software(family, kind) == key
    assert key in guides.SOFTWARE_KEYS[kind]


def test_it_maps_protocols_to_kinds() -> None:
    assert guides.kind_for_protocol("smtp") == "smtp_relay"
    assert guides.kind_for_protocol("http") == "http_proxy"
    assert guides.kind_for_protocol("socks4") == guides.kind_for_protocol("socks5") == "socks_proxy"
    with pytest.raises(ValueError):
        guides.kind_for_protocol("ftp")


def test_it_builds_a_guide_with_three_steps_and_the_checklist() -> None:
    guide = guides.guide_for("smtp_relay", "Postfix", "en")
    assert (guide.kind, guide.software, guide.language) == ("smtp_relay", "postfix", "en")
    assert [s.key for s in guide.steps] == ["confirm", "change", "test"]
    change = guide.steps[1]
    assert change.file == "/etc/postfix/main.cf" and "mynetworks = 192.0.2.10/32" in change.snippet
    assert "{file}" not in change.text and "/etc/postfix/main.cf" in change.text
    assert guide.steps[0].file == guide.steps[2].file == ""
    assert len(guide.checklist) == 5 and guide.checklist_title


@pytest.mark.parametrize("language", PRESENT)
def test_every_guide_builds_in_every_language(language: str) -> None:
    for kind, software_keys in guides.SOFTWARE_KEYS.items():
        for software in software_keys:
            guide = guides.guide_for(kind, software, language)
            assert guide.software == software and guide.language == language
            assert all(step.text and "{file}" not in step.text for step in guide.steps)


def test_unknown_software_falls_back_to_the_generic_guide() -> None:
    for kind in guides.KINDS:
        for family in (None, "", "Haraka", "WinGate 9"):
            guide = guides.guide_for(kind, family, "en")
            assert guide.software == "generic"
            assert guide.title == guides.language_data("en")[kind]["generic"]["title"]


@pytest.mark.parametrize("language", ["xx", "tr", "ga", "snippets", "../en", "EN-GB", ""])
def test_an_unknown_language_raises_and_never_falls_back_to_english(language: str) -> None:
    with pytest.raises(KeyError):
        guides.guide_for("smtp_relay", "Postfix", language)


def test_languages_are_the_shipped_files() -> None:
    assert "en" in PRESENT and "snippets" not in PRESENT
    assert set(PRESENT) <= set(LANGUAGES)


# --- the fix is the one the end-to-end tests apply -------------------------------------------

# (guide key, open template, closed template, closed lines the guide leaves out on purpose)
TESTED_FIXES = {
    ("smtp_relay", "postfix"): ("postfix/main.cf.open", "postfix/main.cf.closed", ()),
    # Real configurations define their own local and relay domains; the peer has none.
    ("smtp_relay", "exim"): (
        "exim/open.conf",
        "exim/closed.conf",
        ("domainlist local_domains =", "domainlist relay_to_domains ="),
    ),
    ("http_proxy", "squid"): ("squid/squid.open.conf", "squid/squid.closed.conf", ()),
    ("http_proxy", "tinyproxy"): ("tinyproxy/open.conf", "tinyproxy/closed.conf", ()),
    ("socks_proxy", "dante"): ("dante/open.conf", "dante/closed.conf", ()),
}


def _config_lines(text: str) -> list[str]:
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _peer_config(relative: str) -> list[str]:
    # The peer's own address is @@LISTEN@@; the guides write it as 192.0.2.10.
    text = (PEERS_DIR / relative).read_text().replace("@@LISTEN@@", guides.OWN_ADDRESS)
    assert "@@" not in text, relative
    return _config_lines(text)


@pytest.mark.parametrize(("kind", "software"), list(TESTED_FIXES))
def test_the_guides_change_is_what_turns_the_test_peer_closed(kind: str, software: str) -> None:
    open_name, closed_name, left_out = TESTED_FIXES[(kind, software)]
    change = _config_lines(guides.snippets()[kind][software]["change"])
    opened, closed = _peer_config(open_name), _peer_config(closed_name)
    assert change
    # Every line of the change is in the closed config, in the same order (Squid's http_access,
    # Dante's rules and Exim's ACL are first-match).
    remaining = iter(closed)
    missing = [line for line in change if not any(line == c for c in remaining)]
    assert not missing, missing
    # The change is not already in the open config ...
    assert [line for line in change if line not in opened]
    # ... and it holds every line by which the closed config differs from the open one.
    assert not [c for c in closed if c not in opened and c not in change and c not in left_out]
    # The guide's file and the snippets use the same placeholder address.
    assert guides.OWN_ADDRESS in guides.snippets()[kind][software]["change"]
