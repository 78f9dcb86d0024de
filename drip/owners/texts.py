"""Status figures and the text that presents plans and progress. Reads; never changes state."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from drip.core.plan import PlannedStep
from drip.core.states import CohortStatus, DeliveryStatus
from drip.launch.cohort import Cohort
from drip.launch.enrol import SyncReport
from drip.launch.roster import Participant
from drip.owners import outcomes, progress
from drip.storage import outbox, store

BAR_WIDTH = 20


def _local(instant: dt.datetime, zone: str) -> str:
    local = instant.astimezone(ZoneInfo(zone))
    return f"{local:%a %Y-%m-%d %H:%M} {local.tzname()}"


def _utc(instant: dt.datetime) -> str:
    return f"{instant.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def format_sync(cohort: Cohort, result: SyncReport, *, dry_run: bool = False) -> str:
    """Summarise what ``drip start`` did."""
    verb = "Would start" if result.created else "Would update"
    if not dry_run:
        verb = "Started" if result.created else "Updated"
    lines = [f"{verb} cohort {result.slug!r}: {cohort.name} (program {cohort.program.key})"]
    people = [f"{result.enrolled} enrolled"]
    if not result.created:
        people += [
            f"{result.replanned} re-planned",
            f"{result.updated} updated",
            f"{result.unchanged} unchanged",
        ]
    lines.append(f"  participants  {', '.join(people)}")
    planned = result.planned
    total = sum(planned.values())
    parts = [
        f"{planned[status]} {label}"
        for status, label in (
            (DeliveryStatus.SCHEDULED, "scheduled"),
            (DeliveryStatus.WAITING, "waiting for a goal to be done"),
            (DeliveryStatus.SKIPPED, "skipped (their moment had passed)"),
        )
        if planned[status]
    ]
    moved = f"; {result.moved} moved by re-planning" if result.moved else ""
    lines.append(f"  emails        {total} planned" + (f": {', '.join(parts)}" if parts else "") + moved)
    for label, span in (("first send", result.first_send), ("last send", result.last_send)):
        if span:
            instant, zone = span
            lines.append(f"  {label:<13} {_utc(instant)}  ({_local(instant, zone)}, {zone})")
    for goal in cohort.program.goals:
        own = sum(1 for p in cohort.participants if goal.key in p.own_deadlines)
        extra = f"  ({own} participant{'s' if own != 1 else ''} with their own)" if own else ""
        lines.append(f"  {goal.key + ' due':<13} {cohort.deadlines[goal.key]:%a %Y-%m-%d}{extra}")
    if result.missing:
        lines.append(
            f"  {len(result.missing)} participant(s) are no longer in {cohort.roster_file.name} and stay "
            "enrolled until removed:"
        )
        lines += [f"    {name} <{email}>" for email, name in result.missing]
        if result.replanned:
            lines.append("  they keep the plan they had; changes to the cohort's dates do not reach them")
        lines.append(f"  remove one with: drip participant remove {result.slug} EMAIL")
    if result.returned:
        lines.append(
            f"  {len(result.returned)} participant(s) in the roster were removed earlier and get no email:"
        )
        lines += [f"    {name} <{email}>" for email, name in result.returned]
    if dry_run:
        lines.append("Dry run: nothing was written.")
    return "\n".join(lines)


PLAN_COLUMNS = ("email", "name", "timezone", "step", "goal", "status", "local_time", "utc", "note")


@dataclass(frozen=True)
class Entry:
    """One line of a timeline: one email for one participant."""

    email: str
    name: str
    timezone: str
    step: str
    goal: str | None
    status: str
    #: when it is due, or went; None while waiting
    at: dt.datetime | None
    note: str

    def row(self) -> dict[str, str]:
        at = self.at
        return {
            "email": self.email,
            "name": self.name,
            "timezone": self.timezone,
            "step": self.step,
            "goal": self.goal or "",
            "status": self.status,
            "local_time": at.astimezone(ZoneInfo(self.timezone)).isoformat() if at else "",
            "utc": _iso(at) if at else "",
            "note": self.note,
        }


def planned_entries(plans: Sequence[tuple[Participant, list[PlannedStep]]]) -> list[Entry]:
    """Return a preview's timeline: each participant's steps in time order."""
    entries = []
    for participant, steps in plans:
        zone = ZoneInfo(participant.timezone)
        for planned in sorted(steps, key=_when):
            note = planned.reason or ""
            if planned.status is DeliveryStatus.WAITING:
                note = f"sent when {planned.step.goal} is done"
            elif planned.due_at and planned.nominal_day not in (None, planned.due_at.astimezone(zone).date()):
                note = f"moved from {planned.nominal_day}"
            entries.append(
                Entry(
                    participant.email,
                    participant.name,
                    participant.timezone,
                    planned.step.key,
                    planned.step.goal,
                    planned.status.value,
                    planned.due_at,
                    note,
                )  # fmt: skip
            )
    return entries


def stored_timeline(db: store.Store, slug: str, email_key: str | None = None) -> list[Entry] | None:
    """Return the stored timeline of cohort ``slug`` (None if it was never started)."""
    with db.reading() as conn:
        row = store.find_cohort(conn, slug)
        return None if row is None else stored_entries(store.timeline(conn, row.id, email_key))


def stored_entries(rows: Sequence[Any]) -> list[Entry]:
    """Return the timeline stored in the database (rows of ``store.timeline``)."""
    entries = []
    for row in rows:
        note = row.last_error or ""
        if row.status == DeliveryStatus.WAITING:
            note = f"sent when {row.goal} is done"
        entries.append(
            Entry(
                row.email,
                row.name,
                row.timezone,
                row.step,
                row.goal,
                row.status,
                row.sent_at or row.due_at,
                note,
            )  # fmt: skip
        )
    return entries


def _when(planned: PlannedStep) -> tuple[bool, dt.datetime]:
    return planned.due_at is None, planned.due_at or dt.datetime.max.replace(tzinfo=dt.UTC)


def format_timeline(entries: Sequence[Entry], fmt: str) -> str:
    """Render a timeline as a table per participant, CSV or JSON."""
    if fmt == "json":
        return json.dumps([e.row() for e in entries], indent=2, ensure_ascii=False)
    if fmt == "csv":
        return write_csv([e.row() for e in entries], PLAN_COLUMNS)
    out: list[str] = []
    for email, group in itertools.groupby(entries, key=lambda e: e.email):
        items = list(group)
        out.append(f"{items[0].name} <{email}>  {items[0].timezone}")
        for e in items:
            when = f"{_local(e.at, e.timezone):<28} {_utc(e.at)}" if e.at else f"{'':<28} {'':<20}"
            out.append(f"  {e.step:<16} {e.goal or '':<6} {when}  {e.status:<9} {e.note}".rstrip())
        out.append("")
    return "\n".join(out).rstrip()


def cohort_status(
    db: store.Store, slug: str | None, now: dt.datetime, names: int | None = None
) -> list[dict[str, Any]]:
    """Return the figures of one cohort, or of all; see ``drip status --format json``.

    ``names`` caps the overdue participants listed per goal, and the failures and bounces listed
    (their counts are always whole); None lists every one.
    """
    result = []
    with db.reading() as conn:
        for cohort in store.cohort_rows(conn, slug):
            figures = store.cohort_figures(conn, cohort.id, now)
            order = list(cohort.settings.deadlines)
            goals = {
                key: figures["goals"].get(key, dict.fromkeys(["open", "done", "waived", "overdue"], 0))
                for key in order
            }
            # names=0 (the dashboard's list) asks for counts only: no query for names at all.
            listing = names != 0
            overdue = progress.overdue_names(conn, cohort.id, now, names) if listing else {}
            failed = progress.failures(conn, cohort.id, names) if listing else []
            bounced = progress.bounces(conn, cohort.id, names) if listing else []
            result.append(
                {
                    "cohort": cohort.slug,
                    "name": cohort.name,
                    "program": cohort.program,
                    "status": cohort.status,
                    "participants": figures["participants"],
                    "participant_status": figures["participant_status"],
                    "goals": goals,
                    "done_by": {key: figures["done_by"].get(key, {}) for key in order},
                    # each check-in sent so far: how many gave each answer, and how many none yet
                    "sustain": outcomes.read_check_ins(
                        conn, cohort.id, cohort.program_path, answers=False
                    ).sustain(),
                    "overdue": {
                        key: [
                            {"name": row.name, "email": row.email, "deadline": row.deadline.isoformat()}
                            for row in overdue.get(key, [])
                        ]
                        for key in order
                    },
                    "deliveries": figures["deliveries"],
                    "failures": [_problem(p) for p in failed],
                    "bounces": [_problem(p) for p in bounced],
                    # webhook endpoints with posts given up on or being retried, and the last reason
                    "webhooks": outbox.failing(conn, cohort.id),
                }
            )
    return result


#: how each way of recording a goal done reads in the status table
DONE_BY = {"link": "by link", "reply": "by reply", "admin": "by hand"}


def _done_by(ways: dict[str, int]) -> str:
    said = [f"{ways[way]} {DONE_BY[way]}" for way in DONE_BY if ways.get(way)]
    return f" ({', '.join(said)})" if said else ""


def _problem(problem: progress.Problem) -> dict[str, Any]:
    item = {"at": _iso(problem.at), "name": problem.name, "email": problem.email, "reason": problem.reason}
    return item | ({"step": problem.step} if problem.step else {})


def _iso(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = round(width * done / total) if total else 0
    return "█" * filled + "░" * (width - filled)


STATUS_COLUMNS = ("cohort", "goal", "participants", "done", "waived", "open", "overdue", "percent_done")


def status_rows(figures: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one row per cohort and goal: the counts of ``drip status --format csv``."""
    rows = []
    for item in figures:
        for goal, counts in item["goals"].items():
            total = counts["open"] + counts["done"] + counts["waived"]
            rows.append(
                {
                    "cohort": item["cohort"],
                    "goal": goal,
                    "participants": total,
                    "done": counts["done"],
                    "waived": counts["waived"],
                    "open": counts["open"],
                    "overdue": counts["overdue"],
                    "percent_done": f"{100 * counts['done'] / total:.1f}" if total else "0.0",
                }
            )
    return rows


def write_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Return ``rows`` as CSV with a header line.

    A cell that a spreadsheet would take for a formula (=, +, -, @ first) gets a leading
    apostrophe: roster names reach these files, and a file opened in Excel must not run them.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: _inert(value) for key, value in row.items()} for row in rows)
    return buffer.getvalue()


def _inert(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


#: how many overdue participants per goal, and failures and bounces, the status table names
STATUS_NAMES = 5


def format_status(figures: Sequence[dict[str, Any]], names: int = STATUS_NAMES) -> str:
    """Return the status table: progress bars per goal, who is overdue, what failed or bounced."""
    out = []
    for item in figures:
        states = ", ".join(f"{n} {s}" for s, n in item["participant_status"].items() if n and s != "removed")
        paused = "  [paused]" if item.get("status") == CohortStatus.PAUSED else ""
        out.append(f"{item['cohort']}: {item['name']} ({item['program']}){paused}")
        out.append(f"  participants  {item['participants']}" + (f" ({states})" if states else ""))
        for goal, counts in item["goals"].items():
            total = counts["open"] + counts["done"] + counts["waived"]
            finished = counts["done"] + counts["waived"]
            overdue = f", {counts['overdue']} overdue" if counts["overdue"] else ""
            out.append(
                f"  {goal:<12}  {progress_bar(finished, total)} {counts['done']}/{total} done"
                f"{_done_by(item.get('done_by', {}).get(goal, {}))}"
                f"{', ' + str(counts['waived']) + ' waived' if counts['waived'] else ''}{overdue}"
            )
            late = item["overdue"].get(goal, [])
            if late:
                shown = ", ".join(person["name"] for person in late[:names])
                more = counts["overdue"] - min(len(late), names)
                out.append(f"  {'':<12}  overdue: {shown}" + (f" and {more} more" if more > 0 else ""))
        out += [f"  {key:<12}  {check_in_line(counts)}" for key, counts in item.get("sustain", {}).items()]
        deliveries = item["deliveries"]
        shown = ", ".join(f"{n} {s}" for s, n in deliveries.items() if n)
        out.append(f"  emails        {shown or 'none'}")
        for label, key, total in (
            ("failed", "failures", deliveries.get("failed", 0)),
            ("bounced", "bounces", item["participant_status"].get("bounced", 0)),
        ):
            listed = item[key][:names]
            if listed:
                more = f", the {len(listed)} latest of {total}" if total > len(listed) else ""
                out.append(f"  {label}{more}:")
                out += [f"    {_problem_line(p)}" for p in listed]
        for hook in item.get("webhooks", []):
            out.append(f"  webhook {hook['url']}: {webhook_trouble(hook)}")
        out.append("")
    return "\n".join(out).rstrip()


#: the marks of a check-in's stacked bar: its first answer, its second, any other, and no answer
CHECK_IN_MARKS = "█▓▒"


def check_in_line(counts: dict[str, int], width: int = BAR_WIDTH) -> str:
    """Return one check-in's answers as a stacked bar and in words: "█▓░ 6/10 shared, 2 not_shared ..."."""
    total = sum(counts.values())
    given = [(answer, n) for answer, n in counts.items() if answer != outcomes.NO_ANSWER]
    bar, used = "", 0
    for index, (_, n) in enumerate(given):
        cells = round(width * n / total) if total else 0
        cells = min(cells, width - used)
        bar += CHECK_IN_MARKS[min(index, len(CHECK_IN_MARKS) - 1)] * cells
        used += cells
    bar += "░" * (width - used)
    said = [
        f"{n}/{total} {answer}" if index == 0 else f"{n} {answer}" for index, (answer, n) in enumerate(given)
    ]
    missing = counts.get(outcomes.NO_ANSWER, 0)
    return f"{bar} {', '.join(said)}" + (f", {missing} no answer" if missing else "")


def webhook_trouble(hook: dict[str, Any]) -> str:
    """Say what is wrong with one webhook endpoint: what was given up on, what is being retried, why."""
    said = []
    if hook["failed"]:
        said.append(f"{hook['failed']} given up")
    if hook["retrying"]:
        said.append(f"{hook['retrying']} being retried")
    return ", ".join(said) + (f"; last: {hook['reason']}" if hook["reason"] else "")


def _problem_line(problem: dict[str, Any]) -> str:
    step = f", {problem['step']}" if problem.get("step") else ""
    reason = f": {problem['reason']}" if problem["reason"] else ""
    return f"{problem['name']} <{problem['email']}>{step}{reason}"


# --- exports ------------------------------------------------------------------------------------


def export_columns(goals: Sequence[str], check_ins: Sequence[str] = ()) -> list[str]:
    """The export's columns: each goal's, then one per check-in sent so far (its key: sustain-1 ...)."""
    columns = ["email", "name", "timezone", "status"]
    for goal in goals:
        columns += [
            f"{goal}_status",
            f"{goal}_deadline",
            f"{goal}_completed_at",
            f"{goal}_via",
            f"{goal}_overdue",
            f"{goal}_answer",
        ]
    return columns + list(check_ins)


def export_rows(found: progress.Progress, sent: Collection[tuple[int, str]] = ()) -> list[dict[str, Any]]:
    """Return one row per participant with each goal's status, dates and answer, and their answer to
    each check-in (``drip export --format csv``): its key, ``no_answer`` for a check-in ``sent`` to
    them (participant id, check-in) that they have not answered, blank for one never sent to them."""
    rows = []
    went = set(sent)
    given = {(answer.participant_id, answer.occurrence): answer.answer for answer in found.check_ins.answers}
    occurrences = [occurrence.key for occurrence in found.check_ins.occurrences]
    for person in found.people:
        row: dict[str, Any] = {
            "email": person.email,
            "name": person.name,
            "timezone": person.timezone,
            "status": person.status,
        }
        for goal in found.goals:
            state = person.goals.get(goal.key)
            row |= {
                f"{goal.key}_status": state.status if state else "",
                f"{goal.key}_deadline": state.deadline.isoformat() if state else "",
                f"{goal.key}_completed_at": _iso(state.completed_at) if state and state.completed_at else "",
                f"{goal.key}_via": (state.via or "") if state and state.completed_at else "",
                f"{goal.key}_overdue": ("yes" if state.overdue else "no") if state else "",
                f"{goal.key}_answer": (state.answer or "") if state else "",
            }
        for key in occurrences:
            unanswered = outcomes.NO_ANSWER if (person.id, key) in went else ""
            row[key] = given.get((person.id, key), unanswered)
        rows.append(row)
    return rows


def check_ins_sent(db: store.Store, slug: str, keys: Sequence[str]) -> set[tuple[int, str]]:
    """Return whom each of cohort ``slug``'s check-ins ``keys`` went to, for the export."""
    with db.reading() as conn:
        cohort = store.find_cohort(conn, slug)
        return outcomes.sent_to(conn, cohort.id, keys) if cohort is not None else set()


def event_lines(db: store.Store, slug: str) -> list[str] | None:
    """Return cohort ``slug``'s events as JSON lines, oldest first (None if it was never started)."""
    with db.reading() as conn:
        cohort = store.find_cohort(conn, slug)
        return None if cohort is None else list(export_events(conn, cohort.id))


def export_events(conn: Any, cohort_id: int) -> Iterator[str]:
    """Yield the cohort's events as JSON lines, oldest first (``drip export --format jsonl``)."""
    people, event, delivery = store.participant_table, store.event_table, store.delivery_table
    query = (
        select(
            event.c.id,
            event.c.at,
            event.c.kind,
            event.c.goal,
            event.c.data,
            people.c.email,
            people.c.name,
            delivery.c.step,
        )  # fmt: skip
        .outerjoin(people, people.c.id == event.c.participant_id)
        .outerjoin(delivery, delivery.c.id == event.c.delivery_id)
        .where(event.c.cohort_id == cohort_id)
        .order_by(event.c.id)
        .execution_options(yield_per=2000)
    )
    for row in conn.execute(query):
        item = {"id": row.id, "at": _iso(row.at), "kind": row.kind}
        item |= {
            k: v
            for k, v in (("email", row.email), ("name", row.name), ("goal", row.goal), ("step", row.step))
            if v
        }
        item["data"] = row.data or {}
        yield json.dumps(item, ensure_ascii=False)
