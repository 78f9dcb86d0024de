"""Reading the words of a reply: done, not done, in doubt, or something else.

The rules are data, in ``wording.toml`` beside this module (its header says
how they apply); this module is the small engine that applies them. It is
pure: text in, a ``Reading`` out, naming the rule that decided. A reply to a
monthly check-in is read apart, for a plain yes or no: ``read_answer`` gives an
``Answered``, with the same blockers and the same care.

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
from itertools import groupby
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
    "conditional", "question", "complaint", "away", "ignore", "yes", "yes_alone", "no", "no_alone", "unsure",
)  # fmt: skip
#: categories that put a reply in doubt wherever they occur, in the order their rule is named
_DOUBTS = ("away", "complaint", "hedge", "future", "conditional")
#: the same for a check-in's answer, where "but" or "still" leave a plain yes or no as it is
_ANSWER_DOUBTS = ("away", "complaint", "unsure", "future", "conditional")
_NO_WORDS = "no words of their own"
_QUESTION_MARK = "question: a question mark"

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


class Said(StrEnum):
    """What a reply to a check-in ("What did you share this month?") answers."""

    YES = "yes"
    NO = "no"
    #: a question, a doubt, a plan, both a yes and a no, or neither: a person reads it
    UNCLEAR = "unclear"
    EMPTY = "empty"


@dataclass(frozen=True)
class Answered:
    """A check-in reply's answer, and why."""

    said: Said
    #: the rule that decided, for the event log: "yes: 'posted' (English)"
    rule: str


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

    def _beside(self, other: _Hit) -> bool:
        return self.phrase.characters == other.phrase.characters

    def within(self, others: Iterable[_Hit]) -> bool:
        """Say whether this hit is part of one of ``others`` ("once" in "just once")."""
        return any(self._beside(o) and o.start <= self.start and self.end <= o.end for o in others)

    def overlaps(self, others: Iterable[_Hit]) -> bool:
        """Say whether this hit shares a word or character with one of ``others``."""
        return any(self._beside(o) and o.start < self.end and self.start < o.end for o in others)


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
        #: every phrase by its words, as a word phrase: for a clause that is nothing but the phrase
        self.whole = {
            words: _Phrase(p.text, p.language, False, words)
            for p in reversed(phrases)
            if (words := tuple(_WORD.findall(p.text)))
        }

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

    def in_clauses(self, tokens: Sequence[str], clauses: Sequence[int]) -> Iterator[_Hit]:
        """Yield each phrase that is a clause to itself ("Si, compartí dos", "はい、投稿しました")."""
        if not self.whole:
            return
        for _, group in groupby(range(len(tokens)), key=clauses.__getitem__):
            indexes = list(group)
            words = tuple(tokens[indexes[0] : indexes[-1] + 1])
            phrase = self.whole.get(words)
            if phrase is not None:
                yield _Hit(phrase, indexes[0], indexes[-1] + 1, " ".join(words))

    def first(
        self, tokens: Sequence[str], text: str, wide: bool, besides: Sequence[_Hit] = ()
    ) -> _Hit | None:
        """Return the first phrase of a sentence, in its words or (for wide text) its characters,
        leaving out any that is part of a phrase ``besides`` it."""
        hit = next((h for h in self.in_words(tokens) if not h.within(besides)), None)
        if hit is not None or not wide:
            return hit
        return next((h for h in self.in_characters(text) if not h.within(besides)), None)


@dataclass
class _Sentence:
    text: str
    tokens: list[str]
    #: the clause each token is in
    clauses: list[int]


@dataclass
class _Reply:
    """A reply's words made ready to read: folded, links and (in wide text) pleasantries taken out, in
    sentences."""

    text: str
    #: written at least partly without spaces, or with symbols: phrases of characters are looked for
    wide: bool
    sentences: list[_Sentence]

    def asks(self) -> str | None:
        """Return the rule when the reply holds a question mark."""
        return _QUESTION_MARK if "?" in self.text or "¿" in self.text else None


@dataclass(frozen=True)
class _Answer:
    """What one sentence of a check-in reply says: the rules of its first yes and its first no, and of
    what puts it in doubt."""

    yes: str | None
    no: str | None
    doubt: str | None


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
        reply = self._reply(text)
        if self._silent(reply, "done"):
            return Reading(Verdict.EMPTY, _NO_WORDS)
        wide = reply.wide
        doubt = reply.asks()
        done: _Hit | None = None
        for sentence in reply.sentences:
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
            doubt = doubt or self._doubt(sentence, _DOUBTS, wide)
            if hits and done is None:
                done = hits[0]
        if doubt is not None:
            return Reading(Verdict.DOUBT, doubt)
        if done is not None:
            return Reading(Verdict.DONE, self._rule("done", done), done.said)
        return Reading(Verdict.OTHER, "no done phrase")

    def read_answer(self, text: str) -> Answered:
        """Say whether ``text`` (a reply's own words to a check-in: "What did you share this month?")
        answers yes or no. Anything short of a plain yes or a plain no is UNCLEAR."""
        reply = self._reply(text)
        if self._silent(reply, "yes", "no"):
            return Answered(Said.EMPTY, _NO_WORDS)
        doubt, yes, no = reply.asks(), None, None
        for sentence in reply.sentences:
            found = self._answer_in(sentence, reply.wide)
            doubt, yes, no = doubt or found.doubt, yes or found.yes, no or found.no
        if doubt is not None:
            return Answered(Said.UNCLEAR, doubt)
        if yes is not None and no is not None:
            return Answered(Said.UNCLEAR, f"{yes}, but {no}")
        if yes is not None:
            return Answered(Said.YES, yes)
        if no is not None:
            return Answered(Said.NO, no)
        return Answered(Said.UNCLEAR, "no yes or no")

    def away(self, subject: str) -> str | None:
        """Return the rule when a subject is an out-of-office notice's ("Out of Office: ...")."""
        text = normalize(subject)
        wide = not text.isascii()
        found = self.categories["away"].first(_WORD.findall(text), text, wide)
        return None if found is None else self._rule("away", found)

    # --- the steps -----------------------------------------------------------------

    def _reply(self, text: str) -> _Reply:
        """Fold a reply, take out its links (and, in wide text, its pleasantries) and cut it into
        sentences."""
        text = _LINKS.sub(" ", normalize(text))
        wide = not text.isascii()
        ignore = self.categories["ignore"]
        if wide and ignore.regex is not None:
            text = ignore.regex.sub(" ", text)
        sentences = [self._sentence(part, ignore) for part in _SENTENCES.split(text) if part.strip()]
        return _Reply(text, wide, sentences)

    def _silent(self, reply: _Reply, *categories: str) -> bool:
        """Say whether a reply has no words, nor a symbol of ``categories`` ("✅")."""
        if any(sentence.tokens for sentence in reply.sentences):
            return False
        symbols = (self.categories[category].regex for category in categories)
        return not (reply.wide and any(regex is not None and regex.search(reply.text) for regex in symbols))

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

    def _answer_in(self, sentence: _Sentence, wide: bool) -> _Answer:
        """Read one sentence of a check-in reply. A yes phrase that shares a word with a no phrase is
        not a yes ("i did" in "did not"); one with a negation in its own clause is a no; a doubt that is
        part of a yes or a no phrase is no doubt ("once" in "just once", "no time" in a plain no)."""
        noes = self._phrases_in(sentence, wide, "no")
        yeses = [hit for hit in self._phrases_in(sentence, wide, "yes") if not hit.overlaps(noes)]
        refusals: list[str] = []
        kept: list[_Hit] = []
        for hit in yeses:
            taken_back = self._negated(sentence, hit, clause=True) or self._denied(sentence, hit, noes)
            if taken_back is None:
                kept.append(hit)
            else:
                refusals.append(taken_back)
        refusals += [self._rule("no", hit) for hit in noes]
        not_yet = self.categories["not_yet"].first(sentence.tokens, sentence.text, wide)
        if not_yet is not None:
            refusals.append(self._rule("not yet", not_yet))
        said = [*noes, *yeses]
        doubt = self._question(sentence, said, wide, said)
        doubt = doubt or self._doubt(sentence, _ANSWER_DOUBTS, wide, said)
        yes = self._rule("yes", kept[0]) if kept else None
        return _Answer(yes, refusals[0] if refusals else None, doubt)

    def _denied(self, sentence: _Sentence, hit: _Hit, noes: Sequence[_Hit]) -> str | None:
        """Return the rule when a no phrase comes right before a (word) yes phrase, in its clause:
        "nothing shared", "havent posted"."""
        for no in noes:
            if not (no.phrase.characters or hit.phrase.characters) and no.end == hit.start:
                if sentence.clauses[no.end - 1] == sentence.clauses[hit.start]:
                    return f"no: '{no.said}' before '{hit.said}' ({self._language(no)})"
        return None

    def _phrases_in(self, sentence: _Sentence, wide: bool, category: str) -> list[_Hit]:
        """Return the phrases of ``category`` in a sentence, with those of ``{category}_alone`` that are
        a clause to themselves: its words in order, then (for wide text) its characters."""
        words = [
            *self.categories[category].in_words(sentence.tokens),
            *self.categories[f"{category}_alone"].in_clauses(sentence.tokens, sentence.clauses),
        ]
        characters = list(self.categories[category].in_characters(sentence.text)) if wide else []
        return [*sorted(words, key=lambda hit: hit.start), *characters]

    def _doubt(
        self, sentence: _Sentence, categories: Sequence[str], wide: bool, besides: Sequence[_Hit] = ()
    ) -> str | None:
        """Return the rule of the first category (in the order given) with a phrase in a sentence that
        is not part of a phrase ``besides`` it."""
        for category in categories:
            found = self.categories[category].first(sentence.tokens, sentence.text, wide, besides)
            if found is not None:
                return self._rule(category, found)
        return None

    def _negated(self, sentence: _Sentence, hit: _Hit, clause: bool = False) -> str | None:
        """Return the rule when a negation takes back a done (or yes) phrase, else None; with
        ``clause``, only a negation in the phrase's own clause counts ("No, but I posted" is not
        "not posted")."""
        language = hit.phrase.language
        if hit.phrase.characters:
            text = sentence.text
            before = text[max(0, hit.start - NEGATION_BEFORE_CHARACTERS) : hit.start]
            after = text[hit.end : hit.end + NEGATION_AFTER_CHARACTERS]
            if clause:
                before, after = _CLAUSES.split(before)[-1], _CLAUSES.split(after)[0]
            for category, nearby in (("negation", before), ("negation_after", after)):
                near = next(self.categories[category].in_characters(nearby, language), None)
                if near is not None:
                    return f"negation: '{near.said}' with '{hit.said}' ({self.languages[language]})"
            return None
        negation = self._before(sentence, hit, "negation", clause)
        if negation is None:
            return None
        return f"negation: '{negation.said}' before '{hit.said}' ({self._language(negation)})"

    def _before(self, sentence: _Sentence, hit: _Hit, category: str, clause: bool = False) -> _Hit | None:
        """Return a phrase of ``category`` among the few words before a (word) done phrase; with
        ``clause``, only in its own clause."""
        start = max(0, hit.start - NEGATION_WORDS)
        while clause and start < hit.start and sentence.clauses[start] != sentence.clauses[hit.start]:
            start += 1
        return next(self.categories[category].in_words(sentence.tokens, start, hit.start), None)

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

    def _question(
        self, sentence: _Sentence, hits: Sequence[_Hit], wide: bool, besides: Sequence[_Hit] = ()
    ) -> str | None:
        """Return the rule when a sentence asks: a question form anywhere in a language written without
        spaces, or a question word opening a sentence that holds a done phrase. A question word right
        before the done phrase opens a statement whose subject was left out: "Is gedaan", "Ist erledigt";
        one that is part of a phrase ``besides`` opens none: "Did not"."""
        question = self.categories["question"]
        if wide:
            found = next(question.in_characters(sentence.text), None)
            if found is not None:
                return self._rule("question", found)
        words = [hit for hit in hits if not hit.phrase.characters]
        opening = next(question.in_words(sentence.tokens, 0, 1), None) if words else None
        if opening is None or opening.within(besides) or any(hit.start == opening.end for hit in words):
            return None
        return self._rule("question", opening)

    def _rule(self, label: str, hit: _Hit) -> str:
        return f"{label}: '{hit.said}' ({self._language(hit)})"

    def _language(self, hit: _Hit) -> str:
        language = hit.phrase.language
        return self.languages.get(language, language)


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


def read_answer(text: str) -> Answered:
    """Say whether ``text`` answers a check-in yes or no, by the rules in wording.toml (DRIP_DONE_WORDS
    plays no part)."""
    return rules().read_answer(text)
