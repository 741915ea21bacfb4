"""The gettext catalogues of the public pages and our admin additions (locale/<locale>/LC_MESSAGES/
django.po): extract the messages from their sources, update every language's catalogue, compile
them to .mo, and check that each one is complete.

Pure Python (Babel and Django's own template scanner), so a fresh machine and the image build
need no GNU gettext. `manage.py catalogues update|compile|check` runs these."""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_python
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from django.conf import settings
from django.utils.translation import to_locale
from django.utils.translation.template import templatize

BASE_DIR = Path(settings.BASE_DIR)
LOCALE_DIR = BASE_DIR / "locale"
# Where the messages of the public pages (and our admin additions) live. Django's own admin
# strings come translated with Django.
SOURCES: tuple[str, ...] = (
    "templates/public/*.html",
    "templates/remediation/*.html",
    "templates/scanning/*.html",
    "letters/views.py",
    "letters/owner_page.py",
    "letters/forms.py",
    "scanning/views.py",
    "scanning/forms.py",
    "campaign/preferences.py",
    "config/admin_site.py",
    "templates/admin/base_site.html",
    "templates/admin/staff_language.html",
    "templates/admin/mfa_*.html",
    "templates/admin/locked_out.html",
    "config/accounts.py",
    "reporting/templates/reporting/results.html",
    "reporting/public.py",
)
KEYWORDS = {
    "gettext": None,
    "gettext_lazy": None,
    "_": None,
    "ngettext": (1, 2),
    "ngettext_lazy": (1, 2),
    "pgettext": ((1, "c"), 2),
    "pgettext_lazy": ((1, "c"), 2),
    "npgettext": ((1, "c"), 2, 3),
}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def catalogue_languages() -> list[str]:
    """Every language of the site but English, in which the messages are written."""
    return [code for code, _name in settings.LANGUAGES if code != settings.LANGUAGE_CODE]


def po_path(language: str) -> Path:
    return LOCALE_DIR / to_locale(language) / "LC_MESSAGES" / "django.po"


def source_files() -> list[Path]:
    files: list[Path] = []
    for pattern in SOURCES:
        files.extend(sorted(BASE_DIR.glob(pattern)))
    return files


def _messages(path: Path) -> Iterable[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".html":
        # Django's scanner writes Python-like text for xgettext; Python's tokenizer (Babel's)
        # also wants consistent indentation, which the template's own does not give.
        text = "\n".join(line.lstrip() for line in templatize(text, origin=str(path)).split("\n"))
    options: Any = {"encoding": "utf-8"}
    keywords: Any = list(KEYWORDS)
    return extract_python(io.BytesIO(text.encode("utf-8")), keywords, [], options)


def extract() -> Catalog:
    """Every message of the sources, as a template catalogue (no translations)."""
    template = Catalog(project="Secure Your Server", fuzzy=False)
    for path in source_files():
        relative = path.relative_to(BASE_DIR).as_posix()
        for lineno, funcname, message, _comments in _messages(path):
            spec = KEYWORDS.get(funcname)
            strings = message if isinstance(message, tuple) else (message,)
            context = None
            if spec and isinstance(spec[0], tuple):  # pgettext: the context comes first
                context, strings = strings[0], strings[1:]
            strings = tuple(s for s in strings if s is not None)
            if not strings or not strings[0]:
                continue
            msgid = strings if len(strings) > 1 else strings[0]
            template.add(msgid, locations=[(relative, lineno)], context=context)
    return template


def read(language: str) -> Catalog:
    path = po_path(language)
    if not path.exists():
        return Catalog(locale=to_locale(language), project="Secure Your Server", fuzzy=False)
    with path.open("rb") as f:
        return read_po(f, locale=to_locale(language))


def write(language: str, catalogue: Catalog) -> None:
    path = po_path(language)
    path.parent.mkdir(parents=True, exist_ok=True)
    catalogue.header_comment = (
        f"# {language}: the public pages and admin additions of Secure Your Server.\n"
        "# Update with `manage.py catalogues update`; `make install` compiles them."
    )
    catalogue.msgid_bugs_address = ""
    catalogue.last_translator = "Secure Your Server"
    catalogue.language_team = language
    buffer = io.BytesIO()
    write_po(
        buffer, catalogue, width=100, omit_header=False, include_lineno=False, sort_output=True
    )
    path.write_bytes(buffer.getvalue())


def update(languages: Iterable[str] | None = None) -> list[str]:
    """Adds new messages to each catalogue (untranslated) and drops those no source uses."""
    template = extract()
    done = []
    for language in languages or catalogue_languages():
        catalogue = read(language)
        created = catalogue.creation_date  # unchanged, so two branches' updates merge cleanly
        catalogue.update(template, no_fuzzy_matching=True)
        catalogue.creation_date = created
        catalogue.obsolete.clear()
        write(language, catalogue)
        done.append(language)
    return done


def compile_all(*, force: bool = False) -> list[Path]:
    """Each django.po next to its django.mo, rewritten only when the .po is newer. The .mo is
    written to a temporary file and renamed, so a reader never sees half of one."""
    written = []
    for po in sorted(LOCALE_DIR.glob("*/LC_MESSAGES/django.po")):
        mo = po.with_suffix(".mo")
        if not force and mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as f:
            catalogue = read_po(f, locale=po.parent.parent.name)
        fd, tmp = tempfile.mkstemp(dir=po.parent, suffix=".mo.tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                write_mo(out, catalogue, use_fuzzy=False)
            os.replace(tmp, mo)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(mo)
    return written


@dataclass(frozen=True)
class Problem:
    language: str
    msgid: str
    what: str

    def __str__(self) -> str:
        return f"{po_path(self.language)}: {self.what}: {self.msgid!r}"


def _placeholders(text: Any) -> set[str]:
    return set(PLACEHOLDER.findall(str(text or "")))


def check(languages: Iterable[str] | None = None) -> list[Problem]:
    """Every message of the sources translated in every catalogue, nothing fuzzy, and each
    translation using exactly the placeholders of its message."""
    template = extract()
    problems = []
    for language in languages or catalogue_languages():
        if not po_path(language).exists():
            problems.append(Problem(language, "", "no catalogue"))
            continue
        catalogue = read(language)
        for wanted in template:
            if not wanted.id:
                continue
            key: str = str(wanted.id[0] if isinstance(wanted.id, tuple) else wanted.id)
            message = catalogue.get(wanted.id, context=wanted.context)
            if message is None:
                problems.append(Problem(language, key, "missing"))
                continue
            translations = (
                message.string if isinstance(message.string, tuple) else (message.string,)
            )
            if message.fuzzy or not all(translations):
                problems.append(Problem(language, key, "untranslated"))
                continue
            ids: Any = wanted.id if isinstance(wanted.id, tuple) else (wanted.id,)
            # A plural form may leave the count out ("one file"), never name another value.
            expected = set().union(*(_placeholders(i) for i in ids))
            for text in translations:
                extra = _placeholders(text) - expected
                missing = expected - _placeholders(text) - {"counter", "minutes", "count"}
                if extra or missing:
                    problems.append(Problem(language, key, f"placeholders differ in {text!r}"))
    return problems
