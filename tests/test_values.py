import datetime as dt

import pytest

from drip.core.values import (
    Address,
    InvalidValue,
    check_header_safe,
    parse_clock,
    parse_date,
    parse_date_or_offset,
    parse_email,
    parse_instant,
    parse_mailbox,
    parse_offset,
    parse_timezone,
)


@pytest.mark.parametrize(
    ("text", "days"),
    [("+2w", 14), ("-3d", -3), ("10d", 10), ("+0d", 0), (" + 1 W ", 7)],
)
def test_offsets(text: str, days: int) -> None:
    assert parse_offset(text) == days


@pytest.mark.parametrize("text", ["2 weeks", "+2", "w", "+1m", ""])
def test_bad_offsets_say_how_to_write_one(text: str) -> None:
    with pytest.raises(InvalidValue, match=r'"\+3d"'):
        parse_offset(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2027-03-15", dt.date(2027, 3, 15)),
        ("2027/3/5", dt.date(2027, 3, 5)),
        ("2027-03-15 00:00:00", dt.date(2027, 3, 15)),  # Excel with a zero time
        ("15.03.2027", dt.date(2027, 3, 15)),  # German and Swiss spreadsheets
        ("3/15/2027", dt.date(2027, 3, 15)),  # unambiguous US order
        ("15/3/2027", dt.date(2027, 3, 15)),  # unambiguous day-first order
        ("4/4/2027", dt.date(2027, 4, 4)),
        (dt.date(2027, 3, 15), dt.date(2027, 3, 15)),  # a TOML date
        (dt.datetime(2027, 3, 15), dt.date(2027, 3, 15)),
    ],
)
def test_dates_as_spreadsheets_write_them(value: object, expected: dt.date) -> None:
    assert parse_date(value) == expected


def test_ambiguous_date_offers_both_readings() -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_date("3/4/2027")
    assert "2027-03-04" in str(caught.value) and "2027-04-03" in str(caught.value)


@pytest.mark.parametrize("text", ["2027-02-30", "2027-13-01", "31.04.2027"])
def test_impossible_dates_are_named(text: str) -> None:
    with pytest.raises(InvalidValue, match="not a real date"):
        parse_date(text)


@pytest.mark.parametrize("text", ["9999-12-31", "0001-01-01", "31.12.9999"])
def test_placeholder_dates_are_refused(text: str) -> None:
    with pytest.raises(InvalidValue, match="leave the cell empty"):
        parse_date(text)
    with pytest.raises(InvalidValue, match="not a usable date"):
        parse_date_or_offset("+9999w", dt.date(2027, 1, 11))


def test_slashed_date_that_is_no_date_either_way() -> None:
    with pytest.raises(InvalidValue, match="'13/14/2027' is not a real date"):
        parse_date("13/14/2027")


@pytest.mark.parametrize("text", ["next monday", "2027-03", "15 March"])
def test_unreadable_dates_show_the_format(text: str) -> None:
    with pytest.raises(InvalidValue, match="YYYY-MM-DD"):
        parse_date(text)


def test_date_or_offset_counts_from_start() -> None:
    assert parse_date_or_offset("+2w", dt.date(2027, 1, 11)) == dt.date(2027, 1, 25)
    assert parse_date_or_offset("2027-02-01", dt.date(2027, 1, 11)) == dt.date(2027, 2, 1)


def test_clock() -> None:
    assert parse_clock("9:05") == dt.time(9, 5)
    with pytest.raises(InvalidValue, match="HH:MM"):
        parse_clock("25:00")
    with pytest.raises(InvalidValue, match="HH:MM"):
        parse_clock("9am")


def test_instant_without_offset_is_utc() -> None:
    assert parse_instant("2027-01-11T09:00") == dt.datetime(2027, 1, 11, 9, tzinfo=dt.UTC)
    assert parse_instant("2027-01-11T09:00-05:00") == dt.datetime(2027, 1, 11, 14, tzinfo=dt.UTC)
    assert parse_instant("2027-01-11T09:00Z").tzinfo is dt.UTC
    with pytest.raises(InvalidValue, match="ISO 8601"):
        parse_instant("tomorrow")


@pytest.mark.parametrize(
    ("text", "zone"),
    [
        ("Europe/London", "Europe/London"),
        ("america/new_york", "America/New_York"),
        ("UTC", "UTC"),
        ("Z", "UTC"),
    ],
)
def test_valid_zones_come_back_canonical(text: str, zone: str) -> None:
    assert parse_timezone(text) == zone


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("EST", "America/New_York"),
        ("PST", "America/Los_Angeles"),
        ("GMT", "Europe/London"),
        ("JST", "Asia/Tokyo"),
        ("Eastern Standard Time", "America/New_York"),
        ("Tokyo", "Asia/Tokyo"),
        ("America/New York", "America/New_York"),
        ("Europe/Lodnon", "Europe/London"),
        ("New York", "America/New_York"),
    ],
)
def test_unknown_zones_suggest_the_iana_name(text: str, suggestion: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_timezone(text)
    assert f'"{suggestion}"' in str(caught.value)


@pytest.mark.parametrize("text", ["UTC+2", "GMT-5", "+02:00", "Etc/GMT+5"])
def test_fixed_offsets_are_refused(text: str) -> None:
    with pytest.raises(InvalidValue, match="daylight saving"):
        parse_timezone(text)


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("Ana\r\nBcc: all@example.com", "carriage return"),
        ("Ana\nRuiz", "line break"),
        ("Ana\x00", "NUL"),
        ("=?utf-8?q?Ana?=", '"=?"'),
        ("Ana\x1bRuiz", "U+001B"),
    ],
)
def test_header_unsafe_values_name_the_character(text: str, what: str) -> None:
    with pytest.raises(InvalidValue, match="email header") as caught:
        check_header_safe(text)
    assert what in str(caught.value)


def test_header_safe_values_pass_through() -> None:
    assert check_header_safe("Amélie Laurent, PhD") == "Amélie Laurent, PhD"


def test_emails_are_normalised_and_cleaned() -> None:
    assert parse_email("  ana@Example.COM\u200b ") == "ana@example.com"


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("Ana Ruiz <ana@example.com>", "only the address"),
        ("ana.example.com", "not a valid email"),
        ("ana@", "not a valid email"),
        ("ana@example.com\r\nBcc: x@y.z", "email header"),
        ("jörg@example.com", "not a valid email"),  # no SMTPUTF8: most relays cannot deliver it
    ],
)
def test_bad_emails_say_why(text: str, hint: str) -> None:
    with pytest.raises(InvalidValue, match=hint):
        parse_email(text)


def test_mailbox_splits_name_and_address() -> None:
    assert parse_mailbox('"Comms Team" <comms@example.com>') == ("Comms Team", "comms@example.com")
    assert parse_mailbox("comms@example.com") == ("", "comms@example.com")


def test_names_are_limited_in_length() -> None:
    from drip.core.values import parse_name

    assert parse_name("  Ana   María\u00a0Ruiz ") == "Ana María Ruiz"
    with pytest.raises(InvalidValue, match="at most 200"):
        parse_name("A" * 201)


@pytest.mark.parametrize(
    ("written", "carried"),
    [
        ("komm@example.com", "komm@example.com"),
        ("komm@bücher-gruppe.example", "komm@xn--bcher-gruppe-dlb.example"),
        ("komm@straße.example", "komm@xn--strae-oqa.example"),  # IDNA 2008: ß is kept, not made "ss"
        ("komm@BÜCHER.example", "komm@xn--bcher-kva.example"),  # UTS 46 folds case first
    ],
)
def test_an_address_is_carried_in_headers_with_its_domain_in_idna(written: str, carried: str) -> None:
    assert Address(written).ascii == carried


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ("jörg@example.com", "the part before @ must be ASCII"),
        ("komm@bad\u200d.example", "not a valid internationalised domain"),
        ("komm@example.com\r\nBcc: x@evil.example", "carriage return"),
    ],
)
def test_an_address_that_cannot_be_carried_in_a_header_is_refused(written: str, why: str) -> None:
    with pytest.raises(InvalidValue, match=why):
        _ = Address(written).ascii
