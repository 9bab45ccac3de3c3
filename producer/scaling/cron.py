"""Periodic tasks (TASK_CRON), enqueued by the leading autoscaler when they come due.

The file holds JSON lines: each a task as ``task-producer enqueue --from-file`` takes it, plus ``"cron"`` (a cron
expression of 5 fields, or @hourly, @daily, @weekly, @monthly, @yearly; evaluated in UTC) and an optional
``"name"``, the entry's identity (without one, it is derived from the line's content, so an entry keeps it when other
lines move). Blank lines and lines starting with ``#`` are skipped. The whole file is checked at start-up: a bad line
stops ``autoscale`` and ``run-local`` with one line naming the file, the line and the fix, before Redis is touched.

Why the autoscaler fires them: it always runs (one leader under the Lease, even with every worker scaled to zero),
and the job it enqueues is what makes it scale the workers up, so a periodic task needs nothing else running.

Exactly once per tick: a tick's job id is ``cron-<name>-<tick in unix seconds>``, enqueued with ``unique=True``, so
two leaders (or a retry after a lost reply) racing on one tick write one job, the other getting DuplicateJobError,
which means "already fired". The hash ``task-processor:cron:ticks`` remembers the latest tick handled per entry,
which outlives the job: a new or restarted leader fires a missed tick once (the most recent one only, no backlog of
catch-ups), and an entry seen for the first time starts from now. An enqueue that fails is not recorded, so the next
pass tries again. What the leader fires, and when next, is published for ``task-producer status`` (``report.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from croniter import CroniterError, croniter  # type: ignore[import-untyped]

from producer.api import Producer, Task
from producer.errors import DuplicateJobError
from producer.scaling.report import CronReport, report_ttl
from producer.taskfile import KEYS as TASK_KEYS
from producer.taskfile import json_object, task_from_json
from task_processor import keys
from task_processor.errors import ConfigError, TaskProcessorError, first_line
from task_processor.logs import get_logger
from task_processor.observe import text
from task_processor.settings import Settings

ALIASES = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight")
"""The named schedules taken besides 5 fields (@annually is @yearly, @midnight is @daily, as in cron)."""

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""An entry's name: it goes into each run's job id, which RQ limits to letters, digits, '_' and '-'."""

OWN_KEYS = ("cron", "name")
FIXED_KEYS = {
    "job_id": 'each run gets the id cron-<name>-<tick>; name the entry with "name"',
    "unique": "each run is enqueued once per tick already",
    "at": 'a periodic task runs at its ticks; "delay" (seconds) runs each run that much after its tick',
    "depends_on": "a run cannot wait for one fixed job, which is gone once it expires; enqueue the dependent from it",
}
"""Task keys a line may not carry, and why."""
LINE_KEYS = (*OWN_KEYS, *(key for key in TASK_KEYS if key not in FIXED_KEYS))
"""What a line may carry: its schedule and name, and the keys of ``enqueue --from-file`` that make sense per run."""

EXAMPLE = '{"cron": "0 3 * * *", "name": "nightly-report", "func": "myapp.tasks.report", "args": [7]}'

log = get_logger("task_processor.cron")


@dataclass(frozen=True)
class CronEntry:
    """One line of the file: a task and when it runs."""

    name: str
    schedule: str
    task: Task
    queue: str
    line: int
    named: bool = True
    """False when the name was derived from the line's content."""

    @property
    def func(self) -> str:
        return str(self.task.func)

    def run(self, tick: int) -> Task:
        """The task of the run due at ``tick``: its id is the tick's, and it is written only once."""
        return replace(self.task, job_id=run_id(self.name, tick), unique=True)


def run_id(name: str, tick: int) -> str:
    """The job id of an entry's run at ``tick`` (unix seconds)."""
    return f"cron-{name}-{tick}"


def _start(now: float) -> datetime:
    # Half a second past the whole second: ticks fall on whole seconds, so a tick at exactly ``now`` counts as due.
    return datetime.fromtimestamp(math.floor(now) + 0.5, tz=UTC)


def latest_tick(schedule: str, now: float) -> int:
    """The latest tick of ``schedule`` at or before ``now`` (unix seconds, UTC)."""
    return int(croniter(schedule, _start(now)).get_prev(float))


def next_tick(schedule: str, now: float) -> int:
    """The first tick of ``schedule`` after ``now`` (unix seconds, UTC)."""
    return int(croniter(schedule, _start(now)).get_next(float))


def check_schedule(value: object) -> str:
    """``value`` as a schedule: 5 fields or a named one; ConfigError says what is wrong and what to write."""
    fix = 'use 5 fields (minute hour day-of-month month day-of-week, in UTC) such as "0 3 * * *", or @hourly, @daily'
    fix += ", @weekly, @monthly or @yearly"
    if not isinstance(value, str):
        raise ConfigError(f'"cron" must be a JSON string, not {json.dumps(value)}: {fix}')
    schedule = " ".join(value.split())
    if schedule.startswith("@"):
        if schedule.lower() not in ALIASES:
            raise ConfigError(f'"cron": {value!r} is not a named schedule: {fix}')
        schedule = schedule.lower()
    elif len(schedule.split()) != 5:
        raise ConfigError(f'"cron": {value!r} has {len(schedule.split())} fields, not 5: {fix}')
    try:
        croniter(schedule)
        next_tick(schedule, time.time())
    except CroniterError as exc:
        raise ConfigError(f'"cron": {value!r} is refused ({first_line(exc)}): {fix}') from None
    return schedule


def derived_name(data: dict[str, Any]) -> str:
    """A name from the line's content (its keys in any order, its spacing aside): the function and a digest."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", str(data.get("func", "")).rsplit(".", 1)[-1]).strip("-_")[:40]
    return f"{stem or 'task'}-{digest}"


def parse_entry(line: str, number: int, producer: Producer) -> CronEntry:
    """One non-blank line as an entry; a TaskProcessorError says what is wrong with it."""
    data = json_object(line, EXAMPLE)
    for key in data:
        if key in FIXED_KEYS:
            raise ConfigError(f"{key!r} cannot be set: {FIXED_KEYS[key]}")
        if key not in LINE_KEYS:
            raise ConfigError(f"unknown key {key!r}: use only {', '.join(LINE_KEYS)}")
    if "cron" not in data:
        raise ConfigError(f'"cron" is missing: say when the task runs, e.g. {EXAMPLE}')
    schedule = check_schedule(data["cron"])
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or not NAME.fullmatch(name)):
        raise ConfigError(
            f'"name": {json.dumps(name)} is refused: use 1-64 letters, digits, "_" or "-", starting with a letter or '
            "digit"
        )
    fields = {key: value for key, value in data.items() if key not in OWN_KEYS}
    task = task_from_json(json.dumps(fields), {})
    entry = CronEntry(
        name or derived_name({**fields, "cron": schedule}),
        schedule,
        task,
        producer.default_queue if task.queue is None else task.queue,
        number,
        named=name is not None,
    )
    producer.prepare(entry.run(0))  # checked as each run will be enqueued: nothing is written
    return entry


def parse(lines: Iterable[str], source: str, producer: Producer) -> tuple[CronEntry, ...]:
    """Every entry of the file; ConfigError names the file, the first bad line and the fix."""
    entries: dict[str, CronEntry] = {}
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            entry = parse_entry(stripped, number, producer)
            if (taken := entries.get(entry.name)) is not None:
                raise ConfigError(
                    f'the name {entry.name!r} is taken by line {taken.line}: give each entry a "name" of its own'
                    if entry.named
                    else f'the same entry as line {taken.line}: remove one, or give each a "name" of its own'
                )
        except TaskProcessorError as exc:
            raise ConfigError(f"TASK_CRON file {source}, line {number}: {exc}") from None
        entries[entry.name] = entry
    return tuple(entries.values())


def load(settings: Settings, modules: Iterable[str] | None = None) -> tuple[CronEntry, ...]:
    """The entries of the TASK_CRON file (none when it is unset), each checked as an enqueue would check it, with
    ``modules`` (else TASK_MODULES). Touches no Redis: the checking producer's client never connects."""
    path = settings.cron_file
    if path is None:
        return ()
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ConfigError(
            f"TASK_CRON={path!r} cannot be read ({reason}): point it at a file of JSON lines, one periodic task each"
        ) from None
    checker = Producer.from_env(settings, connection=redis.Redis(), modules=modules)
    return parse(lines, path, checker)


@dataclass(frozen=True)
class Handled:
    """What ``task-processor:cron:ticks`` holds for an entry: the latest tick handled under ``schedule`` (fired, or
    the start of a new entry), and its last run."""

    schedule: str
    tick: int
    last_run: int | None = None
    last_job_id: str | None = None

    @classmethod
    def parse(cls, raw: bytes | str | None) -> Handled | None:
        try:
            data = json.loads(text(raw)) if raw else None
            return None if data is None else cls(**data)
        except (TypeError, ValueError):
            return None  # unreadable: the entry starts from now again


class Cron:
    """The entries' runs, one ``tick`` per pass of the leading autoscaler's loop."""

    def __init__(
        self,
        connection: redis.Redis,
        entries: Sequence[CronEntry],
        settings: Settings,
        modules: Iterable[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.connection = connection
        self.entries = tuple(entries)
        self.producer = Producer.from_env(settings, connection=connection, modules=modules)
        self.clock = clock
        """Wall-clock seconds (injectable: tests move time instead of waiting for it)."""
        self.ttl = report_ttl(settings.autoscale_interval)
        self.handled: dict[str, Handled] = {}
        """Each entry's record as last read or written: a tick at or below its ``tick`` needs no look at Redis."""
        self._ticks: dict[str, tuple[int, int]] = {}
        self._published: tuple[float, list[CronReport]] = (-math.inf, [])
        self._errors: dict[str, str] = {}
        """The last fault of each entry (and of the publication) still failing, to log each cause once."""

    def tick(self) -> None:
        """Enqueue every entry's due run not yet handled, then publish the schedule. A fault (Redis down, foreign data
        under a queue's key) is logged once per cause and retried on the next pass; it stops neither the other entries
        nor the pools' pass."""
        now = self.clock()
        failed: dict[str, str] = {}
        for entry in self.entries:
            try:
                due = self._due(entry, now)
                known = self.handled.get(entry.name)
                if known is None or known.schedule != entry.schedule or known.tick < due:
                    self._catch_up(entry, due)
            except Exception as exc:  # not recorded: the same tick is tried again next pass
                failed[entry.name] = first_line(exc)
        try:
            self._publish(now)
        except Exception as exc:
            failed["(status)"] = first_line(exc)
        self._log_faults(failed)

    def _log_faults(self, failed: dict[str, str]) -> None:
        """Each new cause once, naming the entries it stops; then, once they pass again, that they recovered."""
        new: dict[str, list[str]] = {}
        for name, error in failed.items():
            if self._errors.get(name) != error:
                new.setdefault(error, []).append(name)
        for error, names in new.items():
            log.warning("periodic tasks: step failed; retrying on the next pass", error=error, entries=names)
        if recovered := [name for name in self._errors if name not in failed]:
            log.info("periodic tasks: recovered", entries=recovered)
        self._errors = failed

    def _due(self, entry: CronEntry, now: float) -> int:
        """The entry's latest tick at or before ``now``; computed again only once the next tick has come."""
        due, upcoming = self._ticks.get(entry.name, (0, -1))
        if now >= upcoming or now < due:  # the next tick has come (or the clock went back)
            due, upcoming = latest_tick(entry.schedule, now), next_tick(entry.schedule, now)
            self._ticks[entry.name] = (due, upcoming)
        return due

    def _catch_up(self, entry: CronEntry, due: int) -> None:
        seen = Handled.parse(self.connection.hget(keys.CRON_TICKS, entry.name))
        fields: dict[str, Any] = {"name": entry.name, "tick": _iso(due)}
        if seen is None or seen.schedule != entry.schedule:
            # New (or rescheduled): start from now, firing nothing of the past.
            last = (seen.last_run, seen.last_job_id) if seen is not None else (None, None)
            self.handled[entry.name] = self._record(entry.name, Handled(entry.schedule, due, *last))
            log.info(
                "periodic task scheduled", schedule=entry.schedule, next=_iso(self._ticks[entry.name][1]), **fields
            )
        elif seen.tick < due:
            job_id = run_id(entry.name, due)
            try:
                self.producer.enqueue_many([entry.run(due)])
            except DuplicateJobError:
                log.info("periodic task already enqueued for this tick", job_id=job_id, **fields)
            else:
                log.info(
                    "periodic task enqueued",
                    job_id=job_id,
                    func=entry.func,
                    queue=entry.queue,
                    previous=_iso(seen.tick),  # ticks in between were missed: only the latest runs
                    **fields,
                )
            self.handled[entry.name] = self._record(entry.name, Handled(entry.schedule, due, due, job_id))
        else:
            self.handled[entry.name] = seen  # another leader handled it already

    def _record(self, name: str, new: Handled) -> Handled:
        """Store ``new`` unless the record already holds a later tick of the same schedule (a record never moves
        back); returns what the record holds afterwards."""
        with self.connection.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(keys.CRON_TICKS)
                    held = Handled.parse(pipe.hget(keys.CRON_TICKS, name))
                    if held is not None and held.schedule == new.schedule and held.tick >= new.tick:
                        pipe.unwatch()
                        return held
                    pipe.multi()
                    pipe.hset(keys.CRON_TICKS, name, json.dumps(asdict(new)))
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue  # written meanwhile (another entry, or another leader): look again

    def _publish(self, now: float) -> None:
        """The schedule for ``task-producer status``: written when it changed, and often enough not to expire."""
        rows = [
            CronReport(
                name=entry.name,
                schedule=entry.schedule,
                func=entry.func,
                queue=entry.queue,
                next_run=self._ticks[entry.name][1],
                last_run=handled.last_run if handled else None,
                last_job_id=handled.last_job_id if handled else None,
            )
            for entry in self.entries
            if entry.name in self._ticks
            for handled in [self.handled.get(entry.name)]
        ]
        published_at, published = self._published
        if rows == published and now - published_at < self.ttl / 3:
            return
        CronReport.publish(self.connection, rows, updated_at=now, ttl=self.ttl)
        self._published = (now, rows)


def _iso(tick: int | float) -> str:
    return datetime.fromtimestamp(tick, tz=UTC).isoformat().replace("+00:00", "Z")
