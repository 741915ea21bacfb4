"""The tone check: advisory letters must never accuse the recipient or threaten legal action.

Pure Python on purpose (no Django at import): the `check_tone` command, the approval workflow
and the test suite all call it, and it must run on a template file before any database exists.

How it works: the source (HTML or plain text, both possibly with Django template syntax) is
reduced to the prose a recipient reads, with a map from every prose character back to its
source offset, so a hit points at the source file's own line and column. Each language has
rules (regular expressions, grouped by the concept they express) and an allow-list of benign
phrases; a hit wholly inside an allow-list match is dropped. Space-separated languages match on
word boundaries, with stems and suffix alternations for their inflections; Japanese, Korean and
Chinese match substrings, so their allow-lists hold the benign compounds that contain a term.
"""

from __future__ import annotations

import bisect
import functools
import html
import re
import tomllib
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LANGUAGES: tuple[str, ...] = (
    "en", "ja", "ko", "zh-hant", "pt-br", "es", "de", "nl", "fr", "it",
    "da", "nb", "pl", "lt", "ms", "bg", "el",
)  # fmt: skip
CJK_LANGUAGES = frozenset({"ja", "ko", "zh-hant"})

LEGAL = "legal threat"
ACCUSATION = "accusation"
SPAMMING = "you are spamming"
CATEGORY: dict[str, str] = {SPAMMING: ACCUSATION}  # every other concept is a legal threat


class UnknownLanguage(ValueError):
    pass


class LanguageNotFound(ValueError):
    pass


@dataclass(frozen=True)
class ToneIssue:
    line: int  # 1-based, in the source text
    column: int  # 1-based
    phrase: str  # as found in the text, whitespace collapsed
    reason: str  # e.g. "legal threat: 'violation'"
    field: str = ""  # which part of a stored template (subject, body_html, body_text)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Rules: language -> concept -> patterns. A space in a pattern matches any run of whitespace
# (HTML wraps lines anywhere). Patterns are matched on lower-cased text; Greek also has its
# accents stripped and final sigma folded, so Greek patterns are written without accents.
# ---------------------------------------------------------------------------------------------

RULES_DIR = Path(__file__).resolve().parent / "tone_rules"


def _load_rules() -> tuple[dict[str, dict[str, list[str]]], dict[str, list[str]]]:
    """Each language's rules and allow-list, from ``tone_rules/<language>.toml``.

    A missing or unreadable file stops the import: the tone check guards approval, so it must
    fail closed rather than approve with no rules."""
    rules: dict[str, dict[str, list[str]]] = {}
    allow: dict[str, list[str]] = {}
    for language in LANGUAGES:
        path = RULES_DIR / f"{language}.toml"
        with path.open("rb") as handle:
            data = tomllib.load(handle)
        concepts = data.get("rules")
        if not isinstance(concepts, dict) or not concepts:
            raise RuntimeError(f"{path}: no [rules] table")
        rules[language] = {str(concept): list(patterns) for concept, patterns in concepts.items()}
        allow[language] = list(data.get("allow", {}).get("patterns", []))
    return rules, allow


RULES, ALLOW = _load_rules()

# Web and mail addresses are not wording; "…/penalty-faq" in a link is no threat in prose.
_ADDRESS = re.compile(r"(?:https?://|www\.)[^\s<>\"']+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.I)


def _compile(language: str, pattern: str) -> re.Pattern[str]:
    pattern = pattern.replace(" ", r"\s+")
    if language not in CJK_LANGUAGES:
        pattern = rf"(?<!\w)(?:{pattern})(?!\w)"
    return re.compile(pattern, re.IGNORECASE)


_COMPILED: dict[str, list[tuple[str, re.Pattern[str]]]] = {
    language: [
        (concept, _compile(language, pattern))
        for concept, patterns in rules.items()
        for pattern in patterns
    ]
    for language, rules in RULES.items()
}
_ALLOW_COMPILED: dict[str, list[re.Pattern[str]]] = {
    language: [_compile(language, pattern) for pattern in ALLOW.get(language, [])]
    for language in RULES
}
assert set(RULES) == set(LANGUAGES), "every letter language needs tone rules"


def normalize_language(language: str) -> str:
    code = language.strip().lower().replace("_", "-")
    if code not in RULES:
        raise UnknownLanguage(f"unknown language {language!r}; known: {', '.join(LANGUAGES)}")
    return code


# ---------------------------------------------------------------------------------------------
# From source to prose, keeping a map back to source offsets.
# ---------------------------------------------------------------------------------------------

_INLINE_TAGS = frozenset(
    "a abbr b bdi bdo cite code data dfn em font i kbd mark q s samp small span strong sub sup"
    " time u var wbr".split()
)
_TRANS = re.compile(r"""\{%\s*(?:trans|translate)\s+(?:"([^"]*)"|'([^']*)')""", re.S)
# Shipped files carry their e-mail subject in a first-line comment (letters.rendering): that is
# prose the recipient reads, so it is checked like the body.
_SUBJECT = re.compile(r"\{\#\s*subject:\s*(.*?)\s*\#\}", re.S)
_DJANGO_MARKUP = r"""
    (?P<comment_block>\{%\s*comment\b.*?%\}.*?\{%\s*endcomment\s*%\})
    | (?P<django_comment>\{\#.*?\#\})
    | (?P<tag>\{%.*?%\})
    | (?P<var>\{\{.*?\}\})
"""
_HTML_MARKUP = r"""
    | (?P<html_comment><!--.*?-->)
    | (?P<raw><(?P<raw_name>script|style)\b.*?</(?P=raw_name)\s*>)
    | (?P<element></?(?P<name>[a-zA-Z][\w:-]*)(?:[^>"']|"[^"]*"|'[^']*')*>)
    | (?P<doctype><![^>]*>)
    | (?P<entity>&(?:\#\d+|\#[xX][0-9a-fA-F]+|[a-zA-Z][a-zA-Z0-9]*);)
"""
_MARKUP = {
    True: re.compile(_DJANGO_MARKUP + _HTML_MARKUP, re.S | re.X),
    False: re.compile(_DJANGO_MARKUP, re.S | re.X),  # plain text: "<" and "&" are characters
}
_KINDS = (
    "comment_block",
    "django_comment",
    "tag",
    "var",
    "html_comment",
    "raw",
    "element",
    "doctype",
    "entity",
)
_LOOKS_LIKE_HTML = re.compile(
    r"<(?:!--|!doctype|/?[a-zA-Z][\w:-]*[\s/>])|&(?:#\d+|#x[0-9a-f]+|[a-z][a-z0-9]*);", re.I
)


def looks_like_html(text: str) -> bool:
    return bool(_LOOKS_LIKE_HTML.search(text))


def prose(text: str, *, html_mode: bool) -> tuple[str, list[int]]:
    """The readable text of a template and, for each of its characters, the source offset."""
    out: list[str] = []
    offsets: list[int] = []

    def emit(chunk: str, start: int, *, same_offset: bool = False) -> None:
        for i, ch in enumerate(chunk):
            out.append(ch)
            offsets.append(start if same_offset else start + i)

    pos = 0
    for m in _MARKUP[html_mode].finditer(text):
        kind = next(g for g in _KINDS if m.groupdict().get(g) is not None)
        emit(text[pos : m.start()], pos)
        pos = m.end()
        if kind == "django_comment" and (subject := _SUBJECT.fullmatch(m.group())):
            inner, inner_offsets = prose(subject.group(1), html_mode=False)
            out.extend(inner)
            offsets.extend(m.start() + subject.start(1) + o for o in inner_offsets)
            emit(" ", m.end() - 1)
        elif kind == "entity":
            emit(html.unescape(m.group()), m.start(), same_offset=True)
        elif kind == "tag" and (t := _TRANS.match(m.group())):
            # {% trans "…" %} renders its string: that is prose the recipient reads.
            group = 1 if t.group(1) is not None else 2
            emit(t.group(group), m.start() + t.start(group))
            emit(" ", m.end() - 1)
        elif kind == "element" and m.group("name").lower() in _INLINE_TAGS:
            pass  # inline markup may sit inside a word: <b>il</b>legal is still "illegal"
        else:
            emit(" ", m.start())  # block boundaries separate words
    emit(text[pos:], pos)
    return "".join(out), offsets


def _fold(text: str, language: str) -> str:
    """Lower-case, one character for one, so offsets survive; Greek also loses its accents."""
    chars = []
    for ch in text:
        low = ch.lower()
        if len(low) != 1:
            low = ch
        if language == "el":
            base = "".join(
                c for c in unicodedata.normalize("NFD", low) if not unicodedata.combining(c)
            )
            low = base if len(base) == 1 else low
            low = "σ" if low == "ς" else low
        chars.append(low)
    return "".join(chars)


# ---------------------------------------------------------------------------------------------
# The check.
# ---------------------------------------------------------------------------------------------


def reason_for(concept: str) -> str:
    return f"{CATEGORY.get(concept, LEGAL)}: '{concept}'"


def check_text(
    text: str, language: str, *, html_mode: bool | None = None, field: str = ""
) -> list[ToneIssue]:
    """Accusatory or legal-threat passages in `text`, in source order."""
    language = normalize_language(language)
    if html_mode is None:
        html_mode = looks_like_html(text)
    return list(_check_text(text, language, html_mode, field))


# The rules are fixed for the life of the process, so a text's answer is too: a template is
# checked when saved and again when approved, and loading the shipped templates checks 96 of them.
@functools.lru_cache(maxsize=1024)
def _check_text(text: str, language: str, html_mode: bool, field: str) -> tuple[ToneIssue, ...]:
    readable, offsets = prose(text, html_mode=html_mode)
    folded = _fold(readable, language)

    hits: list[tuple[int, int, str]] = []
    for concept, pattern in _COMPILED[language]:
        hits.extend(
            (m.start(), m.end(), concept) for m in pattern.finditer(folded) if m.end() > m.start()
        )
    allowed = [m.span() for p in _ALLOW_COMPILED[language] for m in p.finditer(folded)]
    allowed += [m.span() for m in _ADDRESS.finditer(folded)]
    hits = [h for h in hits if not any(a <= h[0] and h[1] <= b for a, b in allowed)]
    # Overlapping rules ("we will take legal action" and "legal action") make one passage,
    # named after the rule that starts first (and is widest there).
    hits.sort(key=lambda h: (h[0], -(h[1] - h[0])))
    kept: list[tuple[int, int, str]] = []
    for start, end, concept in hits:
        if kept and start < kept[-1][1]:
            kept[-1] = (kept[-1][0], max(end, kept[-1][1]), kept[-1][2])
        else:
            kept.append((start, end, concept))

    line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    issues = []
    for start, end, concept in kept:
        source_offset = offsets[start]
        line = bisect.bisect_right(line_starts, source_offset)
        issues.append(
            ToneIssue(
                line=line,
                column=source_offset - line_starts[line - 1] + 1,
                phrase=" ".join(readable[start:end].split()),
                reason=reason_for(concept),
                field=field,
            )
        )
    return tuple(issues)


def language_from_path(path: str | Path) -> str | None:
    """The innermost `<lang>/` folder of a path (templates/letters/de/initial.html -> de)."""
    for part in reversed(Path(path).parts[:-1]):
        code = part.lower().replace("_", "-")
        if code in RULES:
            return code
    return None


def check_file(path: str | Path, language: str | None = None) -> list[ToneIssue]:
    path = Path(path)
    if language is None:
        language = language_from_path(path)
        if language is None:
            raise LanguageNotFound(f"{path}: no <lang>/ folder in the path; give the language")
    text = path.read_text(encoding="utf-8")
    html_mode = path.suffix.lower() in {".html", ".htm"} or looks_like_html(text)
    return check_text(text, language, html_mode=html_mode)


def tone_problems_for_template(template: Any) -> list[ToneIssue]:
    """Problems in a LetterTemplate-like object (subject, body_html, body_text, language)."""
    language = template.language
    fields: Iterable[tuple[str, str, bool]] = (
        ("subject", template.subject or "", False),
        ("body_html", template.body_html or "", True),
        ("body_text", getattr(template, "body_text", "") or "", False),
    )
    issues: list[ToneIssue] = []
    for field, text, html_mode in fields:
        issues.extend(check_text(text, language, html_mode=html_mode, field=field))
    return issues
