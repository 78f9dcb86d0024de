"""Build a claimed delivery's message, in the sending process or in a composing process beside it.

Rendering the templates and writing the MIME bytes is about half of the
CPU a sent email costs, and all of it in the one thread that also claims and
checks. A ``drip run`` process that finds a full batch due (a launch, a
deadline shared by a cohort) starts one composing process: the main thread
hands it a batch's checked deliveries and claims the next batch while it
composes, and the bytes come back to the sending threads. The composing
process only renders: it reads no database and sends nothing, so what a crash
can duplicate, and how an email is recorded, do not change. Should it fail or
vanish, its batch is built in the sending process, and so is every batch after.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import multiprocessing
import os
import queue as queues
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from drip.core.errors import DripError, TemplateError
from drip.core.heap import freeze_startup_objects
from drip.core.memo import Memo
from drip.core.message import CohortView, build, links_for, recipient_of
from drip.core.mime import addresses, compose
from drip.core.plan import GoalDates, Timing, find_step, goal_dates, program_end
from drip.core.program import Audience, Program, Step, program_at
from drip.core.render import Templates
from drip.core.values import InvalidValue
from drip.sending.dkim import KeySpec, signer_for
from drip.storage.records import Batch, Claimed, StoredCohort

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """A message ready for the relay."""

    row: Claimed
    sender: str
    recipients: list[str]
    data: bytes
    message_id: str
    #: whom it goes to; a refusal of any address but the participant's never bounces them
    audience: Audience = Audience.PARTICIPANT


@dataclass
class CohortParts:
    """What every email of one cohort shares."""

    cohort: StoredCohort
    program: Program
    view: CohortView
    templates: Templates
    reply_address: str
    #: goal dates and last day by ``Timing.key()``: most of a cohort's people share a few timings
    dated: Memo[tuple[object, ...], tuple[Mapping[str, GoalDates], dt.date]] = field(default_factory=Memo)

    def dates(self, timing: Timing) -> tuple[Mapping[str, GoalDates], dt.date]:
        """Return the goal dates and the last day in the program of a participant with ``timing``."""

        def work_out() -> tuple[Mapping[str, GoalDates], dt.date]:
            dates = goal_dates(self.program, timing)
            return dates, program_end(self.program, timing, dates)

        return self.dated.get(timing.key(), work_out)

    def timing(self, row: Claimed, batch: Batch) -> Timing:
        """Return the stored timing of the participant a delivery goes to."""
        person = batch.participants[row.participant_id]
        deadlines = {goal.goal: goal.deadline for goal in batch.goals.get(row.participant_id, [])}
        return self.cohort.timing(person.timezone, deadlines)

    def step(self, key: str, timing: Timing) -> Step | None:
        """Return the step ``key`` names, or None if the program no longer has it for this participant."""
        step = self.program.step(key)
        if step is not None and step.repeat is None:
            return step
        # An occurrence of a repeating step: it exists while the participant's timing still reaches it.
        return find_step(self.program, key, timing)


class CohortPartsCache:
    """Each cohort's parts, made again when its program or its row changed."""

    def __init__(self) -> None:
        self._parts: dict[int, CohortParts] = {}

    def get(self, cohort: StoredCohort, reply_address: str) -> CohortParts:
        """Raises DripError when the cohort's program cannot be loaded."""
        program = program_at(cohort.program_path)
        parts = self._parts.get(cohort.id)
        if (
            parts is not None
            and parts.program is program
            and parts.cohort == cohort
            and parts.reply_address == reply_address
        ):
            return parts
        sender, reply_to = cohort.settings.sender, cohort.settings.reply_to
        view = CohortView(
            cohort.slug,
            cohort.name,
            program,
            sender,
            reply_to,
            cohort.settings.owners,
            cohort.settings.language,
        )
        parts = CohortParts(cohort, program, view, Templates(program.path, program.language), reply_address)
        self._parts[cohort.id] = parts
        return parts


def build_or_say_why(
    row: Claimed,
    batch: Batch,
    parts: CohortParts,
    timing: Timing,
    step: Step,
    now: dt.datetime,
    *,
    base_url: str,
    keys: tuple[str, ...],
    instance: str,
) -> Outgoing | str:
    """Render and compose one delivery's message; or say why it could not be built (a template
    error, a value unfit for a header)."""
    person = batch.participants[row.participant_id]
    goal_rows = {g.goal: g for g in batch.goals.get(row.participant_id, [])}
    dates, last_day = parts.dates(timing)
    try:
        recipient = recipient_of(
            person,
            parts.program,
            timing,
            {key: goal.id for key, goal in goal_rows.items()},
            {key: goal.status for key, goal in goal_rows.items()},
            participant_id=person.id,
            vias={key: goal.via for key, goal in goal_rows.items()},
            dates=dates,
        )
        links = links_for(base_url, keys, parts.reply_address, last_day)
        built = build(
            parts.templates, parts.view, recipient, step, when=row.due_at, delivery_id=str(row.id),
            instance=instance, links=links, dated=max(now, row.due_at),
        )  # fmt: skip
        message = built.message
        if row.message_id and row.message_id != message.message_id:
            message = replace(
                message, message_id=row.message_id
            )  # a retry keeps the id it was first sent with
        data = compose(message)
    except (TemplateError, InvalidValue) as exc:
        return f"could not be built: {exc}"
    done = set((row.delivered_to or "").split(","))
    recipients = [address for address in addresses([message.to, *message.cc]) if address not in done]
    return Outgoing(row, addresses([message.sender])[0], recipients, data, message.message_id, step.to)


# --- the composing process ------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    row: Claimed
    #: the signing keys, the one its Message-ID is made with first
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Task:
    """A batch's checked deliveries, with everything needed to build them and no database."""

    now: dt.datetime
    base_url: str
    instance: str
    #: each cohort's row and reply address
    cohorts: dict[int, tuple[StoredCohort, str]]
    batch: Batch
    jobs: list[Job]
    #: the DKIM key to sign with, here rather than in the sending threads; None: not signed here
    dkim: KeySpec | None = None


_parts = CohortPartsCache()  # the composing process's own, kept from batch to batch
_settled = False


@dataclass(frozen=True)
class Composed:
    """What the composing process made of a task: for each job its message, why it could not be built,
    or None (to be built in the sending process instead, where its step is checked again: the program
    changed on disk in between); and the CPU and wall seconds it took."""

    results: list[Outgoing | str | None]
    cpu: float
    wall: float


def compose_task(task: Task) -> Composed:
    """Build each job's message, or say why it could not be (runs in the composing process)."""
    cpu, wall = time.process_time(), time.perf_counter()
    sign = signer_for(task.dkim).sign if task.dkim else None
    out: list[Outgoing | str | None] = []
    for job in task.jobs:
        cohort, reply_address = task.cohorts[job.row.cohort_id]
        parts = _parts.get(cohort, reply_address)
        timing = parts.timing(job.row, task.batch)
        step = parts.step(job.row.step, timing)
        if step is None:
            out.append(None)
            continue
        built = build_or_say_why(
            job.row, task.batch, parts, timing, step, task.now,
            base_url=task.base_url, keys=job.keys, instance=task.instance,
        )  # fmt: skip
        if sign is not None and isinstance(built, Outgoing):
            built = replace(built, data=sign(built.data))
        out.append(built)
    _settle()
    return Composed(out, time.process_time() - cpu, time.perf_counter() - wall)


def _settle() -> None:
    """Once the first batch has loaded the templates, leave what is loaded out of later garbage
    collections, as the sending process does: each batch makes thousands of objects, and full
    collections would walk all of it each time."""
    global _settled
    if not _settled:
        freeze_startup_objects()
        _settled = True


def _serve(tasks: Connection, results: Connection) -> None:
    """The composing process: compose each task that arrives, in order, until told to stop or the
    sending process is gone.

    A thread reads the tasks as they come, so the sending process never waits to hand one over while
    this process is handing back the last one's messages (pipes hold only so much).
    """
    # Ctrl-C reaches every process of the terminal's group: the sending process stops cleanly and
    # ends this one; were it interrupted itself, the batch it held would only be built again there.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    arrived: queues.SimpleQueue[Task | None] = queues.SimpleQueue()

    def read() -> None:
        try:
            while True:
                arrived.put(tasks.recv())
        except (EOFError, OSError):  # the sending process closed its end, or died
            arrived.put(None)

    threading.Thread(target=read, name="drip-composer-tasks", daemon=True).start()
    while (task := arrived.get()) is not None:
        try:
            results.send(compose_task(task))
        except (EOFError, OSError):  # the sending process is gone
            break
        except Exception as exc:  # noqa: BLE001 - a mistake in drip: said, and the batch built there instead
            results.send(Failed(f"{type(exc).__name__}: {exc}"))


@dataclass(frozen=True)
class Failed:
    """What the composing process says when composing a task raised."""

    error: str


class ComposerGone(DripError):
    """The composing process failed or vanished."""


#: batches composed before deciding whether the composing process has a core of its own
TRIAL_BATCHES = 3
#: the least share of a core it must have had while composing them
FAIR_SHARE = 0.75
#: how long the machine's idle time is watched before a composing process may start
WATCH_SECONDS = 0.2
#: how much of a core must have been idle meanwhile, on average
SPARE_CORE = 0.5


class IdleMeter:
    """How many cores of the machine sat idle, on average, since it was made (Linux's /proc/stat)."""

    def __init__(self, stat: Path = Path("/proc/stat"), clock: Callable[[], float] = time.monotonic) -> None:
        self.stat, self.clock = stat, clock
        self.began, self.first = clock(), self._read()

    def _read(self) -> tuple[int, int] | None:
        """Return the idle and total jiffies of every core so far; None where they cannot be read."""
        try:
            with self.stat.open() as lines:
                fields = [int(value) for value in lines.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        if len(fields) < 4:
            return None
        # user nice system idle iowait irq softirq steal ...; guests are counted in user already
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return idle, sum(fields[:8])

    def idle_cores(self) -> float | None:
        """Return the idle cores since the start; None until WATCH_SECONDS have passed. A machine that
        does not say counts as having none to spare."""
        if self.clock() - self.began < WATCH_SECONDS:
            return None
        now = self._read()
        if self.first is None or now is None or now[1] <= self.first[1]:
            return 0.0
        share = (now[0] - self.first[0]) / (now[1] - self.first[1])
        return share * (os.cpu_count() or 1)


class Composer:
    """One composing process, started on first use, given tasks and giving back their messages in order.

    After any failure it is no longer used. Unless asked for by the setting (``chosen``), it starts
    only where the machine has a core to spare, and is given up when it turns out to have had less
    than FAIR_SHARE of one: with as many busy processes as cores (two workers on two cores),
    composing aside only adds the cost of passing batches between processes.
    """

    def __init__(self, *, chosen: bool = False, meter: IdleMeter | None = None) -> None:
        self.chosen = chosen
        #: watches the machine from the start of the run, to decide whether to start at all
        self.meter = meter or IdleMeter()
        self._process: BaseProcess | None = None
        self._tasks: Connection | None = None
        self._results: Connection | None = None
        self.failed = False
        self.crowded = False
        self._cpu = self._wall = 0.0
        self._batches = 0

    @property
    def started(self) -> bool:
        return self._process is not None

    @property
    def usable(self) -> bool:
        return not (self.failed or self.crowded)

    def takes(self, full: bool) -> bool:
        """Say whether to hand over the batch just claimed (``full``: as large as a claim takes).

        Once started, it takes every batch while it is usable. It starts at a full batch: more is
        due than one batch, so the next can be claimed while this one is composed. Unless chosen, only
        where the machine had a core to spare while this run began; until that is known (a fraction
        of a second), batches are built in the sending process.
        """
        if not self.usable:
            return False
        if self.started:
            return True
        if not full:
            return False
        if self.chosen:
            return True
        idle = self.meter.idle_cores()
        if idle is None:
            return False
        if idle < SPARE_CORE:
            logger.info("composing in this process: %.1f of the machine's cores were idle", idle)
            self.crowded = True
            return False
        return True

    def _start(self) -> None:
        # spawn, not fork: the sending process has threads and open database connections
        context = multiprocessing.get_context("spawn")
        their_tasks, self._tasks = context.Pipe(duplex=False)
        self._results, their_results = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_serve, args=(their_tasks, their_results), name="drip-composer", daemon=True
        )
        self._process.start()
        # Only the composing process holds these ends now: when it dies, reading its results ends.
        their_tasks.close()
        their_results.close()

    def submit(self, task: Task) -> None:
        """Hand over a task; its messages come back, in turn, from :meth:`result`. Raises ComposerGone."""
        if self.failed:
            raise ComposerGone("the composing process was given up")
        if self._process is None:
            self._start()
        assert self._tasks is not None
        try:
            self._tasks.send(task)
        except OSError as exc:
            raise ComposerGone(f"the composing process is gone: {exc}") from None

    def result(self) -> list[Outgoing | str | None]:
        """Return the messages of the oldest task not yet returned. Raises ComposerGone."""
        if self._results is None or self._process is None:  # given up with this task still in it
            raise ComposerGone("the composing process was given up")
        try:
            while not self._results.poll(0.5):
                if not self._process.is_alive():
                    raise ComposerGone(f"the composing process ended (exit code {self._process.exitcode})")
            composed: Composed | Failed = self._results.recv()
        except (EOFError, OSError) as exc:
            raise ComposerGone(f"the composing process ended: {exc!r}") from None
        if isinstance(composed, Failed):
            raise ComposerGone(f"the composing process failed: {composed.error}")
        self.judge(composed)
        return composed.results

    def judge(self, composed: Composed) -> None:
        """Count a batch's CPU and wall time; past the trial, decide whether composing aside pays."""
        self._batches += 1
        if self._batches > 1:  # the first batch loads the templates, and is not typical
            self._cpu += composed.cpu
            self._wall += composed.wall
        if (
            not self.chosen
            and not self.crowded
            and self._batches > TRIAL_BATCHES
            and self._cpu < FAIR_SHARE * self._wall
        ):
            share = self._cpu / self._wall
            logger.info(
                "composing in this process from now on: composing aside had %.0f%% of a core", share * 100
            )
            self.crowded = True

    def give_up(self, why: BaseException) -> None:
        """Stop using the composing process: the batch it failed on, and each one after, is built here."""
        if not self.failed:
            logger.warning("composing in this process from now on: %s", why)
        self.failed = True
        self.close()

    def close(self) -> None:
        """End the composing process; a batch it still holds is not waited for (it goes back unsent)."""
        if self._process is None:
            return
        assert self._tasks is not None and self._results is not None
        with contextlib.suppress(OSError):
            self._tasks.send(None)
        self._tasks.close()  # its reader sees the end even if the message above could not go
        self._results.close()  # and a batch it is still handing back meets a closed pipe, not a wait
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._process = None


def composer_for(setting: int | None) -> Composer | None:
    """Return a composer as set (1: always, 0: never), else one where the machine has cores to spare."""
    if setting is not None:
        return Composer(chosen=True) if setting > 0 else None
    return Composer() if (os.cpu_count() or 1) > 1 else None
