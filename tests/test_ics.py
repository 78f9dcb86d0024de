"""Calendar entries read back by a real iCalendar parser."""

import datetime as dt

import icalendar
from hypothesis import example, given, settings
from hypothesis import strategies as st

from drip.core.ics import deadline_event, fold

STAMP = dt.datetime(2027, 1, 29, 14, 0, tzinfo=dt.UTC)


@given(
    summary=st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=120),
    description=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=400),
)
def test_any_text_reads_back(summary: str, description: str) -> None:
    data = deadline_event(
        uid="g1@example.com", summary=summary, description=description, day=dt.date(2027, 2, 1), stamp=STAMP
    )
    assert all(len(line) <= 75 for line in data.split(b"\r\n"))
    event = icalendar.Calendar.from_ical(data).walk("VEVENT")[0]
    assert str(event["SUMMARY"]) == summary
    assert str(event["DESCRIPTION"]) == description.replace("\r\n", "\n").replace("\r", "\n")


def test_all_day_event_on_the_deadline() -> None:
    data = deadline_event(
        uid="p7-short@drip.example.com", summary="Crawl: LinkedIn", description="Due today.",
        day=dt.date(2027, 2, 1), stamp=STAMP, url="https://drip.example.com/done/abc",
    )  # fmt: skip
    calendar = icalendar.Calendar.from_ical(data)
    assert calendar["METHOD"] == "PUBLISH"
    event = calendar.walk("VEVENT")[0]
    assert event["UID"] == "p7-short@drip.example.com"
    assert event.decoded("DTSTART") == dt.date(2027, 2, 1) and event.decoded("DTEND") == dt.date(2027, 2, 2)
    assert str(event["URL"]) == "https://drip.example.com/done/abc"


@given(name=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60))
@settings(max_examples=500)
@example(name="0 =")
@example(name="^'")
@example(name="Caret ^^ and ^n")
@example(name='Comms; EMEA: Team, \\ "quoted"')
def test_the_organizer_reads_back_for_any_sender_name(name: str) -> None:
    """RFC 5546: a PUBLISH event names its ORGANIZER; the name is quoted, quotes and carets escaped as
    RFC 6868 says, backslashes dropped."""
    data = deadline_event(
        uid="u", summary="s", description="", day=dt.date(2027, 2, 1), stamp=STAMP,
        organizer=(name, "comms@example.com"),
    )  # fmt: skip
    organizer = icalendar.Calendar.from_ical(data).walk("VEVENT")[0]["ORGANIZER"]
    assert str(organizer) == "mailto:comms@example.com"
    kept = "".join(char for char in name if char != "\\" and char.isprintable()).strip()
    assert organizer.params.get("CN", "") == kept


def test_a_later_email_has_a_higher_sequence() -> None:
    def sequence(stamp: dt.datetime) -> int:
        data = deadline_event(uid="u", summary="s", description="", day=dt.date(2027, 2, 1), stamp=stamp)
        return int(icalendar.Calendar.from_ical(data).walk("VEVENT")[0]["SEQUENCE"])

    assert sequence(STAMP + dt.timedelta(minutes=1)) > sequence(STAMP)


def test_folding_never_splits_a_character() -> None:
    line = "SUMMARY:" + "é" * 100
    folded = fold(line)
    for part in folded.split(b"\r\n"):
        part.decode()  # each physical line is valid UTF-8
        assert len(part) <= 75
    assert folded.replace(b"\r\n ", b"").rstrip(b"\r\n").decode() == line
