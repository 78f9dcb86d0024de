"""Languages: tags, which variant of a template a tag takes, dates and counts, fixed strings.

Pure apart from reading a program's strings files. A participant's language is
a BCP 47 tag (``de``, ``ja``, ``fr-CA``) that Babel's copy of the Unicode CLDR
knows. For each step drip looks for the template written for that tag, then
for its base language, then takes the program's own (``welcome.fr-CA.html``,
``welcome.fr.html``, ``welcome.html``); the email is in the language of the
template it took, with dates written as the participant's region writes them
when the template is in their language (``fr-CA`` reading ``welcome.fr.html``).

Fixed strings (the layout's button and footer, goal titles) are looked up by
their English text in ``strings.LANG.toml`` beside the templates, the exact tag
first, then the base language; a string with no translation stays as written.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime, match_skeleton
from babel.units import format_unit

from drip.core.errors import CohortError, Problem
from drip.core.values import InvalidValue

#: the language a program is written in when program.toml does not say
DEFAULT_LANGUAGE = "en"
#: the languages drip's own words (link pages, calendar entries) are written in
SHIPPED_LANGUAGES = ("en", "de", "fr", "es", "ja")
#: the shape of a tag drip accepts: a language of 2 or 3 letters, then script, region, variants
_TAG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")


@functools.lru_cache(maxsize=512)
def language_tag(text: str) -> str:
    """Return ``text`` as a canonical BCP 47 tag (``fr-ca`` -> ``fr-CA``).

    Raises InvalidValue for what is not a tag, or names a language or region
    the CLDR does not know (so no dates could be written in it).
    """
    given = text.strip().replace("_", "-")
    if not _TAG.match(given):
        raise InvalidValue(f"{text!r} is not a language tag; write one like de, ja, es-MX or fr-CA")
    try:
        locale = Locale.parse(given, sep="-")
    except (UnknownLocaleError, ValueError):
        raise InvalidValue(
            f"{text!r} is not a language drip knows; write a BCP 47 tag like de, ja, es-MX or fr-CA"
        ) from None
    return "-".join(part for part in (locale.language, locale.script, locale.territory) if part)


def fallbacks(tag: str) -> tuple[str, ...]:
    """Return ``tag`` and the shorter tags it falls back to: ``zh-Hant-TW``, ``zh-Hant``, ``zh``."""
    parts = tag.split("-")
    return tuple("-".join(parts[:size]) for size in range(len(parts), 0, -1))


def base_language(tag: str) -> str:
    return tag.split("-", 1)[0]


def display_name(tag: str, in_language: str = DEFAULT_LANGUAGE) -> str:
    """Return the language's name (``German``, ``French (Canada)``), in English unless told."""
    name = Locale.parse(tag, sep="-").get_display_name(Locale.parse(in_language, sep="-"))
    return name or tag


#: languages written without spaces between words: fragments join with nothing between them
_UNSPACED = frozenset({"ja", "zh", "th", "lo", "km", "my"})


def word_space(tag: str) -> str:
    """Return what goes between two sentences or fragments: a space, or nothing in Japanese or Chinese."""
    return "" if base_language(tag) in _UNSPACED else " "


def text_direction(tag: str) -> str:
    """Return ``rtl`` for a language written right to left (Arabic, Hebrew), else ``ltr``."""
    return "rtl" if _locale(tag).character_order == "right-to-left" else "ltr"


# --- dates and counts ----------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _locale(tag: str) -> Locale:
    return Locale.parse(tag, sep="-")


#: a run of one pattern letter, or a quoted literal (left as it is)
_FIELD = re.compile(r"'(?:[^']|'')*'|([A-Za-z])\1*")


@functools.lru_cache(maxsize=64)
def _pattern(tag: str, skeleton: str) -> str:
    """Return the locale's pattern for ``skeleton``, its weekday and month written out in full.

    CLDR often has only the abbreviated form (German ``E, d. MMMM``); its own
    rules say to widen the fields to the skeleton's, which Babel does not do.
    """
    locale = _locale(tag)
    matched = match_skeleton(skeleton, locale.datetime_skeletons)
    pattern = locale.datetime_skeletons[matched].pattern if matched else "d MMMM"

    def widen(match: re.Match[str]) -> str:
        letter = match[1]
        if letter in ("E", "c") and "E" in skeleton:
            return "EEEE"
        if letter in ("M", "L") and len(match[0]) >= 3:
            return letter * 4
        return match[0]

    return _FIELD.sub(widen, pattern)


#: a space Babel puts between a number and a CJK unit ("3 日"), which those languages do not write
_CJK_SPACE = re.compile(r"(?<=\d)[ \u00a0\u202f](?=[\u3000-\u9fff])")


@functools.lru_cache(maxsize=8192)  # a cohort's people share a few dozen dates
def long_date(value: dt.date, tag: str) -> str:
    """Weekday, day and month: "Monday 1 March", "Montag, 1. März", "3月1日月曜日"."""
    return _format(value, _pattern(tag, "MMMMEEEEd"), tag)


@functools.lru_cache(maxsize=8192)
def short_date(value: dt.date, tag: str) -> str:
    """Day and month: "1 March", "1. März", "3月1日"."""
    return _format(value, _pattern(tag, "MMMMd"), tag)


@functools.lru_cache(maxsize=8192)
def day_count(count: int, tag: str) -> str:
    """A number of days: "1 day", "3 Tage", "3日"."""
    return _CJK_SPACE.sub("", format_unit(count, "duration-day", length="long", locale=_locale(tag)))


def _format(value: dt.date, pattern: str, tag: str) -> str:
    moment = dt.datetime(value.year, value.month, value.day, 12)
    return format_datetime(moment, pattern, locale=_locale(tag))


# --- fixed strings ------------------------------------------------------------------------

STRINGS_FILE = "strings.{}.toml"


def _placeholders(text: str) -> set[str] | None:
    """Return the ``{name}`` fields of ``text``; None if it holds anything else in braces."""
    names = set()
    try:
        for _, name, spec, conversion in string.Formatter().parse(text):
            if name is None:
                continue
            if not name.isidentifier() or spec or conversion:
                return None
            names.add(name)
    except ValueError:
        return None
    return names


def _key(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class Strings:
    """One language's fixed strings, by their English text; what it lacks stays English."""

    language: str
    table: Mapping[str, str] = field(default_factory=dict)
    #: the files read, for the checks at ``drip start``
    files: tuple[Path, ...] = ()

    def get(self, text: str) -> str:
        return self.table.get(_key(text), text)

    def has(self, text: str) -> bool:
        return _key(text) in self.table

    def format(self, text: str, **values: str) -> str:
        return self.get(text).format(**values)


def load_strings(folder: Path, tag: str) -> Strings:
    """Read ``strings.<tag>.toml`` and the files of its fallbacks from ``folder``; the exact tag wins.

    Raises CohortError naming the file and key of a value that is not text, or
    whose ``{placeholders}`` differ from the English.
    """
    table: dict[str, str] = {}
    files = []
    problems: list[Problem] = []
    for candidate in reversed(fallbacks(tag)):
        path = folder / STRINGS_FILE.format(candidate)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        except FileNotFoundError:
            continue
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CohortError([Problem(str(path), f"not valid TOML: {exc}")]) from None
        files.append(path)
        for english, said in data.items():
            expected = _placeholders(english)
            if not isinstance(said, str) or not said.strip():
                problems.append(Problem(str(path), "must be text in quotes", key=english))
            elif expected is None:
                problems.append(Problem(str(path), "braces may only hold a {name}", key=english))
            elif not (_placeholders(said) or set()) <= expected or _placeholders(said) is None:
                # a translation may leave a value out (Japanese pages greet nobody by name), never add one
                wanted = ", ".join(f"{{{name}}}" for name in sorted(expected)) or "no {placeholders}"
                problems.append(
                    Problem(
                        str(path), f"the translation may use only {wanted}, as the English does", key=english
                    )
                )
            else:
                table[_key(english)] = said.strip()
    if problems:
        raise CohortError(problems)
    return Strings(tag, table, tuple(files))


@functools.lru_cache(maxsize=64)
def own_strings(tag: str) -> Strings:
    """Return drip's own fixed strings in ``tag`` (calendar entries, link pages), from drip/core."""
    return load_strings(Path(__file__).parent, tag)


def page_language(tag: str) -> str:
    """Return the language of a page for ``tag``: the reader's where drip has its words, else English."""
    return tag if base_language(tag) in SHIPPED_LANGUAGES else DEFAULT_LANGUAGE
