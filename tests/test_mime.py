"""The composer's bytes, read back by the email package: what we wrote is what a client sees."""

import datetime as dt
from email import message_from_bytes, policy
from email.header import decode_header, make_header

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from drip.core.mime import Attachment, Mailbox, Message, compose
from drip.core.values import InvalidValue

DATE = dt.datetime(2027, 1, 11, 14, 0, tzinfo=dt.UTC)

# Anything a person may type in a name or subject, minus what validation refuses before composing.
# (Validation also folds every run of whitespace in a name or subject into one space.)
safe_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc", "Zl", "Zp", "Zs"], include_characters=" "),
    min_size=1,
    max_size=150,
).filter(lambda s: "=?" not in s and s == " ".join(s.split()))
body_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=3000)


def message(**overrides) -> Message:
    values = dict(
        sender=Mailbox("Northwind Communications", "comms@northwind.example"),
        to=Mailbox("Ana Ruiz", "ana@example.com"),
        subject="Crawl: your LinkedIn profile",
        date=DATE,
        message_id="<d42.abc@northwind.example>",
        text="Hello Ana,\n\nCreate your profile: https://drip.example/done/x\n",
        html="<html><body><p>Hello Ana,</p></body></html>",
        boundary_seed="42",
    )
    values.update(overrides)
    return Message(**values)


def lines(text: str, final: bool = False) -> str:
    """Text with LF line ends; ``final`` adds the line end the composer gives a last line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text + "\n" if final and not text.endswith("\n") else text


def decoded_display_name(data: bytes, field: str = "To") -> str:
    """A header's display name, decoded by the RFC 2047 rules (adjacent words join)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode().replace("\r\n ", " ")
    to = next(line for line in head.split("\r\n") if line.startswith(f"{field}: "))[len(field) + 2 :]
    return str(make_header(decode_header(to.rsplit(" <", 1)[0])))


def parse(data: bytes):
    return message_from_bytes(data, policy=policy.default)


@settings(max_examples=300, deadline=None)
@given(name=safe_text, subject=safe_text, text=body_text, html=body_text)
def test_round_trip(name: str, subject: str, text: str, html: str) -> None:
    data = compose(message(to=Mailbox(name, "ana@example.com"), subject=subject, text=text, html=html))
    assert data.isascii()
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    parsed = parse(data)
    assert not parsed.defects
    assert str(parsed["subject"]) == subject
    (to,) = parsed["to"].addresses
    assert to.addr_spec == "ana@example.com"
    # Python's address parser puts a space between adjacent encoded-words of a display name, which
    # RFC 2047 (section 6.2) says to ignore; decode the raw header as the RFC says instead.
    displayed = to.display_name if name.isascii() else decoded_display_name(data)
    assert displayed == name
    assert lines(parsed.get_body(("plain",)).get_content()) == lines(text, final=True)
    assert lines(parsed.get_body(("html",)).get_content()) == lines(html, final=True)


def test_headers_of_a_full_message() -> None:
    ics = b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"
    data = compose(
        message(
            cc=(Mailbox("Priya Nair", "priya@example.com"),),
            reply_to=Mailbox("Comms", "comms@northwind.example"),
            headers=(
                (
                    "List-Unsubscribe",
                    "<https://drip.example/unsubscribe/"
                    + "a" * 34
                    + ">, <mailto:comms@northwind.example?subject=unsubscribe>",
                ),
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
                ("X-Drip-Step", "short-reminder"),
            ),
            attachments=(Attachment("text/calendar; charset=utf-8; method=PUBLISH", "deadline.ics", ics),),
        )
    )
    parsed = parse(data)
    assert parsed.get_content_type() == "multipart/mixed"
    assert [p.get_content_type() for p in parsed.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/calendar",
    ]  # fmt: skip
    assert parsed["Cc"].addresses[0].addr_spec == "priya@example.com"
    assert parsed["Reply-To"].addresses[0].addr_spec == "comms@northwind.example"
    assert parsed["Message-ID"] == "<d42.abc@northwind.example>"
    assert parsed["Date"].datetime == DATE
    assert str(parsed["List-Unsubscribe"]).startswith("<https://drip.example/unsubscribe/")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    (calendar,) = list(parsed.iter_attachments())
    assert calendar.get_filename() == "deadline.ics" and calendar.get_content() == ics.decode()
    # Lines stay within 78 octets wherever a space allows a fold (a long URL does not).
    for line in data.split(b"\r\n\r\n")[0].split(b"\r\n"):
        assert len(line) <= 78 or b" " not in line.strip()[len(line.split(b":")[0]) + 2 :], line


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Ruiz, Ana", '"Ruiz, Ana" <ana@example.com>'),
        ('A "Boss" B', '"A \\"Boss\\" B" <ana@example.com>'),
        ("", "ana@example.com"),
    ],
)
def test_display_names_that_need_quoting(name: str, expected: str) -> None:
    data = compose(message(to=Mailbox(name, "ana@example.com")))
    assert f"To: {expected}".encode() in data
    assert parse(data)["to"].addresses[0].display_name == name


def test_international_domain_goes_out_as_idna() -> None:
    data = compose(message(to=Mailbox("Jörg", "jorg@bücher.example")))
    assert parse(data)["to"].addresses[0].addr_spec == "jorg@xn--bcher-kva.example"


@pytest.mark.parametrize(
    "field",
    [
        {"subject": "Hi\r\nBcc: victim@example.com"},
        {"subject": "=?utf-8?q?=0D=0ABcc:_x@example.com?="},
        {"to": Mailbox("Ana\nBcc: x@example.com", "ana@example.com")},
        {"to": Mailbox("Ana", "ana@example.com\r\nBcc: x@example.com")},
        {"headers": (("X-Drip-Step", "a\r\nBcc: x@example.com"),)},
    ],
)
def test_header_injection_is_refused(field: dict) -> None:
    with pytest.raises((InvalidValue, ValueError)):
        compose(message(**field))


def test_a_line_starting_from_is_protected_and_dots_survive() -> None:
    text = "From here on\n.\nend\n"
    data = compose(message(text=text))
    assert b"\r\nFrom " not in data
    assert lines(parse(data).get_body(("plain",)).get_content()) == text


@pytest.mark.parametrize("field", ["name", "subject"])
def test_a_very_long_word_is_encoded_so_lines_stay_under_998(field: str) -> None:
    long = "A" * 1200
    values = {"to": Mailbox(long, "ana@example.com")} if field == "name" else {"subject": long}
    data = compose(message(**values))
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    parsed = parse(data)
    assert (decoded_display_name(data) if field == "name" else str(parsed["subject"])) == long


@settings(max_examples=60, deadline=None)
@given(
    name=safe_text,
    note=body_text,
    original_body=st.text(st.characters(blacklist_categories=["Cs"]), max_size=300),
    line_end=st.sampled_from([b"\n", b"\r\n"]),
)
def test_a_forward_carries_the_original_whole(
    name: str, note: str, original_body: str, line_end: bytes
) -> None:
    from drip.core.mime import Forward, compose_forward

    original = line_end.join(
        [b"From: Ana <ana@example.com>", b"Subject: Re: your goal", b"Message-ID: <a.1@example.com>",
         b"Content-Type: text/plain; charset=utf-8", b"", *original_body.encode().splitlines()]
    )  # fmt: skip
    data = compose_forward(
        Forward(
            sender=Mailbox("Comms", "comms@example.com"),
            to="owner@example.com",
            reply_to=Mailbox(name, "ana@example.com"),
            subject=f"Reply from {name}",
            date=dt.datetime(2027, 1, 13, 16, tzinfo=dt.UTC),
            message_id="<f.1@example.com>",
            note=note,
            original=original,
        )
    )
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF throughout
    message = message_from_bytes(data, policy=policy.default)
    assert not message.defects and message["Auto-Submitted"] == "auto-forwarded"
    shown = message["Reply-To"].addresses[0].display_name
    assert (shown if name.isascii() else decoded_display_name(data, "Reply-To")) == name
    text, attached = message.iter_parts()
    assert text.get_content().replace("\r\n", "\n").rstrip("\n") == note.replace("\r\n", "\n").replace(
        "\r", "\n"
    ).rstrip("\n")
    assert attached.get_content_type() == "message/rfc822"
    inner = attached.get_content()
    assert inner["Message-ID"] == "<a.1@example.com>" and inner["Subject"] == "Re: your goal"
    sent_body = inner.get_payload(decode=True).decode().replace("\r\n", "\n").rstrip("\n")
    assert sent_body == b"\n".join(original_body.encode().splitlines()).decode().rstrip("\n")


@settings(max_examples=50, deadline=None)
@given(data=st.binary(min_size=0, max_size=4000) | st.binary(min_size=58, max_size=4000))
@example(data=b"x" * 500)  # several base64 lines
def test_attachments_of_any_size_keep_every_line_end_crlf(data: bytes) -> None:
    """A bare LF is refused by strict relays (and is how SMTP smuggling starts); lines stay under 998."""
    composed = compose(message(attachments=(Attachment("application/octet-stream", "report.bin", data),)))
    assert b"\n" not in composed.replace(b"\r\n", b"")
    assert max(len(line) for line in composed.split(b"\r\n")) <= 998
    (attached,) = list(parse(composed).iter_attachments())
    assert attached.get_content() == data


def encodings(data: bytes) -> list[str]:
    return [part["content-transfer-encoding"] for part in parse(data).walk() if not part.is_multipart()]


def test_plain_ascii_bodies_go_as_they_are() -> None:
    text = "Hello Ana,\n\n. a line that is only a dot follows\n.\nhttps://drip.example/done/x?a=1&b=2\n"
    html = '<p style="color:#123">Hello&#8199; Ana</p>\n<a href="https://x.example/?a=1">go</a>'
    data = compose(message(text=text, html=html))
    assert encodings(data) == ["7bit", "7bit"]
    assert html.replace("\n", "\r\n").encode() in data  # byte for byte, nothing escaped
    parsed = parse(data)
    assert lines(parsed.get_body(("plain",)).get_content()) == text
    assert lines(parsed.get_body(("html",)).get_content()) == lines(html, final=True)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("Grüße, Zoë\n", "not ASCII"),
        ("a line with a blank at its end \nnext\n", "a trailing blank a relay may strip"),
        ("a tab at the end\t\nnext\n", "a trailing tab"),
        ("From here on\n", "From at the start of the body"),
        ("first\nFrom here on\n", "From at the start of a line"),
        ("x" * 901 + "\n", "a line too long"),
        ("bell \x07 and NUL \x00\n", "control characters"),
        ("--=_drip_42_alt\nlooks like our boundary\n", "boundary-like text"),
    ],
)
def test_bodies_that_cannot_go_as_they_are_are_quoted_printable(body: str, why: str) -> None:
    data = compose(message(text=body, html=body))
    assert encodings(data) == ["quoted-printable", "quoted-printable"], why
    assert all(len(line) <= 78 for line in data.split(b"\r\n"))
    parsed = parse(data)
    assert not parsed.defects
    assert lines(parsed.get_body(("plain",)).get_content()) == lines(body, final=True)
