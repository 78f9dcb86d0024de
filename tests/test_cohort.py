"""Loading a cohort folder: what a comms person's spreadsheet really looks like, and every mistake in it."""

import datetime as dt
from pathlib import Path

import pytest

from conftest import COHORT_TOML, EMAILS, ROSTER, CohortFactory
from drip.core.errors import CohortError, Problem
from drip.launch.cohort import load_cohort

HEADER = "email,name,timezone,objective\n"


def load(folder: Path):
    return load_cohort(folder, [EMAILS])


def problems_of(folder: Path) -> list[Problem]:
    with pytest.raises(CohortError) as caught:
        load(folder)
    assert "nothing was written" in str(caught.value)
    return list(caught.value.problems)


def only_problem(folder: Path) -> Problem:
    problems = problems_of(folder)
    assert len(problems) == 1, problems
    return problems[0]


def test_valid_cohort(make_cohort: CohortFactory) -> None:
    cohort = load(make_cohort())
    assert cohort.slug == "test-cohort"
    assert cohort.start == dt.date(2027, 1, 11)
    assert cohort.send_time == dt.time(9, 0)
    assert cohort.sender == ("Comms", "comms@example.com")
    assert [p.email for p in cohort.participants] == [
        "ana@example.com",
        "ben@example.com",
        "cleo@example.com",
    ]
    ana = cohort.participants[0]
    assert ana.row == 2 and ana.first_name == "Ana"
    assert ana.fields == {"objective": "sales"}
    assert ana.deadlines == {
        "short": dt.date(2027, 2, 1),
        "mid": dt.date(2027, 3, 1),
        "long": dt.date(2027, 4, 5),
    }


def test_slug_from_toml(make_cohort: CohortFactory) -> None:
    assert load(make_cohort(extra_toml='slug = "q1-leaders"\n')).slug == "q1-leaders"


def test_cohort_deadlines_as_dates_or_offsets(make_cohort: CohortFactory) -> None:
    extra = '[goals.short]\ndeadline = 2027-01-29\n[goals.mid]\ndeadline = "+5w"\n'
    cohort = load(make_cohort(extra_toml=extra))
    assert cohort.deadlines["short"] == dt.date(2027, 1, 29)
    assert cohort.deadlines["mid"] == dt.date(2027, 2, 15)


def test_personal_deadlines_and_delegate(make_cohort: CohortFactory) -> None:
    roster = (
        "email,name,delegate_email,short_deadline,mid_deadline\n"
        "ana@example.com,Ana Ruiz,assistant@example.com,2027-02-08,+8w\n"
    )
    (ana,) = load(make_cohort(roster)).participants
    assert ana.delegate_email == "assistant@example.com"
    assert ana.timezone == "America/New_York"  # the cohort's
    assert ana.deadlines["short"] == dt.date(2027, 2, 8)
    assert ana.deadlines["mid"] == dt.date(2027, 3, 8)
    assert ana.own_deadlines == {"short", "mid"}


def test_skip_steps(make_cohort: CohortFactory) -> None:
    cohort = load(make_cohort(extra_toml='skip_steps = ["policy"]\n'))
    assert "policy" not in [s.key for s in cohort.program.steps]
    problem = only_problem(make_cohort(extra_toml='skip_steps = ["polcy"]\n'))
    assert problem.key == "skip_steps" and "unknown step 'polcy'; did you mean 'policy'" in problem.message


# --- what spreadsheets export ---------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(("\ufeff" + ROSTER).encode("utf-8"), id="utf8-bom"),
        pytest.param(ROSTER.replace("\n", "\r\n").encode(), id="crlf"),
        pytest.param(ROSTER.replace(",", ";").encode(), id="semicolons"),
        pytest.param(ROSTER.replace(",", "\t").encode("utf-16"), id="utf16-tabs"),
        pytest.param((ROSTER + ",,,\n  ,, ,\n\n\r\n").encode(), id="trailing-empty-rows"),
        pytest.param(
            "  Email , Name ,Time Zone, Objective \n"
            " ana@example.com ,  Ana Ruiz ,America/New_York,sales\n"
            'ben@example.com,"Ben Ito",Asia/Tokyo,"marketing, brand"\n'
            "cleo@example.com,Cleo Hart\u00a0,Europe/London,customer service\n".encode(),
            id="spaces-quotes-and-header-case",
        ),
    ],
)
def test_spreadsheet_exports_are_accepted(make_cohort: CohortFactory, data: bytes) -> None:
    cohort = load(make_cohort(data))
    assert [p.email for p in cohort.participants] == [
        "ana@example.com",
        "ben@example.com",
        "cleo@example.com",
    ]
    assert [p.name for p in cohort.participants] == ["Ana Ruiz", "Ben Ito", "Cleo Hart"]
    assert cohort.participants[1].timezone == "Asia/Tokyo"


def test_quoted_separator_and_line_break_in_a_field(make_cohort: CohortFactory) -> None:
    roster = 'email,name,notes\nana@example.com,"Ruiz, Ana","likes\nbullet points"\nben@example.com,Ben,\n'
    cohort = load(make_cohort(roster))
    assert cohort.participants[0].name == "Ruiz, Ana"
    assert cohort.participants[0].fields["notes"] == "likes\nbullet points"
    assert cohort.participants[1].row == 3  # rows as the spreadsheet numbers them


def test_windows_1252_is_read_with_a_warning(make_cohort: CohortFactory) -> None:
    roster = "email,name\namelie@example.com,Amélie Laurent\n".encode("cp1252")
    cohort = load(make_cohort(roster))
    assert cohort.participants[0].name == "Amélie Laurent"
    assert any("CSV UTF-8" in warning for warning in cohort.warnings)


def test_utf16_without_byte_order_mark(make_cohort: CohortFactory) -> None:
    cohort = load(make_cohort(ROSTER.encode("utf-16-le")))
    assert [p.name for p in cohort.participants] == ["Ana Ruiz", "Ben Ito", "Cleo Hart"]


@pytest.mark.parametrize(
    ("header", "hint"),
    [
        ("TZ", "if it holds time zones, name it 'timezone'"),
        ("Delegate", "if it holds assistants' addresses, name it 'delegate_email'"),
        ("Deadline (short)", "if it holds short deadlines, name it 'short_deadline'"),
        ("Due date", None),
    ],
)
def test_headers_that_almost_name_a_column_are_pointed_out(
    make_cohort: CohortFactory, header: str, hint: str | None
) -> None:
    cohort = load(make_cohort(f"email,name,{header}\nana@example.com,Ana,x\n"))
    assert cohort.participants[0].fields  # kept for templates either way
    matching = [w for w in cohort.warnings if f"column {header!r}" in w]
    if hint is None:
        assert matching == []
    else:
        assert len(matching) == 1 and hint in matching[0]


def test_a_stray_byte_in_utf8_is_located_not_guessed(make_cohort: CohortFactory) -> None:
    roster = "email,name\nsofia@example.com,Sofía Márquez\n".encode() + "pat@example.com,Pat O’Neil\n".encode(
        "cp1252"
    )
    problem = only_problem(make_cohort(roster))
    assert "UTF-8 except for line(s) 3" in problem.message and "CSV UTF-8" in problem.message


def test_non_ascii_names_survive(make_cohort: CohortFactory) -> None:
    roster = "email,name\nkenji@example.com,田中 健二\n"
    assert load(make_cohort(roster)).participants[0].name == "田中 健二"


# --- one test per kind of mistake -------------------------------------------


@pytest.mark.parametrize(
    ("roster", "row", "column", "message"),
    [
        ("name,timezone\nAna,UTC\n", 1, "email", "no 'email' column (the header row has: name, timezone)"),
        ("email,timezone\nana@example.com,UTC\n", 1, "name", "no 'name' column"),
        (HEADER + "ana@example.com,,UTC,sales\n", 2, "name", "name is empty"),
        (HEADER + ",Ana,UTC,sales\n", 2, "email", "email is empty"),
        (
            HEADER + "ana.example.com,Ana,UTC,sales\n",
            2,
            "email",
            "'ana.example.com' is not a valid email address",
        ),
        (HEADER + "Ana <ana@example.com>,Ana,UTC,sales\n", 2, "email", "only the address"),
        (HEADER + "ana@example.com,Ana,EST,sales\n", 2, "timezone", '"America/New_York"'),
        (HEADER + "ana@example.com,Ana,Asia/Tokio,sales\n", 2, "timezone", 'did you mean "Asia/Tokyo"'),
        (HEADER + 'ana@example.com,"Ana\r\nBcc: all@example.com",UTC,sales\n', 2, "name", "carriage return"),
        (HEADER + "ana@example.com,=?utf-8?b?QW5h?=,UTC,sales\n", 2, "name", '"=?"'),
        (HEADER + "ana@example.com,Ana\x00,UTC,sales\n", 2, "name", "NUL"),
        (HEADER + "ana@example.com,Ana,UTC,sal\x00es\n", 2, "objective", "NUL"),
        (
            "email,name,delegate_email\nana@example.com,Ana,pa@example\n",
            2,
            "delegate_email",
            "not a valid email",
        ),
        (
            "email,name,delegate_email\nana@example.com,Ana,ANA@example.com\n",
            2,
            "delegate_email",
            "own address",
        ),
        (
            "email,name,short_deadline\nana@example.com,Ana,2027-02-30\n",
            2,
            "short_deadline",
            "not a real date",
        ),
        ("email,name,short_deadline\nana@example.com,Ana,soon\n", 2, "short_deadline", "YYYY-MM-DD"),
        (
            "email,name,short_deadline\nana@example.com,Ana,2/3/2027\n",
            2,
            "short_deadline",
            "2027-02-03 or 2027-03-02",
        ),
        (
            "email,name,short_deadline\nana@example.com,Ana,2027-01-04\n",
            2,
            "short_deadline",
            "before the cohort starts",
        ),
        (
            "email,name,mid_deadline\nana@example.com,Ana,2027-01-20\n",
            2,
            "mid_deadline",
            "before the short deadline",
        ),
        (
            "email,name,long_deadline\nana@example.com,Ana,2027-02-15\n",
            2,
            "long_deadline",
            "before the mid deadline",
        ),
        (
            "email,name,medium_deadline\nana@example.com,Ana,2027-02-15\n",
            1,
            "medium_deadline",
            "unknown goal 'medium'",
        ),
        ("email,name,\nana@example.com,Ana,x\n", 2, "#3", "has no header"),
        (
            "email,name,email\nana@example.com,Ana,b@example.com\n",
            1,
            "email",
            "two columns are both called 'email'",
        ),
        ("email,name\nana@example.com,Ana,oops\n", 2, None, "3 values for 2 columns"),
    ],
)
def test_roster_mistakes_name_the_row_and_column(
    make_cohort: CohortFactory, roster: str, row: int, column: str | None, message: str
) -> None:
    folder = make_cohort(roster)
    problem = only_problem(folder)
    assert problem.file == str(folder / "roster.csv")
    assert (problem.row, problem.column) == (row, column)
    assert message in problem.message
    where = f"roster.csv, row {row}" + (f", column {column!r}" if column else "")
    assert where in str(problem)


@pytest.mark.parametrize("size", [3, 5000])
def test_unterminated_quote_is_located(make_cohort: CohortFactory, size: int) -> None:
    rows = "".join(f"p{n}@example.com,Person {n}\n" for n in range(size))
    problem = only_problem(make_cohort("email,name\nbob@example.com,Bob\n" + 'ana@example.com,"Ana\n' + rows))
    assert problem.row == 3 and "is never closed" in problem.message


def test_unterminated_quote_after_a_harmless_one(make_cohort: CohortFactory) -> None:
    roster = 'email,name,title\na@example.com,"Ana" Ruiz,CEO\nb@example.com,Bob,"VP\nc@example.com,Cy,x\nd@example.com,Di,y\n'
    problem = only_problem(make_cohort(roster))
    assert problem.row == 3 and "is never closed" in problem.message


def test_a_quote_inside_a_value_is_read_as_meant(make_cohort: CohortFactory) -> None:
    cohort = load(make_cohort('email,name\nana@example.com,"Ana" Ruiz\n'))
    assert cohort.participants[0].name == "Ana Ruiz"


def test_roster_that_is_a_folder(make_cohort: CohortFactory) -> None:
    folder = make_cohort()
    (folder / "roster.csv").unlink()
    (folder / "roster.csv").mkdir()
    assert "cannot be read" in only_problem(folder).message


def test_duplicate_email_ignoring_case(make_cohort: CohortFactory) -> None:
    problem = only_problem(
        make_cohort(HEADER + "ana@example.com,Ana,,\nbob@example.com,Bob,,\nANA@Example.com,Ana R,,\n")
    )
    assert (problem.row, problem.column) == (4, "email")
    assert "already on row 2" in problem.message


@pytest.mark.parametrize(
    "roster",
    [
        pytest.param("", id="empty-file"),
        pytest.param("\n\n", id="blank-lines"),
        pytest.param("email,name\n", id="header-only"),
    ],
)
def test_empty_roster(make_cohort: CohortFactory, roster: str) -> None:
    problem = only_problem(make_cohort(roster))
    assert "roster" in problem.message and "participant" in problem.message


def test_every_mistake_in_one_pass(make_cohort: CohortFactory) -> None:
    roster = HEADER + "ana.example.com,Ana,UTC,\nben@example.com,,EST,\ncleo@example.com,Cleo,Mars/Base,\n"
    problems = problems_of(make_cohort(roster, toml=COHORT_TOML.replace('"09:00"', '"9 o\'clock"')))
    located = {(p.row, p.column) for p in problems}
    assert {(2, "email"), (3, "name"), (3, "timezone"), (4, "timezone"), (None, None)} == located
    assert any(p.key == "send_time" for p in problems)


# --- cohort.toml ----------------------------------------------------------------


def toml_without(field: str) -> str:
    return "".join(line + "\n" for line in COHORT_TOML.splitlines() if not line.startswith(f"{field} ="))


@pytest.mark.parametrize(
    ("toml", "key", "message"),
    [
        (toml_without("start"), "start", "the field 'start' is missing"),
        (toml_without("sender"), "sender", "the field 'sender' is missing"),
        (toml_without("program"), "program", "the field 'program' is missing"),
        (COHORT_TOML.replace("crawl-walk-run", "crawl-walk"), "program", "did you mean 'crawl-walk-run'"),
        (COHORT_TOML.replace("2027-01-11", '"2027-02-30"'), "start", "not a real date"),
        (COHORT_TOML.replace('"America/New_York"', '"EST"'), "timezone", '"America/New_York"'),
        (COHORT_TOML.replace('"09:00"', '"9am"'), "send_time", "HH:MM"),
        (
            COHORT_TOML.replace("skip_weekends = true", 'skip_weekends = "yes"'),
            "skip_weekends",
            "true or false",
        ),
        (
            COHORT_TOML.replace("Comms <comms@example.com>", "Comms\\r\\nBcc: x@example.com <c@example.com>"),
            "sender",
            "email header",
        ),
        (COHORT_TOML.replace('"owner@example.com"', '"owner.example.com"'), "owners", "not a valid email"),
        (COHORT_TOML + 'sendtime = "10:00"\n', "sendtime", "did you mean 'send_time'"),
        (
            COHORT_TOML + '[goals.shrt]\ndeadline = "+3w"\n',
            "goals.shrt",
            "unknown goal 'shrt'; did you mean 'short'",
        ),
        (COHORT_TOML + '[goals.short]\ndeadline = "tomorrow"\n', "goals.short.deadline", "YYYY-MM-DD"),
        (COHORT_TOML + "[goals.short]\ndeadline = 2027-01-01\n", "goals", "before the start 2027-01-11"),
        (COHORT_TOML + "[goals.mid]\ndeadline = 2027-01-20\n", "goals", "before the short deadline"),
        (COHORT_TOML + 'slug = "Q1 Leaders"\n', "slug", "not a usable id"),
        (COHORT_TOML + "end = 2027-01-01\n", "end", "before start"),
        (COHORT_TOML + "end = 2027-03-01\n", "end", "before the long deadline 2027-04-05"),
        (COHORT_TOML.replace("2027-01-11", "9999-12-25"), "start", "not a usable date"),
    ],
)
def test_cohort_toml_mistakes_name_the_field(
    make_cohort: CohortFactory, toml: str, key: str, message: str
) -> None:
    folder = make_cohort(toml=toml)
    problem = only_problem(folder)
    assert problem.file == str(folder / "cohort.toml")
    assert problem.key == key
    assert message in problem.message


def test_link_answers_is_off_unless_the_owner_opts_in(make_cohort: CohortFactory) -> None:
    from drip.storage.records import CohortSettings

    assert load(make_cohort()).link_answers is False
    cohort = load(make_cohort(extra_toml="link_answers = true\n"))
    assert cohort.link_answers is True and cohort.stored().settings.link_answers is True
    kept = cohort.stored().settings.to_json()
    assert CohortSettings.from_json(kept).link_answers is True
    del kept["link_answers"]
    assert CohortSettings.from_json(kept).link_answers is False, "a cohort started before it shows text"


@pytest.mark.parametrize("value", ['"true"', '"yes"', "1", "[true]"])
def test_link_answers_must_be_true_or_false(make_cohort: CohortFactory, value: str) -> None:
    folder = make_cohort(extra_toml=f"link_answers = {value}\n")
    problem = only_problem(folder)
    assert (problem.file, problem.key) == (str(folder / "cohort.toml"), "link_answers")
    assert problem.line == len(COHORT_TOML.splitlines()) + 1
    assert "must be true or false (without quotes)" in problem.message
    assert "as links in the owners' report" in problem.message, "what each value does"
    assert f"cohort.toml, line {problem.line}, link_answers: " in str(problem)


def test_own_deadline_after_the_end(make_cohort: CohortFactory) -> None:
    folder = make_cohort(
        "email,name,long_deadline\nana@example.com,Ana,2027-05-10\n", extra_toml="end = 2027-05-01\n"
    )
    problem = only_problem(folder)
    assert (problem.row, problem.column) == (
        2,
        "long_deadline",
    ) and "after the cohort's end" in problem.message


def test_goals_with_no_time_between_them_are_warned_about(make_cohort: CohortFactory) -> None:
    cohort = load(
        make_cohort("email,name,long_deadline\nana@example.com,Ana,2027-03-01\nben@example.com,Ben,\n")
    )
    (warning,) = [w for w in cohort.warnings if "too little time" in w]
    assert "1 participant(s) (rows 2) have too little time for long" in warning
    assert "Space the deadlines further apart" in warning


def test_an_end_years_away_warns_that_the_check_ins_stop_at_sixty(make_cohort: CohortFactory) -> None:
    cohort = load(make_cohort("email,name\nana@example.com,Ana\n", extra_toml="end = 2032-12-31\n"))
    (warning,) = [w for w in cohort.warnings if "would repeat" in w]
    assert "1 participant(s) (rows 2): sustain would repeat 69 times up to 2032-12-31" in warning
    assert "only the first 60 are planned. Set an earlier end, or an until for the step" in warning
    assert not [w for w in load(make_cohort()).warnings if "would repeat" in w]


def test_missing_folder_and_file(tmp_path: Path) -> None:
    assert "no such cohort folder" in only_problem(tmp_path / "nope").message
    (tmp_path / "empty").mkdir()
    assert "cohort.toml" in only_problem(tmp_path / "empty").message


def test_invalid_toml_is_located(make_cohort: CohortFactory) -> None:
    problem = only_problem(make_cohort(toml="name = \n"))
    assert "not valid TOML" in problem.message and "line 1" in problem.message


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("Ana\u009b31mRuiz", "U+009B"),  # an 8-bit CSI: a terminal would take it as a command
        ("Ana \u202eziuR", "U+202E"),  # right-to-left override: reads backwards in a header or a page
        ("Ana\u2066Ruiz\u2069", "U+2066"),
        ("Ana\x07Ruiz", "U+0007"),
        ("Ana\x1b[31mRuiz", "U+001B"),
    ],
)
def test_control_and_bidi_characters_are_refused_with_row_and_column(
    make_cohort: CohortFactory, value: str, says: str
) -> None:
    for column, row in (
        ("name", f"ana@example.com,{value},sales\n"),
        ("objective", f"ana@example.com,Ana,{value}\n"),
    ):
        problem = only_problem(make_cohort(roster=f"email,name,objective\n{row}"))
        assert (problem.row, problem.column) == (2, column) and says in problem.message


def test_a_value_too_long_is_refused(make_cohort: CohortFactory) -> None:
    problem = only_problem(make_cohort(roster=f"email,name,objective\nana@example.com,Ana,{'x' * 100_000}\n"))
    assert (problem.row, problem.column) == (2, "objective")
    assert "100,000 characters long; a value holds at most 1,000 (DRIP_MAX_VALUE_CHARS)" in problem.message


def test_a_roster_larger_than_the_limit_is_refused_without_reading_it_all(make_cohort: CohortFactory) -> None:
    from drip.launch.roster import Limits

    folder = make_cohort(extra_toml='roster = "/dev/zero"\n')
    with pytest.raises(CohortError) as caught:
        load_cohort(folder, [EMAILS], Limits(max_bytes=1_000_000))
    assert "larger than 1,000,000 bytes" in str(caught.value) and "/dev/zero" in str(caught.value)
