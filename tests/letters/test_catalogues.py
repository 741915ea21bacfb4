"""The gettext catalogues of the public pages (locale/): every one compiles, translates every
message the pages use with the same placeholders, passes the tone check and is not English."""

from __future__ import annotations

import re
import shutil

import pytest
from babel.messages.mofile import read_mo
from django.utils import translation

from letters import i18n
from letters.tone import check_text
from tests.letters.test_guides import NON_LATIN
from tests.letters.test_shipped_templates import ENGLISH_WORDS

LANGUAGES = i18n.catalogue_languages()
WORD = re.compile(r"[^\W\d_]+")


def _translations(language: str) -> dict[str, list[str]]:
    out = {}
    for message in i18n.read(language):
        if not message.id:
            continue
        key = message.id[0] if isinstance(message.id, tuple) else message.id
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        out[key] = [s for s in strings if s]
    return out


def test_it_lists_a_catalogue_for_every_language_but_english() -> None:
    assert len(LANGUAGES) == 16 and "en" not in LANGUAGES
    assert {"zh-hant", "pt-br"} <= set(LANGUAGES)  # Django's codes; the folders are locale names
    assert i18n.po_path("zh-hant").parts[-3] == "zh_Hant"
    assert i18n.po_path("pt-br").parts[-3] == "pt_BR"


def test_the_pages_messages_are_extracted_from_templates_and_code() -> None:
    ids = {m.id if isinstance(m.id, str) else m.id[0] for m in i18n.extract() if m.id}
    assert "I fixed it — check again" in ids  # a template's {% translate %}
    assert "Open when we checked on %(date)s" in ids  # a view's gettext
    assert "You can ask for another check in %(minutes)s minute." in ids  # ngettext, singular
    assert "Name or organisation" in ids  # a form label


def test_every_catalogue_is_complete() -> None:
    assert [str(problem) for problem in i18n.check()] == []


def test_the_check_reports_a_missing_and_an_untranslated_message(tmp_path, monkeypatch) -> None:
    locale = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR / "de", locale / "de")
    monkeypatch.setattr(i18n, "LOCALE_DIR", locale)
    catalogue = i18n.read("de")
    del catalogue["Name or organisation"]
    catalogue["Port"].string = ""
    i18n.write("de", catalogue)
    problems = {(p.msgid, p.what) for p in i18n.check(["de"])}
    assert problems == {("Name or organisation", "missing"), ("Port", "untranslated")}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_catalogue_compiles_with_its_plural_forms(language, tmp_path, monkeypatch) -> None:
    po = i18n.po_path(language)
    copy = tmp_path / po.relative_to(i18n.LOCALE_DIR)
    copy.parent.mkdir(parents=True)
    shutil.copy(po, copy)
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    assert i18n.compile_all() == [copy.with_suffix(".mo")]
    assert i18n.compile_all() == []  # up to date: nothing rewritten
    with copy.with_suffix(".mo").open("rb") as f:
        compiled = read_mo(f)
    assert len(compiled) == len(i18n.read(language)) > 80
    with translation.override(language):
        minutes = translation.ngettext(
            "You can ask for another check in %(minutes)s minute.",
            "You can ask for another check in %(minutes)s minutes.",
            1,
        ) % {"minutes": 1}
    assert "minutes." not in minutes  # "1 minutes" is gone in every language


@pytest.mark.parametrize("language", ["en", *LANGUAGES])
def test_every_translation_passes_the_tone_check(language: str) -> None:
    texts = (
        [m.id if isinstance(m.id, str) else m.id[0] for m in i18n.extract() if m.id]
        if language == "en"
        else [s for strings in _translations(language).values() for s in strings]
    )
    problems = {text: [i.phrase for i in check_text(text, language)] for text in texts}
    assert not {text: phrases for text, phrases in problems.items() if phrases}


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_translation_is_left_in_english(language: str) -> None:
    words = [
        w.lower() for strings in _translations(language).values() for s in strings
        for w in WORD.findall(re.sub(r"%\(\w+\)s", "", s))
    ]  # fmt: skip
    english = [w for w in words if w in ENGLISH_WORDS]
    assert len(english) / len(words) < 0.03, english[:20]
    if language in NON_LATIN:
        chars = "".join(w for w in words if w not in ENGLISH_WORDS)
        share = sum(bool(NON_LATIN[language].match(c)) for c in chars) / len(chars)
        assert share > 0.6, share
