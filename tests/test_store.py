"""The store on SQLite and PostgreSQL: schema, instants, transactions."""

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, select, text

from drip.core.errors import StoreError
from drip.storage.plainsql import Plain
from drip.storage.store import Store, cohort_table, delivery_table, event_table, participant_table
from drip.storage.tables import metadata


def test_migrations_build_exactly_the_models(store: Store) -> None:
    with store.reading() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []
    assert not store.needs_migration()


def test_upgrading_from_the_first_schema_keeps_the_data(tmp_path, now) -> None:
    """A database made by the first release, upgraded in place: its rows survive."""
    from alembic import command

    from drip.storage.store import _alembic_config, head_revision

    url = f"sqlite:///{tmp_path / 'old.db'}"
    with Store(url, migrate=False) as old, old.transaction() as conn:
        config = _alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(insert(cohort_table), cohort_row(now))
    with Store(url) as upgraded:
        assert upgraded.revision() == head_revision()
        with upgraded.reading() as conn:
            assert conn.execute(select(cohort_table.c.slug)).scalar_one() == "c"


def test_upgrading_to_events_without_keys_keeps_the_log_and_the_sent_trigger(database_url: str, now) -> None:
    """0012 rebuilds events on SQLite: the events already there survive, and marking a delivery
    sent still appends its event (the trigger sits on deliveries and names events)."""
    from alembic import command

    from drip.storage.store import _alembic_config, head_revision

    with Store(database_url, migrate=False) as old, old.transaction() as conn:
        config = _alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "0011")
        cohort_id = conn.execute(
            insert(cohort_table).returning(cohort_table.c.id), cohort_row(now)
        ).scalar_one()
        person = conn.execute(
            insert(participant_table).returning(participant_table.c.id),
            {"cohort_id": cohort_id, "email": "a@example.com", "email_key": "a@example.com", "name": "A",
             "timezone": "UTC", "fields": {}, "status": "active", "plan_signature": "s",
             "created_at": now, "updated_at": now},
        ).scalar_one()  # fmt: skip
        for step in ("welcome", "reminder"):
            conn.execute(
                insert(delivery_table),
                {"cohort_id": cohort_id, "participant_id": person, "step": step, "due_at": now,
                 "status": "sending", "attempts": 1, "created_at": now, "updated_at": now},
            )  # fmt: skip
        conn.execute(
            text("UPDATE deliveries SET status = 'sent', sent_at = updated_at WHERE step = 'welcome'")
        )
    with Store(database_url) as upgraded:
        assert upgraded.revision() == head_revision()
        with upgraded.transaction() as conn:
            conn.execute(
                text("UPDATE deliveries SET status = 'sent', sent_at = updated_at, message_id = '<r@x>' "
                     "WHERE step = 'reminder'")
            )  # fmt: skip
        with upgraded.reading() as conn:
            logged = conn.execute(
                select(event_table.c.kind, event_table.c.participant_id, event_table.c.data).order_by(
                    event_table.c.id
                )
            ).all()
    assert [(kind, who) for kind, who, _ in logged] == [("sent", person), ("sent", person)]
    assert logged[1].data == {"message_id": "<r@x>"}


def test_migrating_twice_is_harmless(store: Store, database_url: str) -> None:
    revision = store.revision()
    with Store(database_url) as again:
        assert again.revision() == revision


def cohort_row(now: dt.datetime) -> dict:
    return {
        "slug": "c", "name": "C", "program": "p", "program_path": "/p", "folder": "/c", "status": "active",
        "settings": {}, "start_date": dt.date(2027, 1, 11), "created_at": now, "updated_at": now,
    }  # fmt: skip


def test_instants_come_back_aware_utc(store: Store) -> None:
    tokyo = dt.datetime(2027, 1, 11, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    with store.transaction() as conn:
        conn.execute(insert(cohort_table), cohort_row(tokyo))
    with store.reading() as conn:
        created = conn.execute(select(cohort_table.c.created_at)).scalar_one()
    assert created == tokyo
    assert created.tzinfo is dt.UTC
    assert created.hour == 0


def test_naive_instants_are_refused(store: Store) -> None:
    with pytest.raises(Exception, match="instants must be aware"):
        with store.transaction() as conn:
            conn.execute(insert(cohort_table), cohort_row(dt.datetime(2027, 1, 11, 9, 0)))


def test_a_failed_transaction_writes_nothing(store: Store, now: dt.datetime) -> None:
    with pytest.raises(RuntimeError):
        with store.transaction() as conn:
            conn.execute(insert(cohort_table), cohort_row(now))
            raise RuntimeError("boom")
    with store.reading() as conn:
        assert conn.execute(select(cohort_table.c.id)).all() == []


def test_trial_transactions_are_always_rolled_back(store: Store, now: dt.datetime) -> None:
    with store.trial() as conn:
        conn.execute(insert(cohort_table), cohort_row(now))
        assert conn.execute(select(cohort_table.c.slug)).scalar_one() == "c"
    with store.reading() as conn:
        assert conn.execute(select(cohort_table.c.id)).all() == []


def test_sqlite_uses_wal_and_foreign_keys(tmp_path) -> None:
    with Store(f"sqlite:///{tmp_path / 'x.db'}") as opened, opened.reading() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1


def test_unreachable_database_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="dir.db"):
        Store(f"sqlite:///{tmp_path / 'dir.db'}")


def test_database_newer_than_drip_is_refused(store: Store, database_url: str) -> None:
    head = store.revision()
    with store.transaction() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    with pytest.raises(StoreError, match="newer than this drip"):
        Store(database_url)
    with store.transaction() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head})


def test_events_keep_their_data(store: Store, now: dt.datetime) -> None:
    with store.transaction() as conn:
        cohort_id = conn.execute(
            insert(cohort_table).returning(cohort_table.c.id), cohort_row(now)
        ).scalar_one()
        conn.execute(
            insert(event_table), {"cohort_id": cohort_id, "kind": "x", "at": now, "data": {"n": 1, "é": "ü"}}
        )
    with store.reading() as conn:
        assert conn.execute(select(event_table.c.data)).scalar_one() == {"n": 1, "é": "ü"}


def test_sqlite_writers_of_other_processes_queue_on_the_lock_file(tmp_path) -> None:
    """A writer in another process waits while this one writes, and goes as soon as it is done."""
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'drip.db'}"
    script = (
        "import sys, time; from sqlalchemy import text; from drip.storage.store import Store\n"
        "with Store(sys.argv[1], migrate=False) as db:\n"
        "    print('ready', flush=True)\n"
        "    with db.transaction() as conn:\n"
        "        conn.execute(text(\"INSERT INTO meta (name, value) VALUES ('other', 'x')\"))\n"
        "print(time.time())\n"
    )
    with Store(url) as db:
        with db.transaction() as conn:
            conn.execute(text("INSERT INTO meta (name, value) VALUES ('first', 'x')"))
        # Hold only drip's writer lock: SQLite itself is free, so only the lock can hold the other back.
        with db._writer:
            other = subprocess.Popen([sys.executable, "-c", script, url], stdout=subprocess.PIPE, text=True)
            assert other.stdout is not None and other.stdout.readline() == "ready\n"
            time.sleep(1.0)
            assert other.poll() is None  # up and waiting, neither failing nor writing
            released = time.time()
        out, _ = other.communicate(timeout=30)
        assert other.returncode == 0
        assert float(out) - released < 1.0  # woken as soon as the lock was let go
        with db.reading() as conn:
            names = conn.execute(text("SELECT name FROM meta WHERE name IN ('first', 'other')")).scalars()
            assert sorted(names) == ["first", "other"]
    assert (tmp_path / "drip.db.lock").exists()


def test_plain_sql_reads_and_writes_values_as_the_models_do(store: Store) -> None:
    """The click path's driver-level SQL and SQLAlchemy agree on every type, both ways."""
    tokyo = dt.timezone(dt.timedelta(hours=9))
    created = dt.datetime(2027, 1, 11, 9, 0, 0, 123456, tzinfo=tokyo)
    settings = {"owners": ["Zoë <zoe@example.com>"], "n": 1.5, "nested": {"ok": True, "none": None}}
    with store.transaction() as conn:
        conn.execute(insert(cohort_table), {**cohort_row(created), "settings": settings})
    with store.reading() as conn:
        sql = Plain(conn)
        [(start, at, kept)] = sql.rows(
            "SELECT start_date, created_at, settings FROM cohorts WHERE slug = ?", ("c",)
        )
        assert sql.read_date(start) == dt.date(2027, 1, 11)
        assert sql.read_instant(at) == created and sql.read_instant(at).tzinfo is dt.UTC
        assert sql.read_json(kept) == settings

    later = dt.datetime(2027, 2, 28, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    with store.transaction() as conn:
        sql = Plain(conn)
        changed = sql.run(
            "UPDATE cohorts SET start_date = ?, updated_at = ?, settings = ? WHERE slug = ?",
            (sql.date(dt.date(2027, 3, 1)), sql.instant(later), sql.json({"é": "ü"}), "c"),
        )
        assert changed == 1
    with store.reading() as conn:
        row = conn.execute(select(cohort_table).where(cohort_table.c.slug == "c")).one()
    assert row.start_date == dt.date(2027, 3, 1)
    assert row.updated_at == later and row.updated_at.tzinfo is dt.UTC
    assert row.settings == {"é": "ü"}


def test_plain_sql_refuses_naive_instants(store: Store) -> None:
    with store.reading() as conn, pytest.raises(ValueError, match="instants must be aware"):
        Plain(conn).instant(dt.datetime(2027, 1, 11, 9, 0))


def test_plain_sql_errors_are_store_errors_and_write_nothing(store: Store, now: dt.datetime) -> None:
    with store.transaction() as conn:
        conn.execute(insert(cohort_table), cohort_row(now))
    with pytest.raises(StoreError, match="(?i)unique"):
        with store.transaction() as conn:
            sql = Plain(conn)
            sql.run("UPDATE cohorts SET name = ? WHERE slug = ?", ("Renamed", "c"))
            sql.run(
                "INSERT INTO cohorts (slug, name, program, program_path, folder, status, settings, start_date, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ("c", "Again", "p", "/p", "/c", "active", sql.json({}), sql.date(now.date()), sql.instant(now),
                 sql.instant(now)),
            )  # fmt: skip
    with store.reading() as conn:
        assert conn.execute(select(cohort_table.c.name)).scalars().all() == ["C"]


def test_bulk_inserts_keep_every_value_on_both_databases(store: Store, now: dt.datetime) -> None:
    """insert_rows: executemany on SQLite, COPY on PostgreSQL, from a generator, with the same rows back."""
    from drip.storage.store import insert_participants, insert_rows

    paris = dt.timezone(dt.timedelta(hours=1))
    with store.transaction() as conn:
        cohort_id = conn.execute(
            insert(cohort_table).returning(cohort_table.c.id), cohort_row(now)
        ).scalar_one()
        people = [
            {"cohort_id": cohort_id, "email": f"P{n}@Example.com", "email_key": f"p{n}@example.com",
             "name": f"Zoë\t{n}", "timezone": "Europe/Paris", "delegate_email": None,
             "fields": {"title": "CEO", "n": n}, "status": "active", "plan_signature": "x", "roster_row": n + 2,
             "created_at": now, "updated_at": now}
            for n in (3, 1, 2)
        ]  # fmt: skip
        ids = insert_participants(conn, people)
        events = (
            {"cohort_id": cohort_id, "participant_id": pid, "delivery_id": None, "goal": None, "kind": "k",
             "at": dt.datetime(2027, 1, 11, 9, 0, 0, 5, tzinfo=paris), "data": {"é": [1, None, "a\\b\n"]}}
            for pid in ids
        )  # fmt: skip
        insert_rows(conn, event_table, events)
    with store.reading() as conn:
        stored = {row.id: row for row in conn.execute(select(participant_table))}
        kept = conn.execute(select(event_table).order_by(event_table.c.id)).all()
    assert [stored[pid].email_key for pid in ids] == ["p3@example.com", "p1@example.com", "p2@example.com"]
    assert stored[ids[0]].fields == {"title": "CEO", "n": 3} and stored[ids[0]].name == "Zoë\t3"
    assert stored[ids[0]].delegate_email is None and stored[ids[0]].created_at == now
    assert [row.participant_id for row in kept] == ids
    assert kept[0].at == dt.datetime(2027, 1, 11, 8, 0, 0, 5, tzinfo=dt.UTC)
    assert kept[0].data == {"é": [1, None, "a\\b\n"]}


def test_the_newest_revision_is_known_from_the_file_names() -> None:
    from drip.storage.store import head_revision, known_revision

    assert known_revision() == head_revision()


def test_opening_an_up_to_date_database_leaves_alembic_unloaded(database_url: str) -> None:
    """Every command opens the database; when nothing needs migrating that is one query."""
    import subprocess
    import sys

    Store(database_url).close()
    script = "import sys; from drip.storage.store import Store; Store(sys.argv[1]).close(); print('alembic' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", script, database_url], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
