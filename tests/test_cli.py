"""The drip command as comms staff and operators use it."""

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from conftest import COHORT_TOML, ROOT, ROSTER, CohortFactory
from drip.cli import main
from drip.storage.store import Store, event_table

NOW = ["--now", "2027-01-04T12:00Z"]


def run(runner: CliRunner, *args: str, db: str | None = None, expect: int = 0) -> str:
    options = ["--database-url", db] if db else []
    result = runner.invoke(main, [*options, *args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result.stdout if expect == 0 else result.output


def test_start_then_status(runner: CliRunner, make_cohort: CohortFactory, database_url: str) -> None:
    folder = make_cohort()
    out = run(runner, "start", str(folder), *NOW, db=database_url)
    assert "Started cohort 'test-cohort'" in out
    assert "3 enrolled" in out
    assert "81 planned: 72 scheduled, 9 waiting for a goal to be done" in out
    assert "first send    2027-01-11 00:00 UTC  (Mon 2027-01-11 09:00 JST, Asia/Tokyo)" in out
    assert "short due     Mon 2027-02-01" in out

    payload = json.loads(run(runner, "status", "test-cohort", "--format", "json", *NOW, db=database_url))
    assert {"cohort", "participants", "goals", "deliveries"} <= set(payload)
    assert payload["cohort"] == "test-cohort" and payload["participants"] == 3
    assert list(payload["goals"]) == ["short", "mid", "long"]
    assert payload["goals"]["short"] == {"open": 3, "done": 0, "waived": 0, "overdue": 0}
    for key in ("scheduled", "sent", "failed", "skipped", "cancelled"):
        assert isinstance(payload["deliveries"][key], int)
    assert payload["deliveries"]["scheduled"] == 72  # 24 each: 18 steps (3 to the owners) and 6 check-ins

    listing = json.loads(run(runner, "status", "--format", "json", *NOW, db=database_url))
    assert [item["cohort"] for item in listing] == ["test-cohort"]
    table = run(runner, "status", *NOW, db=database_url)
    assert "test-cohort: Test cohort (crawl-walk-run)" in table and "0/3 done" in table


def test_dry_run_writes_nothing(runner: CliRunner, make_cohort: CohortFactory, tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    out = run(runner, "start", str(make_cohort()), "--dry-run", *NOW, db=f"sqlite:///{db}")
    assert "Would start cohort" in out and "Dry run: nothing was written." in out
    assert not db.exists()


def test_dry_run_on_an_existing_database_changes_nothing(
    runner: CliRunner, make_cohort: CohortFactory, database_url: str
) -> None:
    folder = make_cohort()
    run(runner, "start", str(folder), *NOW, db=database_url)
    before = run(runner, "status", "--format", "json", *NOW, db=database_url)
    make_cohort(ROSTER + "dee@example.com,Dee Park,Europe/Paris,sales\n")
    out = run(runner, "start", str(folder), "--dry-run", *NOW, db=database_url)
    assert "Would update" in out and "1 enrolled" in out
    assert run(runner, "status", "--format", "json", *NOW, db=database_url) == before


def test_bad_roster_is_reported_and_nothing_is_written(
    runner: CliRunner, make_cohort: CohortFactory, tmp_path: Path
) -> None:
    db = tmp_path / "drip.db"
    folder = make_cohort("email,name,timezone\nana@example,Ana,EST\nben@example.com,,UTC\n")
    result = runner.invoke(main, ["--database-url", f"sqlite:///{db}", "start", str(folder), *NOW])
    assert result.exit_code == 1
    assert "3 problems found; nothing was written" in result.output
    assert "roster.csv, row 2, column 'timezone'" in result.output
    assert "Traceback" not in result.output
    assert not db.exists()


def test_plan_formats(runner: CliRunner, make_cohort: CohortFactory) -> None:
    folder = str(make_cohort())
    table = run(runner, "plan", folder, *NOW)
    assert "Ben Ito <ben@example.com>  Asia/Tokyo" in table
    assert "welcome" in table and "Mon 2027-01-11 09:00 JST" in table

    rows = list(csv.DictReader(io.StringIO(run(runner, "plan", folder, "--format", "csv", *NOW))))
    assert len(rows) == 81  # 27 each: 21 steps (3 of them notes to the owners) and 6 monthly check-ins
    welcome = next(r for r in rows if r["email"] == "ana@example.com" and r["step"] == "welcome")
    assert welcome["local_time"] == "2027-01-11T09:00:00-05:00" and welcome["utc"] == "2027-01-11T14:00:00Z"

    data = json.loads(
        run(runner, "plan", folder, "--participant", "CLEO@example.com", "--format", "json", *NOW)
    )
    assert {r["email"] for r in data} == {"cleo@example.com"} and len(data) == 27
    waiting = [r for r in data if r["status"] == "waiting"]
    assert [r["note"] for r in waiting] == [
        "sent when short is done",
        "sent when mid is done",
        "sent when long is done",
    ]


def test_plan_unknown_participant(runner: CliRunner, make_cohort: CohortFactory) -> None:
    result = runner.invoke(main, ["plan", str(make_cohort()), "--participant", "zed@example.com"])
    assert result.exit_code == 2 and "zed@example.com is not in" in result.output


def test_plan_writes_nothing(
    runner: CliRunner, make_cohort: CohortFactory, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run(runner, "plan", str(make_cohort()), *NOW)
    assert not (tmp_path / "drip.db").exists()


def test_status_of_unknown_cohort_and_empty_database(
    runner: CliRunner, database_url: str, tmp_path: Path
) -> None:
    result = runner.invoke(main, ["--database-url", database_url, "status", "nope"])
    assert result.exit_code == 1 and "no cohort 'nope'" in result.output
    fresh = tmp_path / "none.db"
    assert "No cohorts yet" in run(runner, "status", db=f"sqlite:///{fresh}")
    assert not fresh.exists()


def test_participant_remove(runner: CliRunner, make_cohort: CohortFactory, database_url: str) -> None:
    run(runner, "start", str(make_cohort()), *NOW, db=database_url)
    out = run(
        runner, "participant", "remove", "test-cohort", "ben@example.com", *NOW, "--backdate", db=database_url
    )
    assert "ben@example.com removed; 27 pending emails cancelled." in out
    payload = json.loads(run(runner, "status", "test-cohort", "--format", "json", *NOW, db=database_url))
    assert payload["participants"] == 2


def test_participant_commands_say_what_they_changed(
    runner: CliRunner, make_cohort: CohortFactory, database_url: str
) -> None:
    run(runner, "start", str(make_cohort()), *NOW, db=database_url)
    ana = ["test-cohort", "ana@example.com", *NOW, "--backdate"]  # dated the day of the launch
    out = run(runner, "participant", "done", *ana, "--goal", "short", db=database_url)
    assert "short marked done via admin; 5 pending emails cancelled; short-done planned for Tue 12 Jan" in out
    out = run(runner, "participant", "done", *ana, "--goal", "short", db=database_url)
    assert "short was already done" in out
    out = run(runner, "participant", "reopen", *ana, "--goal", "short", db=database_url)
    assert re.search(
        r"short reopened \(undid the completion of 04 Jan 2027 12:00 UTC \(event \d+\) via admin\)", out
    )
    out = run(runner, "participant", "waive", *ana, "--goal", "mid", db=database_url)
    assert "mid waived; 6 pending emails cancelled" in out
    out = run(runner, "participant", "extend", *ana, "--goal", "short", "--to", "2027-02-10", db=database_url)
    assert "short deadline moved from 2027-02-01 to 2027-02-10" in out
    out = run(runner, "participant", "pause", *ana, db=database_url)
    assert "ana@example.com paused" in out
    out = run(runner, "participant", "resume", *ana, db=database_url)
    assert "resumed (was paused)" in out
    late = runner.invoke(
        main,
        [
            "--database-url",
            database_url,
            "participant",
            "extend",
            *ana,
            "--goal",
            "short",
            "--to",
            "2027-05-01",
        ],
    )
    assert late.exit_code == 1 and "goals fall due in order, so move mid's deadline first" in late.output
    bad = runner.invoke(main, ["--database-url", database_url, "participant", "done", *ana, "--goal", "walk"])
    assert bad.exit_code == 1 and "has no goal 'walk'; its goals are short, mid, long" in bad.output
    missing = runner.invoke(main, ["--database-url", database_url, "participant", "done", *ana])
    assert missing.exit_code == 2 and "Missing option '--goal'" in missing.output
    with Store(database_url) as db, db.reading() as conn:
        kinds = conn.execute(
            select(event_table.c.kind).where(event_table.c.participant_id.is_not(None))
        ).scalars()
        assert [k for k in kinds if k not in ("enrolled",)] == [
            "completed", "reopened", "waived", "extended", "paused", "resumed",
        ]  # fmt: skip


def test_bad_now_and_bad_setting(runner: CliRunner, make_cohort: CohortFactory, monkeypatch) -> None:
    result = runner.invoke(main, ["plan", str(make_cohort()), "--now", "yesterday"])
    assert result.exit_code == 2 and "Invalid value for '--now'" in result.output
    monkeypatch.setenv("DRIP_DATABASE_URL", "mysql://x/y")
    result = runner.invoke(main, ["status"])
    assert result.exit_code == 1
    assert "setting database_url (from environment variable DRIP_DATABASE_URL)" in result.output


def test_config_file_option(runner: CliRunner, make_cohort: CohortFactory, tmp_path: Path) -> None:
    config = tmp_path / "ops.toml"
    db = tmp_path / "from-config.db"
    config.write_text(f'database_url = "sqlite:///{db}"\n')
    run(runner, "--config", str(config), "start", str(make_cohort()), *NOW)
    assert db.exists()


def test_db_upgrade(runner: CliRunner, tmp_path: Path) -> None:
    out = run(runner, "db", "upgrade", db=f"sqlite:///{tmp_path / 'x.db'}")
    from drip.storage.store import head_revision

    assert f"is at schema revision {head_revision()}" in out


def test_installed_entry_point(make_cohort: CohortFactory, tmp_path: Path) -> None:
    """The console script that pip installed, in a fresh process, on the example cohort."""
    drip = Path(sys.executable).with_name("drip")
    assert drip.exists(), "drip is not installed in this environment; run pip install -e ."
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
    result = subprocess.run(
        [str(drip), "start", str(ROOT / "cohorts" / "example"), *NOW],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Started cohort 'example'" in result.stdout and "12 enrolled" in result.stdout
    assert (tmp_path / "drip.db").exists()
    version = subprocess.run([str(drip), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("drip, version ")


@pytest.mark.parametrize("command", ["start", "plan"])
def test_missing_cohort_folder(runner: CliRunner, command: str, tmp_path: Path) -> None:
    result = runner.invoke(main, [command, str(tmp_path / "nope")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_plan_of_a_started_cohort_is_the_stored_one(
    runner: CliRunner, make_cohort: CohortFactory, database_url: str
) -> None:
    folder = str(make_cohort())
    run(runner, "start", folder, *NOW, db=database_url)
    ana = ["--participant", "ana@example.com", "--format", "json", "--now", "2027-01-20T12:00Z"]
    stored = {r["step"]: r for r in json.loads(run(runner, "plan", folder, *ana, db=database_url))}
    assert stored["welcome"]["utc"] == "2027-01-11T14:00:00Z" and stored["welcome"]["status"] == "scheduled"
    preview = {
        r["step"]: r for r in json.loads(run(runner, "plan", folder, "--preview", *ana, db=database_url))
    }
    assert preview["welcome"]["utc"] == "2027-01-20T14:00:00Z"
    assert preview["welcome"]["note"] == "moved from 2027-01-11"


def test_dry_run_leaves_an_empty_database_empty(
    runner: CliRunner, make_cohort: CohortFactory, tmp_path: Path
) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    run(runner, "start", str(make_cohort()), "--dry-run", *NOW, db=f"sqlite:///{db}")
    assert db.stat().st_size == 0


def test_dry_run_refuses_an_old_schema(runner: CliRunner, make_cohort: CohortFactory, tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('0000')")
    result = runner.invoke(
        main, ["--database-url", f"sqlite:///{db}", "start", str(make_cohort()), "--dry-run", *NOW]
    )
    assert result.exit_code == 1 and "needs upgrading; run `drip db upgrade`" in result.output
    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == [
            "alembic_version"
        ]


def test_remove_without_a_database(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    result = runner.invoke(
        main, ["--database-url", f"sqlite:///{db}", "participant", "remove", "c", "a@example.com"]
    )
    assert result.exit_code == 1 and "no database at" in result.output
    assert not db.exists()


def test_changing_the_slug_of_a_started_folder_is_refused(
    runner: CliRunner, make_cohort: CohortFactory, database_url: str
) -> None:
    folder = make_cohort()
    run(runner, "start", str(folder), *NOW, db=database_url)
    make_cohort(extra_toml='slug = "q1-leaders"\n')
    result = runner.invoke(main, ["--database-url", database_url, "start", str(folder), *NOW])
    assert result.exit_code == 1
    assert "was started as cohort 'test-cohort'" in result.output and 'slug = "test-cohort"' in result.output
    listing = json.loads(run(runner, "status", "--format", "json", *NOW, db=database_url))
    assert [item["cohort"] for item in listing] == ["test-cohort"]


def test_a_moved_folder_is_followed_with_a_warning(
    runner: CliRunner, make_cohort: CohortFactory, database_url: str, tmp_path: Path
) -> None:
    import shutil

    folder = make_cohort()
    run(runner, "start", str(folder), *NOW, db=database_url)
    moved = tmp_path / "elsewhere" / "test-cohort"
    moved.parent.mkdir()
    shutil.move(folder, moved)
    (tmp_path / "elsewhere" / "emails").symlink_to(ROOT / "emails", target_is_directory=True)
    result = runner.invoke(main, ["--database-url", database_url, "start", str(moved), *NOW])
    assert result.exit_code == 0, result.output
    assert "was started from" in result.output and "0 enrolled" in result.output


def test_a_copy_cannot_take_over_a_running_cohort(
    runner: CliRunner, make_cohort: CohortFactory, database_url: str
) -> None:
    import shutil

    winter = make_cohort(extra_toml='slug = "w27"\n', name="winter")
    run(runner, "start", str(winter), *NOW, db=database_url)
    spring = winter.parent / "spring"
    shutil.copytree(winter, spring)
    result = runner.invoke(main, ["--database-url", database_url, "start", str(spring), *NOW])
    assert result.exit_code == 1
    assert "cohort 'w27' belongs to" in result.output and "a slug of its own" in result.output


def test_a_renamed_folder_is_not_launched_again(
    runner: CliRunner, make_cohort: CohortFactory, database_url: str
) -> None:
    folder = make_cohort(name="winter")
    run(runner, "start", str(folder), *NOW, db=database_url)
    renamed = folder.with_name("winter-2027")
    folder.rename(renamed)
    result = runner.invoke(main, ["--database-url", database_url, "start", str(renamed), *NOW])
    assert result.exit_code == 1
    assert "looks like cohort 'winter'" in result.output and 'set slug = "winter"' in result.output
    (renamed / "cohort.toml").write_text((renamed / "cohort.toml").read_text() + 'slug = "winter"\n')
    out = run(runner, "start", str(renamed), *NOW, db=database_url)
    assert "Updated cohort 'winter'" in out and "0 enrolled" in out


def test_read_commands_never_create_or_upgrade_the_schema(
    runner: CliRunner, make_cohort: CohortFactory, empty_database_url: str
) -> None:
    from sqlalchemy import create_engine, inspect

    run(runner, "plan", str(make_cohort()), *NOW, db=empty_database_url)
    run(runner, "status", db=empty_database_url)
    run(runner, "start", str(make_cohort()), "--dry-run", *NOW, db=empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_a_file_that_is_not_a_database(runner: CliRunner, make_cohort: CohortFactory, tmp_path: Path) -> None:
    junk = tmp_path / "drip.db"
    junk.write_text("this is not a database\n" * 100)
    for args in (["start", str(make_cohort()), *NOW], ["status"]):
        result = runner.invoke(main, ["--database-url", f"sqlite:///{junk}", *args])
        assert result.exit_code == 1 and "file is not a database" in result.output
        assert "Traceback" not in result.output


def test_serve_listens_where_asked_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`drip serve --host --port` in its own process: /healthz answers there, SIGTERM stops it."""
    import signal

    from conftest import _free_port, wait_for_pages

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
    drip = Path(sys.executable).with_name("drip")
    server = subprocess.Popen(
        [str(drip), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_pages(server, port, "drip serve")
    finally:
        server.send_signal(signal.SIGTERM)
        _, said = server.communicate(timeout=20)
    assert f"on 127.0.0.1:{port}" in said


def test_serve_refuses_two_ways_of_saying_where(runner: CliRunner) -> None:
    result = runner.invoke(main, ["serve", "--listen", "127.0.0.1:8000", "--port", "8001"])
    assert result.exit_code == 2 and "not both" in result.output


def test_cohort_pause_and_resume_say_what_changed(
    runner: CliRunner, make_cohort: CohortFactory, database_url: str
) -> None:
    run(runner, "start", str(make_cohort()), *NOW, db=database_url)
    assert "Cohort 'test-cohort' paused" in run(runner, "cohort", "pause", "test-cohort", db=database_url)
    again = run(runner, "cohort", "pause", "test-cohort", db=database_url)
    assert "was already paused; nothing changed" in again
    assert "Cohort 'test-cohort' resumed" in run(runner, "cohort", "resume", "test-cohort", db=database_url)
    result = runner.invoke(main, ["--database-url", database_url, "cohort", "pause", "nope"])
    assert result.exit_code == 1 and "no cohort 'nope'; known cohorts: test-cohort" in result.output
    with Store(database_url, migrate=False) as db, db.reading() as conn:
        kinds = conn.execute(select(event_table.c.kind).order_by(event_table.c.id)).scalars().all()
    assert kinds[-2:] == ["paused", "resumed"]  # the repeated pause left no event


def test_what_reaches_the_terminal_cannot_drive_it(
    runner: CliRunner, make_cohort: CohortFactory, database_url: str
) -> None:
    """A name stored before rosters refused control characters is printed as escapes, not run."""
    from sqlalchemy import update

    from drip.storage.store import Store, participant_table

    run(runner, "start", str(make_cohort()), *NOW, db=database_url)
    with Store(database_url) as db, db.transaction() as conn:
        conn.execute(update(participant_table).where(participant_table.c.email == "ana@example.com")
                     .values(name="Ana\u009b31m \u202eziuR"))  # fmt: skip
    out = run(runner, "status", "test-cohort", "--now", "2027-02-10T12:00Z", db=database_url)
    assert "\u009b" not in out and "\u202e" not in out
    assert "Ana\\u009b31m \\u202eziuR" in out


def test_a_change_dated_before_the_start_or_the_last_event_needs_backdate(
    runner: CliRunner, make_cohort: CohortFactory, database_url: str
) -> None:
    run(runner, "start", str(make_cohort()), *NOW, db=database_url)
    ana = ["participant", "done", "test-cohort", "ana@example.com", "--goal", "short"]
    early = run(runner, *ana, "--now", "2027-01-02T12:00Z", db=database_url, expect=1)
    assert "is before 'test-cohort' started (2027-01-11)" in early and "--backdate" in early
    run(runner, *ana, "--now", "2027-01-20T12:00Z", db=database_url)
    reopen = ["participant", "reopen", "test-cohort", "ana@example.com", "--goal", "short"]
    late = run(runner, *reopen, "--now", "2027-01-15T12:00Z", db=database_url, expect=1)
    assert "before ana@example.com's last recorded event (2027-01-20 12:00 UTC)" in late
    assert "short reopened" in run(
        runner, *reopen, "--now", "2027-01-15T12:00Z", "--backdate", db=database_url
    )
    assert "short" in run(runner, *ana, db=database_url)  # without --now: the real time, always allowed


def test_starting_a_folder_already_started_in_another_database_warns(
    runner: CliRunner, make_cohort: CohortFactory, tmp_path: Path
) -> None:
    folder = str(make_cohort())
    first, second = f"sqlite:///{tmp_path / 'first.db'}", f"sqlite:///{tmp_path / 'second.db'}"
    result = runner.invoke(main, ["--database-url", first, "start", folder, *NOW])
    assert result.exit_code == 0 and "warning" not in result.output
    again = runner.invoke(main, ["--database-url", first, "start", folder, *NOW])
    assert again.exit_code == 0 and "started before in" not in again.output  # the same database: a re-sync
    other = runner.invoke(main, ["--database-url", second, "start", folder, *NOW])
    assert other.exit_code == 0
    assert f"was started before in {first}" in " ".join(other.output.split())


@pytest.mark.parametrize(
    ("domain", "ascii_domain"),
    [
        ("bücher-gruppe.example", "xn--bcher-gruppe-dlb.example"),
        # IDNA 2008 keeps ß; the older IDNA 2003 would send from strasse.example, someone else's domain
        ("straße.example", "xn--strae-oqa.example"),
    ],
)
def test_a_sender_with_an_internationalised_domain_is_written_in_idna_in_every_header(
    runner: CliRunner,
    make_cohort: CohortFactory,
    database_url: str,
    smtp_server,
    domain: str,
    ascii_domain: str,
) -> None:
    from email import message_from_bytes, policy

    toml = COHORT_TOML.replace(
        'sender = "Comms <comms@example.com>"', f'sender = "Kommunikation <komm@{domain}>"'
    )
    folder = str(make_cohort(toml=toml))
    run(runner, "start", folder, *NOW, db=database_url)
    env = {"DRIP_SMTP_URL": smtp_server.url}
    result = runner.invoke(
        main, ["--database-url", database_url, "run", "--once", "--now", "2027-01-11T15:00Z"], env=env
    )
    assert result.exit_code == 0, result.output
    received = smtp_server.messages[0]
    assert received.sender == f"komm@{ascii_domain}"
    raw = received.data.decode("ascii")  # every header, and the whole message, is ASCII
    message = message_from_bytes(received.data, policy=policy.default)
    assert message["From"].addresses[0].domain == ascii_domain
    assert message["Reply-To"].addresses[0].domain == ascii_domain
    assert message["Message-ID"].endswith(f"@{ascii_domain}>")
    assert "mailto:komm+" in raw and f"@{ascii_domain}?subject=unsubscribe" in raw
    digest = runner.invoke(
        main, ["--database-url", database_url, "digest", "test-cohort", "--preview", "--format", "eml",
               "--now", "2027-01-18T13:00Z"],
    )  # fmt: skip
    assert digest.exit_code == 0 and f"@{ascii_domain}>" in digest.output


def test_drip_init_writes_the_starter_files_and_never_overwrites(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["init", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    program = tmp_path / "new" / "emails" / "crawl-walk-run"
    assert (program / "program.toml").read_bytes() == (
        ROOT / "emails" / "crawl-walk-run" / "program.toml"
    ).read_bytes()
    assert (tmp_path / "new" / "cohorts" / "example" / "roster.csv").is_file()
    assert "drip start" in result.output and "cohort.toml" in result.output
    (program / "program.toml").write_text("# mine\n")
    again = runner.invoke(main, ["init", str(tmp_path / "new")])
    assert again.exit_code == 1 and "already exists; drip init writes only new folders" in again.output
    assert (program / "program.toml").read_text() == "# mine\n", "nothing was overwritten"
