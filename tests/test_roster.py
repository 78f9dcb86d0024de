"""Property: any roster a spreadsheet could write reads back as the people in it."""

import csv
import datetime as dt
import io
import unicodedata
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drip.launch.roster import read_roster

names = st.text(
    st.characters(
        codec="utf-8", categories=["L", "M", "N", "P", "Zs", "S"], exclude_characters="\u2028\u2029\x85"
    ),
    min_size=1,
    max_size=40,
).filter(lambda n: n.strip() and "=?" not in n)
local_parts = st.from_regex(r"[a-z][a-z0-9._+-]{0,15}[a-z0-9]", fullmatch=True).filter(
    lambda s: ".." not in s
)
people = st.lists(
    st.tuples(local_parts, names, st.sampled_from(["", "Asia/Tokyo", "Europe/London"])),
    min_size=1,
    max_size=12,
    unique_by=lambda p: p[0],
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=people,
    delimiter=st.sampled_from([",", ";", "\t"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    padding=st.sampled_from(["", " ", "  "]),
    trailing_blank_rows=st.integers(0, 3),
)
def test_spreadsheet_rosters_read_back(
    tmp_path: Path, rows, delimiter: str, encoding: str, newline: str, padding: str, trailing_blank_rows: int
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=newline)
    writer.writerow(["Email", "Name", "Time Zone", "Objective"])
    for local, name, zone in rows:
        writer.writerow([f"{padding}{local}@example.com", f"{padding}{name}", zone, "sales"])
    for _ in range(trailing_blank_rows):
        writer.writerow([""] * 4)
    path = tmp_path / "roster.csv"
    path.write_bytes(buffer.getvalue().encode(encoding))

    roster = read_roster(
        path,
        goal_keys=("short",),
        default_timezone="UTC",
        start=dt.date(2027, 1, 11),
        deadlines={"short": dt.date(2027, 2, 1)},
    )

    assert roster.problems == []
    assert [p.email for p in roster.participants] == [f"{local}@example.com" for local, _, _ in rows]
    # Names come back in Unicode NFC (macOS and some exports write decomposed accents), each run of
    # spaces made one plain space.
    expected = [" ".join(unicodedata.normalize("NFC", name).split()) for _, name, _ in rows]
    assert [p.name for p in roster.participants] == expected
    assert [p.timezone for p in roster.participants] == [zone or "UTC" for _, _, zone in rows]
    assert [p.row for p in roster.participants] == list(range(2, len(rows) + 2))
