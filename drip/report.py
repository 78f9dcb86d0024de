"""Status figures and the text that presents plans and progress. Reads; never changes state."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from drip import store
from drip.cohort import Cohort
from drip.enrol import SyncReport
from drip.plan import PlannedStep
from drip.roster import Participant
from drip.states import DeliveryStatus

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
        lines.append(f"  remove one with: drip participant remove {result.slug} EMAIL")
    if dry_run:
        lines.append("Dry run: nothing was written.")
    return "\n".join(lines)


PLAN_COLUMNS = ("email", "name", "timezone", "step", "goal", "status", "local_time", "utc", "note")


def plan_rows(plans: Sequence[tuple[Participant, list[PlannedStep]]]) -> list[dict[str, Any]]:
    """Flatten plans into one row per participant and step, in time order."""
    rows = []
    for participant, steps in plans:
        zone = ZoneInfo(participant.timezone)
        ordered = sorted(
            steps, key=lambda s: (s.due_at is None, s.due_at or dt.datetime.max.replace(tzinfo=dt.UTC))
        )
        for planned in ordered:
            due = planned.due_at
            note = planned.reason or ""
            if planned.status is DeliveryStatus.WAITING:
                note = f"sent when {planned.step.goal} is done"
            elif planned.status is DeliveryStatus.SCHEDULED and planned.nominal_day not in (
                None,
                _day(due, zone),
            ):
                note = f"moved from {planned.nominal_day}"
            rows.append(
                {
                    "email": participant.email,
                    "name": participant.name,
                    "timezone": participant.timezone,
                    "step": planned.step.key,
                    "goal": planned.step.goal or "",
                    "status": planned.status.value,
                    "local_time": due.astimezone(zone).isoformat() if due else "",
                    "utc": due.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if due else "",
                    "note": note,
                }
            )
    return rows


def _day(instant: dt.datetime | None, zone: ZoneInfo) -> dt.date | None:
    return instant.astimezone(zone).date() if instant else None


def format_plan(plans: Sequence[tuple[Participant, list[PlannedStep]]], fmt: str) -> str:
    rows = plan_rows(plans)
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=PLAN_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    out: list[str] = []
    for participant, _steps in plans:
        out.append(f"{participant.name} <{participant.email}>  {participant.timezone}")
        for row in (r for r in rows if r["email"] == participant.email):
            due = dt.datetime.fromisoformat(row["utc"]) if row["utc"] else None
            when = f"{_local(due, participant.timezone):<28} {_utc(due)}" if due else f"{'':<28} {'':<20}"
            out.append(
                f"  {row['step']:<16} {row['goal']:<6} {when}  {row['status']:<9} {row['note']}".rstrip()
            )
        out.append("")
    return "\n".join(out).rstrip()


def cohort_status(db: store.Store, slug: str | None, now: dt.datetime) -> list[dict[str, Any]]:
    """Return the figures of one cohort, or of all; see ``drip status --format json``."""
    result = []
    with db.reading() as conn:
        for cohort in store.cohort_rows(conn, slug):
            figures = store.cohort_figures(conn, cohort.id, now)
            order = list(cohort.settings.get("deadlines", {}))
            goals = {
                key: figures["goals"].get(key, dict.fromkeys(["open", "done", "waived", "overdue"], 0))
                for key in order
            }
            result.append(
                {
                    "cohort": cohort.slug,
                    "name": cohort.name,
                    "program": cohort.program,
                    "participants": figures["participants"],
                    "participant_status": figures["participant_status"],
                    "goals": goals,
                    "deliveries": figures["deliveries"],
                }
            )
    return result


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = round(width * done / total) if total else 0
    return "█" * filled + "░" * (width - filled)


def format_status(figures: Sequence[dict[str, Any]]) -> str:
    out = []
    for item in figures:
        states = ", ".join(f"{n} {s}" for s, n in item["participant_status"].items() if n and s != "removed")
        out.append(f"{item['cohort']}: {item['name']} ({item['program']})")
        out.append(f"  participants  {item['participants']}" + (f" ({states})" if states else ""))
        for goal, counts in item["goals"].items():
            total = counts["open"] + counts["done"] + counts["waived"]
            finished = counts["done"] + counts["waived"]
            overdue = f", {counts['overdue']} overdue" if counts["overdue"] else ""
            out.append(
                f"  {goal:<12}  {progress_bar(finished, total)} {counts['done']}/{total} done"
                f"{', ' + str(counts['waived']) + ' waived' if counts['waived'] else ''}{overdue}"
            )
        deliveries = item["deliveries"]
        shown = ", ".join(f"{n} {s}" for s, n in deliveries.items() if n)
        out.append(f"  emails        {shown or 'none'}")
        out.append("")
    return "\n".join(out).rstrip()
