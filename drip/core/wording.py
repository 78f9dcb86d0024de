"""Reading the words of a reply: done, not done, in doubt, or something else.

The rules are data, in ``wording.toml`` beside this module (its header says
how they apply); this module is the small engine that applies them. It is
pure: text in, a ``Reading`` out, naming the rule that decided.

The engine errs toward doubt: every language's blockers apply to every reply,
so a German "werde" cancels an English "done" in the same message. A reply in
doubt goes to a person; only a plain, unconditional "done" completes a goal.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

RULES_FILE = Path(__file__).with_name("wording.toml")
#: how many words before a done phrase a negation reaches ("I have not quite finished")
NEGATION_WORDS = 4
#: how many characters a negation reaches in languages written without spaces
NEGATION_BEFORE_CHARACTERS = 3
NEGATION_AFTER_CHARACTERS = 8
#: a ``done_alone`` phrase counts in a sentence of at most this many words
ALONE_WORDS = 3

CATEGORIES = (
    "done", "done_alone", "negation", "negation_after", "not_yet", "qualifier", "hedge", "future",
    "conditional", "question", "complaint", "away", "ignore",
)  # fmt: skip
#: categories that put a reply in doubt wherever they occur, in the order their rule is named
_DOUBTS = ("away", "complaint", "hedge", "future", "conditional")

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_LINKS = re.compile(r"(?:https?://|mailto:|www\.)\S+|[^\s<>()\[\]]+@[^\s<>()\[\]]+", re.IGNORECASE)
_SENTENCES = re.compile(r"[.!;。]+|\?+|\n\s*\n")
_CLAUSES = re.compile(r"[,:;()\u2013\u2014、，]|\s-\s")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'", "\ufe0f": None})


class Verdict(StrEnum):
    DONE = "done"
    NOT_DONE = "not done"
    DOUBT = "in doubt"
    #: no done phrase and nothing against one: "Thanks!", a link, a greeting
    OTHER = "other"
    EMPTY = "empty"


@dataclass(frozen=True)
class Reading:
    verdict: Verdict
    #: the rule that decided, for the event log: "done: 'erledigt' (German)"
    rule: str
    #: for a reply read as done, the words that said so, as written ("erledigt")
    said: str | None = None


def normalize(text: str) -> str:
    """Fold text the way the rules are compared: NFKC, case folded, one kind of apostrophe."""
    return unicodedata.normalize("NFKC", text).casefold().translate(_APOSTROPHES)


@dataclass(frozen=True)
class _Phrase:
    """One phrase of the rules: whole words ("not yet", "complain-", "-n't"), or characters (完了, ✅)."""

    text: str
    language: str
    #: matched as a substring: languages written without spaces, and symbols
    characters: bool
    words: tuple[str, ...] = ()
    prefix: bool = False
    suffix: bool = False

    @classmethod
    def of(cls, text: str, language: str, characters: bool) -> _Phrase:
        core = text.strip("- ")
        if not characters and (text.startswith("-") or text.endswith("-")) and " " not in core:
            return cls(text, language, False, (core,), text.endswith("-"), text.startswith("-"))
        words = tuple(_WORD.findall(text.strip("-")))
        if characters or not words or " ".join(words) != " ".join(re.split(r"[\s\-]+", text.strip("- "))):
            return cls(text, language, True)
        return cls(text, language, False, words, text.endswith("-"), text.startswith("-"))

    def at(self, tokens: Sequence[str], index: int) -> bool:
        """Say whether this (word) phrase starts at ``tokens[index]``."""
        if self.prefix and len(self.words) == 1:
            return tokens[index].startswith(self.words[0])
        if self.suffix and len(self.words) == 1:
            return tokens[index].endswith(self.words[0])
        return tuple(tokens[index : index + len(self.words)]) == self.words


@dataclass(frozen=True)
class _Hit:
    phrase: _Phrase
    #: token indexes for words, character offsets for characters
    start: int
    end: int
    said: str


class _Category:
    """All phrases of one category, in every language: word phrases by their first word, the rest as one
    expression of literal strings."""

    def __init__(self, phrases: Sequence[_Phrase]) -> None:
        self.phrases = phrases
        self.by_first: dict[str, list[_Phrase]] = {}
        self.affixes: list[_Phrase] = []
        for phrase in sorted((p for p in phrases if not p.characters), key=lambda p: -len(p.words)):
            if (phrase.prefix or phrase.suffix) and len(phrase.words) == 1:
                self.affixes.append(phrase)
            else:
                self.by_first.setdefault(phrase.words[0], []).append(phrase)
        # One expression for every prefix and suffix: a token is tried once, not once per phrase.
        forms = [
            re.escape(p.words[0]) + r"\w*" if p.prefix else r"\w*" + re.escape(p.words[0])
            for p in self.affixes
        ]
        self.affix = re.compile("|".join(forms)) if forms else None
        literal = sorted((p for p in phrases if p.characters), key=lambda p: -len(p.text))
        self.by_text: dict[str, list[_Phrase]] = {}
        for phrase in literal:
            self.by_text.setdefault(phrase.text, []).append(phrase)
        self.regex = re.compile("|".join(re.escape(p.text) for p in literal)) if literal else None

    def in_words(self, tokens: Sequence[str], start: int = 0, end: int | None = None) -> Iterator[_Hit]:
        """Yield the word phrases found in ``tokens[start:end]``, left to right."""
        stop = len(tokens) if end is None else end
        index = start
        while index < stop:
            token = tokens[index]
            options = self.by_first.get(token)
            found = next((p for p in options if p.at(tokens, index)), None) if options else None
            if found is None and self.affix is not None and self.affix.fullmatch(token):
                found = next((p for p in self.affixes if p.at(tokens, index)), None)
            if found is None or index + len(found.words) > stop:
                index += 1
                continue
            size = len(found.words)
            yield _Hit(found, index, index + size, " ".join(tokens[index : index + size]))
            index += size

    def in_characters(self, text: str, language: str | None = None) -> Iterator[_Hit]:
        """Yield the character phrases found in ``text`` (of ``language`` only, when given)."""
        if self.regex is None:
            return
        for found in self.regex.finditer(text):
            for phrase in self.by_text[found.group()]:
                if language is None or phrase.language == language:
                    yield _Hit(phrase, found.start(), found.end(), found.group())
                    break

    def first(self, tokens: Sequence[str], text: str, wide: bool) -> _Hit | None:
        """Return the first phrase of a sentence, in its words or (for wide text) its characters."""
        hit = next(self.in_words(tokens), None)
        return hit if hit is not None or not wide else next(self.in_characters(text), None)


@dataclass
class _Sentence:
    text: str
    tokens: list[str]
    #: the clause each token is in
    clauses: list[int]


class Rules:
    """The compiled rules of ``wording.toml`` (or another table of the same shape)."""

    def __init__(self, table: Mapping[str, Any], done_words: Iterable[str] | None = None) -> None:
        self.languages = {key: str(entry.get("name", key)) for key, entry in table.items()}
        found: dict[str, list[_Phrase]] = {category: [] for category in CATEGORIES}
        for key, entry in table.items():
            characters = bool(entry.get("characters", False))
            for category in CATEGORIES:
                if done_words is not None and category in ("done", "done_alone"):
                    continue
                for text in entry.get(category, ()):
                    found[category].append(_Phrase.of(normalize(text), key, characters))
        if done_words is not None:
            found["done"] += [_Phrase.of(normalize(word.strip()), "custom", False) for word in done_words]
        self.languages["custom"] = "DRIP_DONE_WORDS"
        self.categories = {category: _Category(phrases) for category, phrases in found.items()}

    def read(self, text: str) -> Reading:
        """Say what ``text`` (a reply's own words) tells about a goal."""
        text = _LINKS.sub(" ", normalize(text))
        wide = not text.isascii()
        ignore = self.categories["ignore"]
        if wide and ignore.regex is not None:
            text = ignore.regex.sub(" ", text)
        sentences = [self._sentence(part, ignore) for part in _SENTENCES.split(text) if part.strip()]
        symbols = self.categories["done"].regex
        if not any(s.tokens for s in sentences) and not (
            wide and symbols is not None and symbols.search(text)
        ):
            return Reading(Verdict.EMPTY, "no words of their own")
        doubt = "question: a question mark" if "?" in text or "¿" in text else None
        done: _Hit | None = None
        for sentence in sentences:
            hits = list(self._done_in(sentence, wide))
            for hit in hits:
                taken_back = self._negated(sentence, hit)
                if taken_back is not None:
                    return Reading(Verdict.NOT_DONE, taken_back)
            not_yet = self.categories["not_yet"].first(sentence.tokens, sentence.text, wide)
            if not_yet is not None:
                return Reading(Verdict.NOT_DONE, self._rule("not yet", not_yet))
            doubt = doubt or self._question(sentence, hits, wide)
            for hit in hits:
                doubt = doubt or self._qualified(sentence, hit)
            for category in _DOUBTS:
                if doubt is None:
                    found = self.categories[category].first(sentence.tokens, sentence.text, wide)
                    doubt = self._rule(category, found) if found is not None else None
            if hits and done is None:
                done = hits[0]
        if doubt is not None:
            return Reading(Verdict.DOUBT, doubt)
        if done is not None:
            return Reading(Verdict.DONE, self._rule("done", done), done.said)
        return Reading(Verdict.OTHER, "no done phrase")

    def away(self, subject: str) -> str | None:
        """Return the rule when a subject is an out-of-office notice's ("Out of Office: ...")."""
        text = normalize(subject)
        wide = not text.isascii()
        found = self.categories["away"].first(_WORD.findall(text), text, wide)
        return None if found is None else self._rule("away", found)

    # --- the steps -----------------------------------------------------------------

    @staticmethod
    def _sentence(text: str, ignore: _Category) -> _Sentence:
        """Split a sentence into its words, each with its clause, leaving out the pleasantries."""
        tokens: list[str] = []
        clauses: list[int] = []
        for number, clause in enumerate(_CLAUSES.split(text)):
            words = _WORD.findall(clause)
            tokens += words
            clauses += [number] * len(words)
        for hit in reversed(list(ignore.in_words(tokens))):
            del tokens[hit.start : hit.end], clauses[hit.start : hit.end]
        return _Sentence(" ".join(text.split()), tokens, clauses)

    def _done_in(self, sentence: _Sentence, wide: bool) -> Iterator[_Hit]:
        """Yield each done phrase of a sentence; a ``done_alone`` phrase only in a clause of its own
        ("Hecho, ya tengo el lector", not "He hecho una lista")."""
        yield from self.categories["done"].in_words(sentence.tokens)
        if wide:
            yield from self.categories["done"].in_characters(sentence.text)
        for hit in self.categories["done_alone"].in_words(sentence.tokens):
            if sentence.clauses.count(sentence.clauses[hit.start]) <= ALONE_WORDS:
                yield hit

    def _negated(self, sentence: _Sentence, hit: _Hit) -> str | None:
        """Return the rule when a negation takes back a done phrase, else None."""
        language = hit.phrase.language
        if hit.phrase.characters:
            text = sentence.text
            before = text[max(0, hit.start - NEGATION_BEFORE_CHARACTERS) : hit.start]
            after = text[hit.end : hit.end + NEGATION_AFTER_CHARACTERS]
            for category, nearby in (("negation", before), ("negation_after", after)):
                near = next(self.categories[category].in_characters(nearby, language), None)
                if near is not None:
                    return f"negation: '{near.said}' with '{hit.said}' ({self.languages[language]})"
            return None
        negation = self._before(sentence, hit, "negation")
        if negation is None:
            return None
        said = self.languages.get(negation.phrase.language, negation.phrase.language)
        return f"negation: '{negation.said}' before '{hit.said}' ({said})"

    def _before(self, sentence: _Sentence, hit: _Hit, category: str) -> _Hit | None:
        """Return a phrase of ``category`` among the few words before a (word) done phrase."""
        return next(
            self.categories[category].in_words(
                sentence.tokens, max(0, hit.start - NEGATION_WORDS), hit.start
            ),
            None,
        )

    def _qualified(self, sentence: _Sentence, hit: _Hit) -> str | None:
        """Return the rule when a word just before a done phrase makes it partial ("mostly done")."""
        if hit.phrase.characters:
            near = next(
                self.categories["qualifier"].in_characters(
                    sentence.text[max(0, hit.start - NEGATION_BEFORE_CHARACTERS) : hit.start]
                ),
                None,
            )
        else:
            near = self._before(sentence, hit, "qualifier")
        return None if near is None else self._rule("qualifier", near)

    def _question(self, sentence: _Sentence, hits: Sequence[_Hit], wide: bool) -> str | None:
        """Return the rule when a sentence asks: a question form anywhere in a language written without
        spaces, or a question word opening a sentence that holds a done phrase. A question word right
        before the done phrase opens a statement whose subject was left out: "Is gedaan", "Ist erledigt"."""
        question = self.categories["question"]
        if wide:
            found = next(question.in_characters(sentence.text), None)
            if found is not None:
                return self._rule("question", found)
        words = [hit for hit in hits if not hit.phrase.characters]
        opening = next(question.in_words(sentence.tokens, 0, 1), None) if words else None
        if opening is None or any(hit.start == opening.end for hit in words):
            return None
        return self._rule("question", opening)

    def _rule(self, label: str, hit: _Hit) -> str:
        language = hit.phrase.language
        return f"{label}: '{hit.said}' ({self.languages.get(language, language)})"


@cache
def _load(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


@cache
def rules(done_words: tuple[str, ...] | None = None, path: Path = RULES_FILE) -> Rules:
    """Return the compiled rules, with ``done_words`` (DRIP_DONE_WORDS) in place of the done phrases."""
    return Rules(_load(path), done_words)


def read(text: str, done_words: Sequence[str] | None = None) -> Reading:
    """Say what ``text`` tells about a goal, by the rules in wording.toml."""
    return rules(tuple(done_words) if done_words is not None else None).read(text)
