"""Answers to a goal's question: what is kept of what people type or reply, and what is refused."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drip.core.answers import AnswerError, clean, from_reply, web_address
from drip.core.program import AnswerKind, Ask

TEXT = Ask("Which five voices did you pick?")
URL = Ask("Your LinkedIn profile's address", AnswerKind.URL)


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("  Kara Swisher, Ben Thompson  ", "Kara Swisher, Ben Thompson"),
        ("one\r\ntwo\r\n\r\n\r\n\r\nthree", "one\ntwo\n\nthree"),
        ("tab\there  and\u00a0there", "tab here and there"),
        ("bell\x07 and null\x00 and escape\x1b[31m", "bell and null and escape[31m"),
        ("\u202eevil\u202c name \u2066isolated\u2069", "evil name isolated"),
        ("<script>alert(1)</script>", "<script>alert(1)</script>"),  # text: escaped where it is shown
        ("Cafe\u0301", "Café"),
        ("   \n\t ", None),
    ],
)
def test_text_is_kept_as_plain_words(typed: str, kept: str | None) -> None:
    assert clean(typed, TEXT) == kept


def test_text_past_the_limit_is_refused_with_its_length() -> None:
    with pytest.raises(AnswerError) as refused:
        clean("x" * 281, TEXT)
    assert str(refused.value) == "This is 281 characters; the answer takes at most 280."
    assert refused.value.template.startswith("This is {length}") and refused.value.values["limit"] == "280"
    assert clean("x" * 280, TEXT) == "x" * 280
    assert clean("x" * 20, Ask("?", limit=20)) == "x" * 20


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("https://www.linkedin.com/in/margaret-okafor/", "https://www.linkedin.com/in/margaret-okafor/"),
        ("linkedin.com/in/margaret-okafor", "https://linkedin.com/in/margaret-okafor"),
        ("HTTP://Example.com/a?b=c#d", "http://Example.com/a?b=c#d"),
        ("https://bücher.example/profil", "https://bücher.example/profil"),
        ("  https://www.linkedin.com/in/x  ", "https://www.linkedin.com/in/x"),
    ],
)
def test_a_web_address_is_kept(typed: str, kept: str) -> None:
    assert clean(typed, URL) == kept


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("javascript:alert(document.cookie)", "starts with https://"),
        ("JaVaScRiPt:alert(1)", "starts with https://"),
        ("data:text/html,<script>alert(1)</script>", "starts with https://"),
        ("file:///etc/passwd", "starts with https://"),
        ("ftp://example.com/x", "starts with https://"),
        ("https://user:secret@example.com/", "name or password"),
        ("https://my profile", "no spaces"),
        ("not a link", "no spaces"),
        ("localhost/admin", "needs a name such as"),
        ("https://", "needs a name such as"),
        ("https://-bad-.example/", "needs a name such as"),
        ("https://example.com/" + "a" * 300, "at most 280"),
    ],
)
def test_what_is_not_a_web_address_is_refused(typed: str, says: str) -> None:
    with pytest.raises(AnswerError, match=says.replace(".", r"\.").replace("/", "/")):
        clean(typed, URL)


@pytest.mark.parametrize(
    ("words", "said", "kept"),
    [
        ("Done!", "done", None),
        ("done", "done", None),
        ("¡Hecho!", "hecho", None),
        ("完了しました。", "完了", None),
        ("Done! Kara Swisher, Ben Thompson, Stratechery, Axios, FT Alphaville.", "done",
         "Done! Kara Swisher, Ben Thompson, Stratechery, Axios, FT Alphaville."),
        ("Done — Feedly, with all five in it.", "done", "Done — Feedly, with all five in it."),
    ],
)  # fmt: skip
def test_a_reply_answers_with_its_own_words_beyond_the_done_word(
    words: str, said: str, kept: str | None
) -> None:
    assert from_reply(words, TEXT, said) == kept


def test_a_long_reply_is_cut_to_the_limit_not_refused() -> None:
    kept = from_reply("Done. " + "word " * 200, TEXT, "done")
    assert kept is not None and len(kept) == 280 and kept.endswith("…")


@pytest.mark.parametrize(
    ("words", "kept"),
    [
        ("Done, here it is: https://www.linkedin.com/in/james-w.", "https://www.linkedin.com/in/james-w"),
        ("done - linkedin.com/in/james-w", "https://linkedin.com/in/james-w"),
        ("Done! www.linkedin.com/in/james-w", "https://www.linkedin.com/in/james-w"),
        (
            "Done (javascript:alert(1)) https://user:pw@x.example/ https://ok.example/me",
            "https://ok.example/me",
        ),
        ("Done!", None),
    ],
)
def test_a_reply_answers_a_web_address_question_with_its_first_good_address(
    words: str, kept: str | None
) -> None:
    assert from_reply(words, URL, "done") == kept


@given(st.text(max_size=400))
def test_whatever_is_typed_an_answer_kept_is_plain_and_within_the_limit(typed: str) -> None:
    for ask in (TEXT, Ask("?", limit=50)):
        try:
            kept = clean(typed, ask)
        except AnswerError:
            continue
        if kept is None:
            continue
        assert len(kept) <= ask.limit and kept == kept.strip()
        assert not any(unicodedata.category(c) == "Cc" and c != "\n" for c in kept)
        assert not any(0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069 for c in kept)
    replied = from_reply(typed, TEXT, None)
    assert replied is None or len(replied) <= TEXT.limit


@given(st.text(max_size=200))
def test_a_kept_web_address_is_always_http_or_https(typed: str) -> None:
    try:
        kept = web_address(typed, 280)
    except AnswerError:
        return
    assert kept.startswith(("http://", "https://")) and not any(c.isspace() for c in kept)
