"""The ``drip`` command: parse options, call one service function, print the result."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from drip import __version__, changes, service
from drip.config import SECRET_SETTINGS, SETTING_NAMES, Settings, load_settings, redact_url
from drip.core.errors import DripError
from drip.core.heap import freeze_startup_objects
from drip.core.states import CohortStatus
from drip.core.values import Address, InvalidValue, parse_email, parse_instant, terminal_safe
from drip.launch import checks, enrol, proofs
from drip.launch.cohort import Cohort, default_emails_dirs, load_cohort, mark_started, started_elsewhere
from drip.launch.roster import Limits
from drip.owners import digest, documents, progress, texts
from drip.replies import mailboxes
from drip.sending import oauth
from drip.sending.dispatcher import DispatchError, RelayPaused
from drip.storage import keyring
from drip.storage.store import Store


def echo(message: Any = None, **options: Any) -> None:
    """Print, with control and bidirectional characters shown as escapes: names and replies come from
    rosters and mailboxes, and must not drive the terminal they are printed on."""
    click.echo(terminal_safe(message) if isinstance(message, str) else message, **options)


def secho(message: str, **options: Any) -> None:
    click.secho(terminal_safe(message), **options)


class Instant(click.ParamType):
    """An ISO 8601 date and time; without an offset it is read as UTC."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        try:
            return parse_instant(str(value))
        except InvalidValue as exc:
            self.fail(str(exc), param, ctx)


class EmailAddress(click.ParamType):
    name = "EMAIL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return parse_email(str(value))
        except InvalidValue as exc:
            self.fail(str(exc), param, ctx)


#: rosters at least this long get a progress bar on a terminal
PROGRESS_FROM = 1000
NOW_HELP = "Act as if it were this moment (ISO 8601, e.g. 2027-01-11T09:00Z); default: the clock."


@dataclass
class App:
    """What every command needs: settings, and the store opened on first use."""

    settings: Settings
    _store: Store | None = field(default=None, repr=False)

    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings.database_url)
        return self._store

    def existing_store(self) -> Store | None:
        """Open the database for reading only if it holds drip's schema; never create or upgrade it."""
        if self._store is not None:
            return self._store
        url = self.settings.database_url
        if not database_exists(url):
            return None
        store = Store(url, migrate=False)
        if store.revision() is None:
            store.close()
            return None
        if store.needs_migration():
            store.close()
            raise DripError(f"the database {redact_url(url)} needs upgrading; run `drip db upgrade`")
        self._store = store
        return store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def load_cohort(self, folder: Path, *, check_rendering: bool = True) -> Cohort:
        """Load and validate a cohort folder, printing its warnings; check every email renders."""
        emails_dirs = default_emails_dirs(folder, Path(self.settings.emails_dir))
        limits = Limits(self.settings.max_roster_bytes, self.settings.max_value_chars)
        cohort = load_cohort(folder, emails_dirs, limits)
        for warning in cohort.warnings:
            secho(f"warning: {warning}", fg="yellow", err=True)
        if check_rendering:
            checks.check_cohort(cohort, self.settings)
        return cohort


def database_exists(url: str) -> bool:
    """Say whether a SQLite database exists; other databases are servers and always 'exist'."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return True
    path = Path(parsed.database).expanduser()
    return path.exists() and path.stat().st_size > 0  # an empty file is no database yet


pass_app = click.make_pass_decorator(App)


class DripGroup(click.Group):
    """Turn drip's own errors into clean one-paragraph messages, never tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DripError as exc:
            raise click.ClickException(terminal_safe(str(exc))) from exc


def _setting_options(command: Any) -> Any:
    for name in reversed(SETTING_NAMES):
        if name in SECRET_SETTINGS:
            continue  # never on a command line, where other users can read it
        command = click.option(
            f"--{name.replace('_', '-')}",
            name,
            metavar="VALUE",
            help=f"Overrides DRIP_{name.upper()}.",
        )(command)
    return command


@click.group(cls=DripGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="drip")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Settings file (default: drip.toml in the working directory).",
)
@_setting_options
@click.option("-v", "--verbose", count=True, help="Say more (-vv for debugging).")
@click.pass_context
def main(ctx: click.Context, config_file: Path | None, verbose: int, **options: str | None) -> None:
    """drip: email drip campaigns for goal-based training programs."""
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load_settings(options, config_file=config_file)
    except DripError as exc:
        raise click.ClickException(terminal_safe(str(exc))) from exc
    app = App(settings)
    ctx.obj = app
    ctx.call_on_close(app.close)


@main.command()
@click.argument("cohort_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--now", type=Instant(), help=NOW_HELP)
@click.option("--dry-run", is_flag=True, help="Validate and show what would happen; write nothing.")
@pass_app
def start(app: App, cohort_dir: Path, now: dt.datetime | None, dry_run: bool) -> None:
    """Validate COHORT_DIR, enrol its participants and plan their emails.

    Run it again after editing the roster or cohort.toml: new participants are
    enrolled and changed deadlines re-planned; nothing is sent twice.
    """
    now = now or dt.datetime.now(dt.UTC)
    cohort = app.load_cohort(cohort_dir)
    total = len(cohort.participants)
    with contextlib.ExitStack() as stack:
        progress = None
        if total >= PROGRESS_FROM:
            bar = stack.enter_context(click.progressbar(length=total, label="Enrolling", file=sys.stderr))
            progress = bar.update
        if dry_run:
            result = _dry_run(app, cohort, now, progress)
        else:
            store = app.store()
            with store.reading() as conn:
                elsewhere = started_elsewhere(cohort_dir, keyring.instance_id(conn))
            if elsewhere:
                secho(
                    f"warning: {cohort_dir} was started before in {elsewhere}; starting it in "
                    f"{redact_url(app.settings.database_url)} too means its participants are emailed "
                    "from both. If that is not what you want, stop and point DRIP_DATABASE_URL at one",
                    fg="yellow", err=True,
                )  # fmt: skip
            with store.transaction() as conn:
                result = enrol.sync_cohort(conn, cohort, now, progress)
                keyring.prepare(app.settings, conn)
                instance = keyring.instance_id(conn)
            mark_started(cohort_dir, redact_url(app.settings.database_url), instance)
    for warning in result.warnings:
        secho(f"warning: {warning}", fg="yellow", err=True)
    echo(texts.format_sync(cohort, result, dry_run=dry_run))


def _dry_run(app: App, cohort: Cohort, now: dt.datetime, progress: Any) -> enrol.SyncReport:
    """Run the real sync in a transaction that is rolled back; not even the schema changes."""
    existing = app.existing_store()
    store = existing or Store("sqlite://")  # with no database yet, a throwaway in memory
    try:
        with store.trial() as conn:
            return enrol.sync_cohort(conn, cohort, now, progress)
    finally:
        if store is not existing:
            store.close()


@main.command()
@click.argument("cohort_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--participant", "email", type=EmailAddress(), help="Only this participant.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json", "svg"]), default="table", show_default=True,
    help="svg: a drawing of each participant's line, a document of its own.",
)  # fmt: skip
@click.option(
    "--preview", is_flag=True, help="Plan from the folder as `drip start` would now, even if started."
)
@click.option("--now", type=Instant(), help=NOW_HELP)
@pass_app
def plan(
    app: App, cohort_dir: Path, email: str | None, fmt: str, preview: bool, now: dt.datetime | None
) -> None:
    """Show who gets which email when, without writing anything.

    For a cohort already started this is the stored plan, with what was sent;
    otherwise (or with --preview) what `drip start` would plan from the folder.
    """
    now = now or dt.datetime.now(dt.UTC)
    cohort = app.load_cohort(cohort_dir)
    key = email.casefold() if email else None
    store = None if preview else app.existing_store()
    entries = texts.stored_timeline(store, cohort.slug, key) if store else None
    if entries is None:
        plans = [(p, s) for p, s in enrol.plan_cohort(cohort, now) if key is None or p.key == key]
        entries = texts.planned_entries(plans)
    else:
        secho(
            f"The plan of cohort {cohort.slug!r} as stored; `drip start` applies later edits of the folder, "
            "--preview shows them.",
            err=True,
            dim=True,
        )
    if key is not None and not entries:
        in_roster = any(p.key == key for p in cohort.participants)
        hint = "; run `drip start` to enrol them, or see --preview" if in_roster else ""
        raise click.BadParameter(
            f"{email} is not in cohort {cohort.slug!r}{hint}", param_hint="--participant"
        )
    if fmt == "svg":
        from drip.owners import timeline, timeline_svg

        title = f"{cohort.name}: the plan"
        drawn = timeline.plan_timeline(title, cohort.timezone, entries, cohort.deadlines, now)
        echo(timeline_svg.draw(drawn, standalone=True), nl=False)
    else:
        echo(texts.format_timeline(entries, fmt), nl=fmt != "csv")


@main.command()
@click.argument("cohort", required=False)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
    help="json lists every overdue participant, failure and bounce; csv has one row per cohort and goal.",
)  # fmt: skip
@click.option("--now", type=Instant(), help=NOW_HELP)
@pass_app
def status(app: App, cohort: str | None, fmt: str, now: dt.datetime | None) -> None:
    """Show progress of COHORT (its id, usually the folder name), or of every cohort."""
    now = now or dt.datetime.now(dt.UTC)
    store = app.existing_store()
    names = texts.STATUS_NAMES if fmt == "table" else None
    figures = texts.cohort_status(store, cohort, now, names) if store else []
    if cohort is not None and not figures:
        raise _no_cohort(app, cohort)
    if fmt == "json":
        payload: Any = figures[0] if cohort is not None else figures
        echo(json.dumps(payload, indent=2, ensure_ascii=False))
    elif fmt == "csv":
        echo(texts.write_csv(texts.status_rows(figures), texts.STATUS_COLUMNS), nl=False)
    elif not figures:
        echo("No cohorts yet. Launch one with: drip start cohorts/NAME")
    else:
        echo(texts.format_status(figures))


@main.command("report")
@click.argument("cohort")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report here (default: COHORT-report.html; - for standard output).",
)  # fmt: skip
@click.option(
    "--within", type=click.IntRange(1, 365), default=progress.DEFAULT_WITHIN.days, show_default=True,
    help="Count a goal done this many days after an email as following from it.",
)  # fmt: skip
@click.option("--now", type=Instant(), help=NOW_HELP)
@pass_app
def report_command(app: App, cohort: str, out: Path | None, within: int, now: dt.datetime | None) -> None:
    """Write COHORT's progress report: one HTML file with a chart, every participant, every email."""
    found = _progress(app, cohort, now, dt.timedelta(days=within))
    html = documents.report_html(found)
    if out is not None and str(out) == "-":
        echo(html, nl=False)
        return
    target = out or Path(f"{found.slug}-report.html")
    _write_whole(target, html)
    echo(f"Wrote {target} ({len(found.people)} participants). Open it in a browser, or print it.")


@main.command("digest")
@click.argument("cohort")
@click.option("--preview", is_flag=True, help="Print the digest instead of sending it; records nothing.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "html", "eml"]), default="text", show_default=True,
    help="With --preview: the plain-text part, the HTML part, or the whole message.",
)  # fmt: skip
@click.option("--now", type=Instant(), help="The end of the week it covers (default: now).")
@pass_app
def digest_command(app: App, cohort: str, preview: bool, fmt: str, now: dt.datetime | None) -> None:
    """Send COHORT's owners its digest of the seven days to now (drip run sends one every week)."""
    now = now or dt.datetime.now(dt.UTC)
    store = app.existing_store()
    if store is None:
        raise _no_cohort(app, cohort)
    if preview:
        found = digest.preview(store, app.settings, cohort, now)
        if found is None:
            raise _no_cohort(app, cohort)
        text, html = digest.render_digest(found)
        if fmt == "eml":
            owner = (found.progress.owners or ("owner@example.invalid",))[0]
            data = digest.compose_digest(
                found, owner, f"<digest.preview@{Address(found.sender.address).ascii_domain}>", now
            )
            echo(data.decode("ascii"), nl=False)
        else:
            echo(text if fmt == "text" else html, nl=False)
        return
    with service.sending_one_by_one(app.settings) as send:
        sent = digest.send_now(store, app.settings, cohort, now, send)
    if sent is None:
        raise _no_cohort(app, cohort)
    where = "" if app.settings.smtp_url else f" (kept by the mail catcher in {app.settings.mail_dir})"
    echo(f"Sent the digest of {cohort} to {len(sent)} owner(s){where}.")


@main.command("export")
@click.argument("cohort")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True,
    help="csv: a row per participant with each goal's status and dates; jsonl: every event, a line each.",
)  # fmt: skip
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of standard output."
)
@click.option("--now", type=Instant(), help="Judge what is overdue at this moment (csv).")
@pass_app
def export_command(app: App, cohort: str, fmt: str, out: Path | None, now: dt.datetime | None) -> None:
    """Export COHORT's participants and goals (csv) or its events (jsonl), for a spreadsheet or an archive."""
    if fmt == "csv":
        found = _progress(app, cohort, now, progress.DEFAULT_WITHIN)
        check_ins = [c.key for c in found.check_ins.occurrences]
        sent = texts.check_ins_sent(app.store(), cohort, check_ins)
        text = texts.write_csv(
            texts.export_rows(found, sent), texts.export_columns([g.key for g in found.goals], check_ins)
        )
    else:
        store = app.existing_store()
        lines = texts.event_lines(store, cohort) if store else None
        if lines is None:
            raise _no_cohort(app, cohort)
        text = "".join(line + "\n" for line in lines)
    if out is None:
        echo(text, nl=False)
    else:
        _write_whole(out, text)
        echo(f"Wrote {out}.", err=True)


def _progress(app: App, cohort: str, now: dt.datetime | None, within: dt.timedelta) -> progress.Progress:
    store = app.existing_store()
    found = None
    if store is not None:
        with store.reading() as conn:
            found = progress.read_progress(conn, cohort, now or dt.datetime.now(dt.UTC), within)
    if found is None:
        raise _no_cohort(app, cohort)
    return found


def _no_cohort(app: App, cohort: str) -> click.ClickException:
    return click.ClickException(
        f"no cohort {cohort!r} in {redact_url(app.settings.database_url)}; start it with `drip start`"
    )


def _write_whole(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` whole or not at all: a reader never sees half a file."""
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {target}: {exc.strerror or exc}") from exc


@main.command("preview")
@click.argument("cohort_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--participant", "email", type=EmailAddress(), help="Whose email (default: the roster's first)."
)
@click.option("--step", "step_key", required=True, help="Which step, e.g. short-reminder.")
@click.option(
    "--format", "fmt", type=click.Choice(["html", "text", "eml"]), default="html", show_default=True
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead.")
@click.option("--now", type=Instant(), help=NOW_HELP)
@pass_app
def preview_command(
    app: App,
    cohort_dir: Path,
    email: str | None,
    step_key: str,
    fmt: str,
    out: Path | None,
    now: dt.datetime | None,
) -> None:
    """Show one participant's email for one step, exactly as it will be sent."""
    now = now or dt.datetime.now(dt.UTC)
    cohort = app.load_cohort(cohort_dir, check_rendering=False)
    person = proofs.find_participant(cohort, email)
    step = proofs.find_step(cohort, step_key)
    store = app.existing_store()
    with store.reading() if store else contextlib.nullcontext() as conn:
        (proof,) = proofs.proofs(cohort, app.settings, conn, person, [step], now)
    if not proof.live_links:
        secho("Links are for looking at only until the cohort is started.", err=True, dim=True)
    body: bytes = {
        "html": lambda: proof.built.rendered.html.encode(),
        "text": lambda: f"Subject: {proof.built.rendered.subject}\n\n{proof.built.rendered.text}".encode(),
        "eml": proof.built.as_bytes,
    }[fmt]()
    if out is None:
        echo(body.decode(), nl=False)
        return
    try:
        out.write_bytes(body)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror}") from None
    echo(f"Wrote {out} ({len(body):,} bytes).")


@main.command("send-test")
@click.argument("cohort_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--to", "to", type=EmailAddress(), required=True, help="The tester's address; nobody else gets it."
)
@click.option("--step", "step_key", help="Which step (one of --step or --all).")
@click.option("--all", "every", is_flag=True, help="Every step of the program.")
@click.option("--participant", "email", type=EmailAddress(), help="As whom (default: the roster's first).")
@click.option("--now", type=Instant(), help=NOW_HELP)
@pass_app
def send_test(
    app: App,
    cohort_dir: Path,
    to: str,
    step_key: str | None,
    every: bool,
    email: str | None,
    now: dt.datetime | None,
) -> None:
    """Send proofs to a tester through the configured transport; nothing is recorded."""
    if bool(step_key) == every:
        raise click.UsageError("give either --step STEP or --all")
    now = now or dt.datetime.now(dt.UTC)
    cohort = app.load_cohort(cohort_dir)
    person = proofs.find_participant(cohort, email)
    steps = list(cohort.program.steps) if every else [proofs.find_step(cohort, step_key or "")]
    store = app.existing_store()
    with store.reading() if store else contextlib.nullcontext() as conn:
        items = proofs.proofs(cohort, app.settings, conn, person, steps, now, test=True)
    sender = service.relay(app.settings)
    try:
        subjects = proofs.send_proofs(sender, items, to)
    finally:
        sender.close()
    for subject in subjects:
        echo(f"Sent to {to}: {subject}")


@main.command()
@click.option(
    "--domain", "domains", multiple=True, help="A sender domain to check (default: every cohort's)."
)
@click.option("--nameserver", metavar="HOST[:PORT]", help="Ask this DNS server instead of the system's.")
@click.option("--no-relay", is_flag=True, help="Check DNS only; do not connect to DRIP_SMTP_URL.")
@pass_app
def doctor(app: App, domains: tuple[str, ...], nameserver: str | None, no_relay: bool) -> None:
    """Check the sender domain's SPF, DKIM and DMARC records and the relay; say what to fix."""
    from drip.sending import doctor as checks
    from drip.storage.store import cohort_rows

    if not domains:
        store = app.existing_store()
        with store.reading() if store else contextlib.nullcontext() as conn:
            rows = cohort_rows(conn) if conn is not None else []
        domains = tuple(dict.fromkeys(Address(row.settings.sender.address).ascii_domain for row in rows))
    if not domains:
        raise click.UsageError("no cohort yet to take a sender domain from: give --domain example.com")
    lookup = checks.resolver_lookup(nameserver)
    findings = [
        finding for domain in domains for finding in checks.check_domain(domain, app.settings, lookup)
    ]
    if not no_relay:
        findings.append(checks.check_relay(app.settings))
    text, broken = checks.report(findings)
    echo(text)
    if broken:
        raise click.ClickException("fix the lines marked fix, then run drip doctor again")
    echo("Nothing to fix.")


@main.command()
@click.option("--once", is_flag=True, help="Send what is due, then exit (for cron and scripts).")
@click.option("--now", type=Instant(), help="Run on a virtual clock starting at this moment.")
@click.option("--until", type=Instant(), help="With --once and --now: walk virtual time up to this moment.")
@click.option(
    "--step-minutes", default=60, show_default=True, type=click.IntRange(1, 24 * 60), help="With --until."
)
@click.option("--no-web", is_flag=True, help="Do not serve the web pages.")
@pass_app
def run(
    app: App, once: bool, now: dt.datetime | None, until: dt.datetime | None, step_minutes: int, no_web: bool
) -> None:
    """Send email as it falls due: every few seconds, or once with --once."""
    if until is not None and not (once and now):
        raise click.UsageError("--until walks virtual time: use it with --once and --now")
    if until is not None and now is not None and until < now:
        raise click.UsageError("--until is before --now")
    say = _say
    store = app.store()
    freeze_startup_objects()
    try:
        if once:
            began = time.perf_counter()
            tally = service.run_once(app.settings, store, now, until, dt.timedelta(minutes=step_minutes), say)
            took = time.perf_counter() - began
            rate = f" ({tally.sent / took:,.0f}/s)" if tally.sent and took > 0 else ""
            echo(f"Done in {took:.2f} s: {tally.summary()}{rate}.")
        else:
            service.run_forever(app.settings, store, now, not no_web, say)
    except DispatchError as exc:
        raise click.ClickException(f"{exc}. What was not sent stays queued; run again.") from exc
    except RelayPaused as exc:
        raise click.ClickException(
            f"{exc}. Nothing was marked failed; fix the relay settings and run again."
        ) from exc


@main.command()
@click.argument("file", required=False, metavar="[FILE|-]")
@click.option("--mbox", type=click.Path(dir_okay=False), help="Read every message of this mbox file.")
@click.option(
    "--maildir", type=click.Path(file_okay=False), help="Read every message of this Maildir folder."
)
@click.option(
    "--imap", metavar="URL", help="Read an IMAP folder: imaps://user@host/INBOX (prefer DRIP_INBOX_URL)."
)
@click.option("--now", type=Instant(), help=NOW_HELP)
@pass_app
def ingest(
    app: App,
    file: str | None,
    mbox: str | None,
    maildir: str | None,
    imap: str | None,
    now: dt.datetime | None,
) -> None:
    """Act on replies: "done" completes the goal, bounces stop the mail, other replies are forwarded.

    Reads one message (FILE, or - for standard input), an mbox, a Maildir, an IMAP folder, or with none
    of these DRIP_INBOX_URL. A message is acted on once, however often it is read.
    """
    from drip.replies.handling import Ingester

    settings = app.settings
    source = mailboxes.source_for(
        file=file, mbox=mbox, maildir=maildir, imap=imap, inbox_url=settings.inbox_url,
        limit=settings.max_message_bytes, oauth=oauth.source_for(settings),
    )  # fmt: skip
    with mailboxes.opened(source), service.forwarding(settings) as send:
        ingester = Ingester(app.store(), settings, send)
        freeze_startup_objects()
        tally = ingester.read(source, now or dt.datetime.now(dt.UTC))
    echo(f"{tally.summary()}.")
    if tally.forward_failures:
        raise click.ClickException(
            f"{tally.forward_failures} forward(s) could not be sent; those messages are read again next time"
        )


def _say(message: str) -> None:
    echo(message, err=True)


@main.command()
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Listen on this address (default: DRIP_LISTEN, or DRIP_BASE_URL's host and port when local).",
)
@click.option(
    "--host",
    help="Listen on this host, keeping the port (0.0.0.0 for every address: then the mail catcher's inbox "
    "needs DRIP_INBOX_PASSWORD).",
)
@click.option("--port", type=click.IntRange(1, 65535), help="Listen on this port, keeping the host.")
@click.option(
    "--now", type=Instant(), help="Act as if it were this moment, for trying a campaign in virtual time."
)
@pass_app
def serve(app: App, listen: str | None, host: str | None, port: int | None, now: dt.datetime | None) -> None:
    """Serve the web pages (link confirmations, and the mail catcher's inbox when no relay is set)."""
    import dataclasses

    from drip.config import parse_listen
    from drip.web.app import create_app

    settings = app.settings
    if listen is not None:
        if host is not None or port is not None:
            raise click.UsageError("give either --listen HOST:PORT or --host/--port, not both")
        settings = dataclasses.replace(settings, listen=parse_listen(listen, "option --listen"))
    if host is not None or port is not None:
        default_host, default_port = settings.listen_address()
        where = f"[{default_host if host is None else host}]:{port or default_port}"  # brackets: IPv6 too
        settings = dataclasses.replace(settings, listen=parse_listen(where, "option --host"))
    host, port = settings.listen_address()
    clock = service.Clock(now).now if now else None
    web = create_app(settings, clock)
    server = service.web_server(settings, web, "or give --listen")
    _say(f"Serving {settings.base_url} on {host}:{port}. Stop with Ctrl-C.")
    freeze_startup_objects()
    with service.replaying_kept_clicks(web):
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
            web.extensions["drip"].database.close()


@main.group()
def cohort() -> None:
    """Pause or resume a whole cohort."""


@cohort.command("pause")
@click.argument("slug")
@pass_app
def cohort_pause(app: App, slug: str) -> None:
    """Hold every email of a cohort until it is resumed (what falls stale meanwhile is skipped)."""
    _set_cohort_status(app, slug, CohortStatus.PAUSED)


@cohort.command("resume")
@click.argument("slug")
@pass_app
def cohort_resume(app: App, slug: str) -> None:
    """Let a paused cohort's email go again."""
    _set_cohort_status(app, slug, CohortStatus.ACTIVE)


def _set_cohort_status(app: App, slug: str, status: CohortStatus) -> None:
    store = app.existing_store()
    if store is None:
        raise click.ClickException(f"no database at {redact_url(app.settings.database_url)}")
    with store.transaction() as conn:
        _, said = changes.set_cohort_status(conn, slug, status, dt.datetime.now(dt.UTC))
    echo(said)


@main.group()
def participant() -> None:
    """Manage one participant of a running cohort."""


def _change(app: App, cohort: str, email: str, now: dt.datetime | None, change: Any) -> None:
    """Apply one change to one participant in a transaction and say what it did."""
    store = app.existing_store()
    if store is None:
        raise click.ClickException(
            f"no database at {redact_url(app.settings.database_url)}; start a cohort first"
        )
    moment = now or dt.datetime.now(dt.UTC)
    with store.transaction() as conn:
        person = changes.find_person(conn, cohort, email)
        if now is not None and not click.get_current_context().meta.get("drip.backdate"):
            changes.check_not_backdated(conn, person, moment)
        outcome = change(conn, person, moment)
    echo(outcome.summary)


#: ``--backdate``: let a participant command's --now fall before the start or the last event
BACKDATE = click.option(
    "--backdate",
    is_flag=True,
    expose_value=False,
    callback=lambda ctx, _param, value: ctx.meta.__setitem__("drip.backdate", value),
    help="Allow a --now before the cohort's start or before the participant's last recorded event.",
)


def _participant_command(name: str, summary: str, *, goal: bool) -> Any:
    """Declare ``drip participant NAME COHORT EMAIL [--goal G] [--now T]``."""

    def decorate(function: Any) -> Any:
        function = pass_app(function)
        function = BACKDATE(function)
        function = click.option("--now", type=Instant(), help=NOW_HELP)(function)
        if goal:
            function = click.option("--goal", "goal", required=True, help="The goal's key, e.g. short.")(
                function
            )
        function = click.argument("email", type=EmailAddress())(function)
        function = click.argument("cohort")(function)
        return participant.command(name, help=summary)(function)

    return decorate


@_participant_command(
    "done", "Record GOAL done for EMAIL: its reminders stop, its congratulations go.", goal=True
)
def participant_done(app: App, cohort: str, email: str, goal: str, now: dt.datetime | None) -> None:
    _change(app, cohort, email, now, lambda c, p, t: changes.complete(c, p, goal, t, changes.ADMIN))


@_participant_command("waive", "Excuse EMAIL from GOAL: its email stops, with no congratulations.", goal=True)
def participant_waive(app: App, cohort: str, email: str, goal: str, now: dt.datetime | None) -> None:
    _change(app, cohort, email, now, lambda c, p, t: changes.waive(c, p, goal, t))


@_participant_command(
    "reopen", "Open GOAL again for EMAIL: its email still to come is planned again.", goal=True
)
def participant_reopen(app: App, cohort: str, email: str, goal: str, now: dt.datetime | None) -> None:
    _change(app, cohort, email, now, lambda c, p, t: changes.reopen(c, p, goal, t))


@_participant_command(
    "pause", "Hold EMAIL's email until resumed (what falls stale meanwhile is skipped).", goal=False
)
def participant_pause(app: App, cohort: str, email: str, now: dt.datetime | None) -> None:
    _change(app, cohort, email, now, changes.pause)


@_participant_command("resume", "Let a paused (or removed) participant's email go again.", goal=False)
def participant_resume(app: App, cohort: str, email: str, now: dt.datetime | None) -> None:
    _change(app, cohort, email, now, changes.resume)


@_participant_command("remove", "Stop all email to EMAIL and leave them out of the figures.", goal=False)
def participant_remove(app: App, cohort: str, email: str, now: dt.datetime | None) -> None:
    _change(app, cohort, email, now, changes.remove)


@participant.command("extend")
@click.argument("cohort")
@click.argument("email", type=EmailAddress())
@click.option("--goal", "goal", required=True, help="The goal's key, e.g. short.")
@click.option(
    "--to", "to", required=True, type=click.DateTime(["%Y-%m-%d"]), help="The new deadline, YYYY-MM-DD."
)
@click.option("--now", type=Instant(), help=NOW_HELP)
@BACKDATE
@pass_app
def participant_extend(
    app: App, cohort: str, email: str, goal: str, to: dt.datetime, now: dt.datetime | None
) -> None:
    """Move EMAIL's deadline for GOAL and re-plan that goal's email still to come."""
    _change(app, cohort, email, now, lambda c, p, t: changes.extend(c, p, goal, to.date(), t))


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Create or upgrade the database schema (drip also does this on first use)."""
    revision = app.store().revision()
    echo(f"{redact_url(app.settings.database_url)} is at schema revision {revision}.")


@main.group("keys")
def keys_group() -> None:
    """The keys that sign the links in emails: list them, rotate to a new one, retire an old one."""


@keys_group.command("list")
@pass_app
def keys_list(app: App) -> None:
    """Show every key by its id (never the key itself): where it is kept, and what it does."""
    store = app.existing_store()
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(store.reading()) if store is not None else None
        stored = keyring.stored_keys(conn)
        signing = keyring.signing_keys(app.settings, conn)[0] if (stored or app.settings.secret_key) else None
    rows = [("id", "kept in", "since", "does")]
    for key in (k for k in (app.settings.secret_key or "").split(",") if k):
        rows.append((keyring.key_id(key), "DRIP_SECRET_KEY", "", "signs" if key == signing else "verifies"))
    for entry in reversed(stored):
        does = (
            "retired " + entry.retired if entry.retired else "signs" if entry.key == signing else "verifies"
        )
        rows.append((entry.id, "the database", entry.created, does))
    if len(rows) == 1:
        echo("No keys yet: the first is made when a cohort is started (or set DRIP_SECRET_KEY).")
        return
    widths = [max(len(row[n]) for row in rows) for n in range(3)]
    for row in rows:
        echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[3])


@keys_group.command("rotate")
@pass_app
def keys_rotate(app: App) -> None:
    """Make a new key, kept in the database, the one that signs; the others keep verifying."""
    if app.settings.secret_key:
        raise click.ClickException(
            "links are signed with DRIP_SECRET_KEY: rotate by putting a new key first in it "
            "(comma-separated, the old ones after it) and restarting drip"
        )
    with app.store().transaction() as conn:
        if not keyring.stored_keys(conn):
            keyring.prepare(app.settings, conn)  # the first key, as a first start would make it
        new = keyring.rotate(conn, dt.datetime.now(dt.UTC))
    echo(
        f"Key {new.id} signs from now on (running drip processes take it up within a minute). Older keys "
        "still verify the links they signed; retire one with `drip keys retire ID` once those links no "
        "longer matter."
    )


@keys_group.command("retire")
@click.argument("key_id")
@pass_app
def keys_retire(app: App, key_id: str) -> None:
    """Stop verifying links signed with kept key KEY_ID (its links, unsubscribe ones too, stop working)."""
    with app.store().transaction() as conn:
        retired = keyring.retire(conn, app.settings, key_id, dt.datetime.now(dt.UTC))
    echo(
        f"Key {retired.id} is retired: links it signed now get a 'does not work' page (running drip "
        "processes within a minute), unsubscribe links included: a reply asking to unsubscribe still "
        "reaches you, and `drip participant remove` stops the email."
    )


@main.command()
@click.argument("folder", default=".", type=click.Path(file_okay=False, path_type=Path))
def init(folder: Path) -> None:
    """Write the Crawl > Walk > Run program and an example cohort into FOLDER (default: here)."""
    from drip.launch.starter import write_starter

    written = write_starter(folder)
    cohort_dir = written[1]
    echo(
        f"Wrote {written[0]}/ (the program: program.toml and one template per email) and {cohort_dir}/ "
        "(cohort.toml and roster.csv).\n\n"
        f"Next, edit {cohort_dir}/cohort.toml (name, start, sender, owners) and {cohort_dir}/roster.csv "
        "(your participants), then:\n"
        f"  drip start {cohort_dir} --dry-run   # check everything; nothing is written\n"
        f"  drip start {cohort_dir}             # enrol and plan\n"
        "  drip run                              # send as it falls due (set DRIP_SMTP_URL for a relay)"
    )


@main.command()
@click.argument(
    "cohort_dir", default="cohorts/example", type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option("--no-serve", is_flag=True, help="Stop after the story; do not serve the inbox.")
@click.pass_context
def demo(ctx: click.Context, cohort_dir: Path, no_serve: bool) -> None:
    """Play COHORT_DIR's first weeks on this machine, with executives who click, reply and bounce.

    Starts the cohort in a fresh SQLite database, sends its email to the built-in mail catcher in
    virtual time, and at set moments has people tap links, reply from their mail programs, snooze
    and bounce. Then shows the status, writes the report and serves the inbox. Run it again to
    start over.
    """
    from drip.demo import story

    app: App = ctx.obj
    place = story.Place.of(app.settings)
    place.start_afresh()
    cohort = app.load_cohort(cohort_dir, check_rendering=False)  # `drip start` below checks it all
    begin = dt.datetime.combine(cohort.start, dt.time(0), dt.UTC) - dt.timedelta(days=1)
    end = begin + dt.timedelta(weeks=story.WEEKS, days=2)
    place.open_replies().close()  # the demo's mark on the database: the next run may start over
    ctx.invoke(start, cohort_dir=cohort_dir, now=begin - dt.timedelta(days=6), dry_run=False)
    echo(f"\nThe first {story.WEEKS} weeks of {cohort.name!r}, in virtual time:")
    with story.told(app.settings, app.store(), cohort.slug, echo) as told:
        tally = told.walk(begin, end)
        later = told.later()
        if later is not None:
            echo("\nThen the rest of the training, and the months after it, with a check-in a month:")
            tally.merge(told.walk(end, later, story.LATER_STEP))
            end = later
        echo("\n" + "\n".join(told.epilogue()))
    echo(f"\nIn all: {tally.summary()}. Here is where the cohort stands on {end:%a %d %b %Y}:\n")
    ctx.invoke(status, cohort=cohort.slug, fmt="table", now=end)
    ctx.invoke(report_command, cohort=cohort.slug, out=None, within=progress.DEFAULT_WITHIN.days, now=end)
    echo(
        f"Every email, reply and forward is in the inbox at {app.settings.base_url}/inbox; the owners' "
        f"weekly digests are there too. See it again with: drip status {cohort.slug} "
        f"--now {end:%Y-%m-%dT%H:%MZ}"
    )
    if not no_serve:
        ctx.invoke(serve, listen=None, host=None, port=None, now=end)
