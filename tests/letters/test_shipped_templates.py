"""The shipped letter templates: every language and kind exists, renders, and is that language."""

from __future__ import annotations

import difflib
import html
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.template import Context, Engine

from letters import sandbox

LANGUAGES = (
    "en", "ja", "ko", "zh-hant", "pt-br", "es", "de", "nl", "fr", "it", "da", "nb", "pl", "lt",
    "ms", "bg", "el",
)  # fmt: skip
KINDS = ("initial", "reminder", "fixed")
LETTERS_DIR = Path(settings.BASE_DIR) / "templates" / "letters"
SUBJECT = re.compile(r"^\{#\s*subject:\s*(?P<subject>\S.*?)\s*#\}$")

FINDINGS = [
    {"address": "192.0.2.25", "port": 25, "kind": "smtp_relay", "protocol": "smtp",
     "software": "Postfix", "seen": "03.02.2026", "evidence": "strong"},
    {"address": "198.51.100.8", "port": 3128, "kind": "http_proxy", "protocol": "http",
     "software": "", "seen": "04.02.2026", "evidence": "medium"},
    {"address": "2001:db8::1080", "port": 1080, "kind": "socks_proxy", "protocol": "socks5",
     "software": "Dante 1.4", "seen": "05.02.2026", "evidence": "weak"},
]  # fmt: skip
CONTEXT = {
    "agency": "Agentia Exempli",
    "country_name": "Exemplaria",
    "signatory_name": "Q. Zyx",
    "signatory_title": "Directrix",
    "reply_to": "sys@agency.example",
    "agency_website": "https://agency.example/sys",
    "owner_name": "Xyzzy Hosting GmbH",
    "reference": "SYS-2026-000123",
    "campaign_name": "SYS 2026",
    "letter_date": "01.03.2026",
    "findings": FINDINGS,
    "remediation_url": "https://sys.example/r/tok3nXYZ",
    "first_letter_date": "01.02.2026",
    "fixed_date": "02.03.2026",
}

# Common English function words that are not also words of the other 16 languages
# ("to", "by" and "on" are Polish, "is", "we" and "of" Dutch, "was" and "will" German,
# "for" Danish, Norwegian and Portuguese).
ENGLISH_WORDS = frozenset(
    "the and your you please this that with from have has our are it if can not these they "
    "been would should which what when how about there their any".split()
)
NON_LATIN = ("ja", "ko", "zh-hant", "bg", "el")
# Words the brief expects to see in each Latin-script language (at least three of them).
EXPECTED_WORDS = {
    "de": {"der", "die", "und", "sie"},
    "nl": {"de", "het", "een", "uw"},
    "fr": {"le", "la", "vous", "votre"},
    "es": {"el", "la", "usted", "su"},
    "pt-br": {"o", "a", "você", "seu"},
    "it": {"il", "la", "lei", "suo"},
    "da": {"og", "at", "det", "jeres"},
    "nb": {"og", "at", "det", "dere"},
    "pl": {"i", "w", "na", "państwa"},
    "lt": {"ir", "kad", "jūsų"},
    "ms": {"dan", "yang", "anda", "pelayan"},
    "bg": {"и", "на", "за", "да", "се"},
    "el": {"και", "το", "να", "σας", "του"},
}
# Words typical of one language and not of its near neighbours, to tell them apart.
DISTINCTIVE_WORDS = {
    "en": ENGLISH_WORDS,
    "de": {"der", "die", "das", "und", "sie", "ihr", "ihre", "ihren", "nicht", "mit", "ist",
           "wir", "auf", "eine", "den", "dem", "bitte", "zu", "werden"},
    "nl": {"het", "een", "uw", "niet", "wij", "zijn", "kunt", "deze", "worden", "naar", "ook",
           "bij", "heeft", "wordt", "onze", "u"},
    "fr": {"le", "les", "vous", "votre", "vos", "nous", "est", "une", "pour", "qui", "dans",
           "pas", "sur", "au", "aux", "ce", "cette", "du"},
    "es": {"el", "los", "las", "usted", "su", "sus", "y", "está", "muy", "pero", "lo", "con",
           "por", "es", "nuestra", "nuestro", "puede"},
    "pt-br": {"o", "os", "você", "seu", "sua", "seus", "não", "uma", "um", "em", "é", "ao",
              "pelo", "com", "nossa", "nosso", "isso"},
    "it": {"il", "gli", "della", "che", "di", "è", "lei", "suo", "sua", "suoi", "non", "per",
           "nella", "alla", "degli", "sono", "un"},
    "da": {"jeres", "jer", "af", "efter", "hvad", "mellem", "blevet", "nu", "venlig", "ikke",
           "eller", "til", "kan"},
    "nb": {"dere", "av", "etter", "hva", "mellom", "blitt", "nå", "vennlig", "slik", "ikke",
           "eller", "til", "kan"},
    "pl": {"się", "że", "państwa", "oraz", "jest", "przez", "które", "który", "nie", "lub", "w",
           "i", "na", "z"},
    "lt": {"ir", "kad", "jūsų", "yra", "į", "iš", "arba", "bei", "mūsų", "ar", "jei", "kuris"},
    "ms": {"dan", "yang", "anda", "pelayan", "untuk", "ini", "di", "dengan", "kami", "tidak",
           "boleh", "dalam", "akan", "pada", "oleh"},
}  # fmt: skip
SIMPLIFIED_ONLY = set("们这与会网务处请时关发现为经过动设应检测单络软邮议谢户统访问题还务将")
KANA = re.compile(r"[\u3040-\u30ff]")
HANGUL = re.compile(r"[\uac00-\ud7af]")
HAN = re.compile(r"[\u4e00-\u9fff]")


def _source(language: str, kind: str) -> tuple[str, str]:
    text = (LETTERS_DIR / language / f"{kind}.html").read_text(encoding="utf-8")
    first, _, body = text.partition("\n")
    match = SUBJECT.match(first.strip())
    assert match, f"{language}/{kind}.html: the first line must be {{# subject: ... #}}"
    return match["subject"], body


def _render(source: str, context: dict | None = None, *, autoescape: bool = True) -> str:
    template = Engine(autoescape=autoescape).from_string(source)
    return template.render(Context(dict(context or CONTEXT), autoescape=autoescape))


def _strip_values(text: str) -> str:
    values = [str(v) for k, v in CONTEXT.items() if k != "findings"]
    values += [str(v) for f in FINDINGS for v in f.values()]
    for value in sorted(filter(None, values), key=len, reverse=True):
        text = text.replace(value, " ")
    return text


def _visible_text(language: str, kind: str) -> str:
    subject, body = _source(language, kind)
    rendered = _render(subject, autoescape=False) + "\n" + _render(body)
    rendered = re.sub(r"<[^>]+>", " ", rendered)
    return _strip_values(html.unescape(rendered))


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W\d_]+", text.lower())


ALL = [(lang, kind) for lang in LANGUAGES for kind in KINDS]


@pytest.mark.parametrize(("language", "kind"), ALL)
def test_it_ships_a_parsable_template_with_a_subject(language: str, kind: str) -> None:
    subject, body = _source(language, kind)
    assert "{{ reference }}" in subject
    assert "<html" not in body and "<body" not in body and "<head" not in body
    Engine(autoescape=True).from_string(body)


@pytest.mark.parametrize(("language", "kind"), ALL)
def test_it_renders_link_reference_and_every_address(language: str, kind: str) -> None:
    subject, body = _source(language, kind)
    rendered_subject = " ".join(_render(subject, autoescape=False).split())
    assert CONTEXT["reference"] in rendered_subject
    assert "{" not in rendered_subject and len(rendered_subject) < 160
    out = _render(body)
    assert CONTEXT["remediation_url"] in out
    assert CONTEXT["reference"] in out
    for name in ("owner_name", "signatory_name", "signatory_title", "agency", "reply_to"):
        assert CONTEXT[name] in out, name
    for finding in FINDINGS:
        assert finding["address"] in out
        assert str(finding["port"]) in out
    date = {"initial": None, "reminder": "first_letter_date", "fixed": "fixed_date"}[kind]
    if date:
        assert CONTEXT[date] in out
    if kind != "fixed":
        for finding in FINDINGS:
            assert finding["seen"] in out
    assert "{{" not in out and "{%" not in out


@pytest.mark.parametrize(("language", "kind"), ALL)
def test_it_renders_each_kind_of_finding_in_its_own_words(language: str, kind: str) -> None:
    _, body = _source(language, kind)
    texts = set()
    for finding in FINDINGS:
        out = _render(body, {**CONTEXT, "findings": [finding]})
        texts.add(re.sub(r"<[^>]+>", " ", out).replace(finding["address"], ""))
    assert len(texts) == len(FINDINGS)


@pytest.mark.parametrize(("language", "kind"), ALL)
def test_it_escapes_untrusted_values(language: str, kind: str) -> None:
    _, body = _source(language, kind)
    hostile = "<script>alert(1)</script>"
    finding = {**FINDINGS[0], "software": hostile}
    out = _render(body, {**CONTEXT, "owner_name": hostile, "findings": [finding]})
    assert "<script>" not in out


@pytest.mark.parametrize(("language", "kind"), ALL)
def test_it_renders_in_the_letters_sandbox(language: str, kind: str) -> None:
    subject, body = _source(language, kind)
    assert CONTEXT["remediation_url"] in sandbox.sandbox_render(body, dict(CONTEXT))
    assert CONTEXT["reference"] in sandbox.sandbox_render(subject, dict(CONTEXT))


def test_the_english_word_counter_recognises_english() -> None:
    for kind in KINDS:
        words = _words(_visible_text("en", kind))
        share = sum(w in ENGLISH_WORDS for w in words) / len(words)
        assert share > 0.12, (kind, share)


@pytest.mark.parametrize(("language", "kind"), [p for p in ALL if p[0] != "en"])
def test_it_is_not_english_text(language: str, kind: str) -> None:
    text = _visible_text(language, kind)
    words = _words(text)
    english = [w for w in words if w in ENGLISH_WORDS]
    assert len(english) / max(len(words), 1) < 0.02, english
    # In a non-Latin script, a run of ASCII words is English left behind (a product name is fine).
    if language in NON_LATIN:
        runs = re.findall(r"(?:\b[A-Za-z]{2,}\b[ ,]+){4,}", text)
        assert not runs, runs


@pytest.mark.parametrize(("language", "kind"), [p for p in ALL if p[0] in EXPECTED_WORDS])
def test_it_uses_the_languages_own_everyday_words(language: str, kind: str) -> None:
    words = set(_words(_visible_text(language, kind)))
    expected = EXPECTED_WORDS[language]
    assert len(expected & words) >= min(3, len(expected)), expected - words


@pytest.mark.parametrize(("language", "kind"), [p for p in ALL if p[0] in DISTINCTIVE_WORDS])
def test_it_reads_as_its_own_language_and_not_a_neighbour(language: str, kind: str) -> None:
    words = _words(_visible_text(language, kind))
    scores = {
        other: sum(w in vocabulary for w in words) / len(words)
        for other, vocabulary in DISTINCTIVE_WORDS.items()
    }
    best = max(scores, key=scores.get)
    assert best == language, scores
    assert scores[language] > 0.1, scores


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("language", "pattern", "share"),
    [
        ("bg", re.compile(r"[\u0400-\u04ff]"), 0.85),
        ("el", re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]"), 0.85),
        ("ko", HANGUL, 0.8),
        ("ja", re.compile(r"[\u3040-\u30ff\u4e00-\u9fff\u3005]"), 0.8),
        ("zh-hant", HAN, 0.8),
    ],
)
def test_it_is_written_in_its_script(
    language: str, pattern: re.Pattern, share: float, kind: str
) -> None:
    letters = [c for c in _visible_text(language, kind) if c.isalpha()]
    assert sum(bool(pattern.match(c)) for c in letters) / len(letters) > share


@pytest.mark.parametrize("kind", KINDS)
def test_japanese_chinese_and_korean_are_told_apart(kind: str) -> None:
    ja, zh, ko = (_visible_text(lang, kind) for lang in ("ja", "zh-hant", "ko"))
    assert len(KANA.findall(ja)) > 100  # Japanese prose is full of kana
    assert not KANA.findall(zh) and not HANGUL.findall(zh)
    assert not (SIMPLIFIED_ONLY & set(zh)), SIMPLIFIED_ONLY & set(zh)  # Traditional, not Simplified
    assert not HANGUL.findall(ja) and not KANA.findall(ko)
    assert len(HANGUL.findall(ko)) > 200


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("one", "other"), [("da", "nb"), ("es", "pt-br"), ("de", "nl")])
def test_neighbouring_languages_are_written_separately(one: str, other: str, kind: str) -> None:
    paths = [LETTERS_DIR / lang / f"{kind}.html" for lang in (one, other)]
    assert paths[0].read_bytes() != paths[1].read_bytes()
    # Compare what the reader sees, not the shared markup. Word by word, a respelled copy
    # (Danish turned Norwegian by swapping af/av, jeres/deres, ...) still scores above 0.8.
    a, b = (_visible_text(lang, kind) for lang in (one, other))
    words = difflib.SequenceMatcher(None, _words(a), _words(b), autojunk=False).ratio()
    assert words < 0.6, words
    chars = difflib.SequenceMatcher(None, " ".join(a.split()), " ".join(b.split()), autojunk=False)
    assert chars.ratio() < 0.8, chars.ratio()


def test_no_stray_files() -> None:
    for path in LETTERS_DIR.glob("*/*.html"):
        assert path.parent.name in LANGUAGES, path
        assert path.stem in KINDS, path
