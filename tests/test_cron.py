"""Periodic tasks (TASK_CRON, producer/scaling/cron.py): the file and its refusals, the ticks, and the runs the leading
autoscaler enqueues, on a real redis-server with real workers. The cron clock is injected: a test moves it to the
tick it wants instead of waiting for the minute to turn."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.job import Job

from producer.commands.redis_server import LocalRedisServer
from producer.errors import DuplicateJobError
from producer.scaling.autoscaler import bounds_from
from producer.scaling.cron import Cron, CronEntry, derived_name, latest_tick, load, next_tick, run_id
from producer.scaling.fleet import Fleet
from producer.scaling.local.pools import LocalPools
from producer.scaling.pools import Pool
from task_processor import keys
from task_processor.connection import connect
from task_processor.settings import Settings
from tests.conftest import TASK_MODULES, Proc, as_bytes, decoded, run, wait_for


def at(text: str) -> int:
    """Unix seconds of a UTC time written as ISO 8601 ("2026-12-02T12:00:30")."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


class Clock:
    """The cron's wall clock, set by the test."""

    def __init__(self, when: str) -> None:
        self.now = float(at(when))

    def __call__(self) -> float:
        return self.now

    def set(self, when: str) -> None:
        self.now = float(at(when))


class NoPools:
    """A pool source without pools: a Fleet that only runs its periodic tasks."""

    def pools(self) -> dict[str, Pool]:
        return {}

    def target(self, pool: Pool) -> Any:
        raise AssertionError("no pool to size")


class Follower:
    """An elector that never leads."""

    def tick(self) -> bool:
        return False

    def release(self) -> None:
        pass


SUM = {"name": "sum", "cron": "0 * * * *", "func": "worker.examples.add", "args": [2, 3]}


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, task_modules=(TASK_MODULES,), autoscale_interval=0.02)


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Settings]:
    """A TASK_CRON file of these lines (dicts as JSON, strings as they are), and settings naming it."""

    def make(*lines: dict[str, Any] | str, base: Settings | None = None) -> Settings:
        path = tmp_path / "cron.jsonl"
        path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
        return Settings(**{**vars(base or Settings(task_modules=(TASK_MODULES,))), "cron_file": str(path)})

    return make


def queued(conn: redis.Redis, queue: str = "default") -> list[str]:
    return decoded(conn.lrange(keys.queue(queue), 0, -1))


# --- the file ---------------------------------------------------------------------------------------------------


def test_entries_are_read_with_their_names_given_or_derived(write: Callable[..., Settings]) -> None:
    hourly = {"cron": "@hourly", "func": "worker.examples.noop", "queue": "low", "retries": 2}
    entries = load(write("# periodic tasks", "", SUM, hourly, "   "))
    assert [(e.name, e.schedule, e.func, e.queue, e.line) for e in entries] == [
        ("sum", "0 * * * *", "worker.examples.add", "default", 3),
        (entries[1].name, "@hourly", "worker.examples.noop", "low", 4),
    ]
    assert entries[1].name.startswith("noop-")
    assert entries[1].task.retries == 2
    # The derived name follows the content, not the line's place, key order or spacing.
    moved = '{ "retries": 2, "queue": "low",  "func": "worker.examples.noop", "cron": "@hourly" }'
    assert load(write(SUM, SUM | {"name": "other"}, moved))[2].name == entries[1].name
    assert derived_name({**hourly, "cron": "@daily"}) != entries[1].name
    assert entries[0].run(at("2026-12-02T13:00:00")).job_id == "cron-sum-1796216400"


def test_no_task_cron_means_no_entries() -> None:
    assert load(Settings()) == ()


BAD_LINES = [
    ('{"cron": "@daily", "func": ', "not valid JSON", "one JSON object per line"),
    ('["@daily", "worker.examples.noop"]', "expected a JSON object", '"cron": "0 3 * * *"'),
    ({"cron": "@daily", "func": "worker.examples.noop", "when": 1}, "unknown key 'when'", "use only cron, name, func"),
    ({"cron": "@daily", "func": "worker.examples.noop", "job_id": "x"}, "'job_id' cannot be set", 'with "name"'),
    ({"cron": "@daily", "func": "worker.examples.noop", "at": "2027-01-01T00:00:00Z"}, "'at' cannot be set", "delay"),
    ({"cron": "@daily", "func": "worker.examples.noop", "depends_on": "x"}, "'depends_on' cannot be set", "from it"),
    ({"func": "worker.examples.noop"}, '"cron" is missing', "e.g."),
    ({"cron": "61 * * * *", "func": "worker.examples.noop"}, "'61 * * * *' is refused", "use 5 fields"),
    ({"cron": "* * * * * *", "func": "worker.examples.noop"}, "has 6 fields, not 5", "use 5 fields"),
    ({"cron": "@reboot", "func": "worker.examples.noop"}, "not a named schedule", "@hourly, @daily"),
    ({"cron": "0 0 30 2 *", "func": "worker.examples.noop"}, "'0 0 30 2 *' is refused", "use 5 fields"),
    ({"cron": 5, "func": "worker.examples.noop"}, '"cron" must be a JSON string', "use 5 fields"),
    ({"cron": "@daily", "func": "worker.examples.noop", "name": "a b"}, '"name": "a b" is refused', "letters"),
    ({"cron": "@daily", "func": "noop"}, "is not a dotted path", "give the module path"),
    ({"cron": "@daily", "func": "os.system", "args": ["x"]}, "os.system", "TASK_MODULES"),
    ({"cron": "@daily", "func": "worker.examples.noop", "timeout": 0}, "timeout 0", ">= 1"),
    ({"cron": "@daily", "func": "worker.examples.noop", "args": "x"}, "'args' must be a JSON list", "list"),
    (SUM | {"name": "ok"}, "the name 'ok' is taken by line 2", 'a "name" of its own'),
]


@pytest.mark.parametrize(("line", "problem", "fix"), BAD_LINES, ids=[str(i) for i in range(len(BAD_LINES))])
def test_a_bad_line_is_refused_naming_the_file_the_line_and_the_fix(
    write: Callable[..., Settings], line: dict[str, Any] | str, problem: str, fix: str
) -> None:
    settings = write("# first", {"cron": "@daily", "func": "worker.examples.noop", "name": "ok"}, "", line)
    with pytest.raises(ValueError, match="TASK_CRON file") as refused:
        load(settings)
    message = str(refused.value)
    assert message.startswith(f"TASK_CRON file {settings.cron_file}, line 4: "), message
    assert problem in message, message
    assert fix in message, message
    assert "\n" not in message


def test_the_same_line_twice_without_a_name_is_refused(write: Callable[..., Settings]) -> None:
    unnamed = {k: v for k, v in SUM.items() if k != "name"}
    with pytest.raises(ValueError, match=r"line 3: the same entry as line 1: remove one, or give each a \"name\""):
        load(write(unnamed, SUM, unnamed))


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"TASK_CRON='.*missing.jsonl' cannot be read \(No such file"):
        load(Settings(cron_file=str(tmp_path / "missing.jsonl")))


@pytest.mark.parametrize("command", [["autoscale"], ["run-local", "--jobs", "0"]])
def test_a_bad_file_stops_the_command_with_exit_2_before_redis_is_touched(
    env: dict[str, str], conn: redis.Redis, tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "cron.jsonl"
    path.write_text(json.dumps(SUM) + "\n" + json.dumps({"cron": "@often", "func": "worker.examples.noop"}) + "\n")
    connections = conn.info("stats")["total_connections_received"]
    result = run(["task-producer", *command], {**env, "TASK_CRON": str(path)})
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"task-producer: error: TASK_CRON file {path}, line 2: ")
    assert "'@often' is not a named schedule" in line
    assert conn.info("stats")["total_connections_received"] == connections, "the command connected to Redis"
    assert conn.dbsize() == 0


# --- the ticks --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "now", "latest", "following"),
    [
        ("0 * * * *", "2026-12-02T12:00:00", "2026-12-02T12:00:00", "2026-12-02T13:00:00"),
        ("0 * * * *", "2026-12-02T12:59:59", "2026-12-02T12:00:00", "2026-12-02T13:00:00"),
        ("*/15 * * * *", "2026-12-02T12:31:10", "2026-12-02T12:30:00", "2026-12-02T12:45:00"),
        ("@daily", "2026-12-02T00:00:01", "2026-12-02T00:00:00", "2026-12-03T00:00:00"),
        ("30 3 * * 1", "2026-12-02T12:00:00", "2026-11-30T03:30:00", "2026-12-07T03:30:00"),
        ("@yearly", "2026-12-31T23:59:59", "2026-01-01T00:00:00", "2027-01-01T00:00:00"),
    ],
)
def test_the_latest_and_the_next_tick_in_utc(schedule: str, now: str, latest: str, following: str) -> None:
    assert latest_tick(schedule, at(now) + 0.7) == at(latest)
    assert next_tick(schedule, at(now) + 0.7) == at(following)


# --- the runs ---------------------------------------------------------------------------------------------------


def cron_of(conn: redis.Redis, settings: Settings, clock: Clock, entries: tuple[CronEntry, ...]) -> Cron:
    return Cron(conn, entries, settings, clock=clock)


def test_a_new_entry_starts_from_now_and_runs_each_next_tick_once(
    conn: redis.Redis, settings: Settings, write: Callable[..., Settings]
) -> None:
    clock = Clock("2026-12-02T12:00:30")
    cron = cron_of(conn, settings, clock, load(write(SUM | {"meta": {"by": "cron"}}, base=settings)))
    cron.tick()
    assert queued(conn) == [], "a tick from before the entry was known ran"
    for when in ("2026-12-02T12:59:59", "2026-12-02T13:00:00", "2026-12-02T13:00:01", "2026-12-02T13:30:00"):
        clock.set(when)
        cron.tick()
    assert queued(conn) == [run_id("sum", at("2026-12-02T13:00:00"))]
    job = Job.fetch(queued(conn)[0], connection=conn, serializer="json")
    assert (job.func_name, list(job.args), job.origin) == ("worker.examples.add", [2, 3], "default")
    assert job.meta == {"by": "cron"}
    clock.set("2026-12-02T14:00:00")
    cron.tick()
    assert queued(conn) == [run_id("sum", at(f"2026-12-02T{h}:00:00")) for h in (13, 14)]


def test_a_missed_tick_runs_once_after_a_restart_with_no_backlog(
    conn: redis.Redis, settings: Settings, write: Callable[..., Settings]
) -> None:
    clock = Clock("2026-12-02T12:00:30")
    cron_of(conn, settings, clock, load(write(SUM, base=settings))).tick()
    # Down from 12:00:30 to 15:10: the 13:00, 14:00 and 15:00 runs were missed. A new file adds an entry meanwhile.
    clock.set("2026-12-02T15:10:00")
    added = {"name": "added", "cron": "*/5 * * * *", "func": "worker.examples.noop"}
    restarted = cron_of(connect(settings.redis_url), settings, clock, load(write(SUM, added, base=settings)))
    for _ in range(3):
        restarted.tick()
    assert queued(conn) == [run_id("sum", at("2026-12-02T15:00:00"))], "not the latest missed run alone"
    clock.set("2026-12-02T15:15:00")
    restarted.tick()
    assert queued(conn)[1:] == [run_id("added", at("2026-12-02T15:15:00"))]


def test_a_run_whose_record_was_lost_is_not_enqueued_twice(
    conn: redis.Redis, settings: Settings, write: Callable[..., Settings], logs: Callable[[], list[dict[str, Any]]]
) -> None:
    """The enqueue went through but the record did not (the leader died in between): the next leader's enqueue of
    the same tick is refused as a duplicate, and taken as done."""
    clock = Clock("2026-12-02T12:00:30")
    entries = load(write(SUM, base=settings))
    first = cron_of(conn, settings, clock, entries)
    first.tick()
    before = conn.hget(keys.CRON_TICKS, "sum")
    clock.set("2026-12-02T13:00:05")
    first.tick()
    conn.hset(keys.CRON_TICKS, "sum", before)
    with pytest.raises(DuplicateJobError):
        first.producer.enqueue_many([entries[0].run(at("2026-12-02T13:00:00"))])
    cron_of(connect(settings.redis_url), settings, clock, entries).tick()
    assert queued(conn) == [run_id("sum", at("2026-12-02T13:00:00"))]
    assert json.loads(as_bytes(conn.hget(keys.CRON_TICKS, "sum")))["tick"] == at("2026-12-02T13:00:00")
    assert [e["job_id"] for e in logs() if e["event"] == "periodic task already enqueued for this tick"] == [
        run_id("sum", at("2026-12-02T13:00:00"))
    ]


def test_an_entry_that_cannot_be_enqueued_holds_up_no_other(
    conn: redis.Redis, settings: Settings, write: Callable[..., Settings], logs: Callable[[], list[dict[str, Any]]]
) -> None:
    clock = Clock("2026-12-02T12:00:30")
    low = SUM | {"name": "low", "queue": "low"}
    cron = cron_of(conn, settings, clock, load(write(low, SUM, base=settings)))
    cron.tick()
    conn.set(keys.queue("low"), "not a list")  # foreign data: the enqueue script refuses to write there
    clock.set("2026-12-02T13:00:00")
    cron.tick()
    cron.tick()
    assert queued(conn) == [run_id("sum", at("2026-12-02T13:00:00"))]
    (failed,) = [e for e in logs() if e["event"] == "periodic tasks: step failed; retrying on the next pass"]
    assert failed["entries"] == ["low"], failed
    assert keys.queue("low") in failed["error"], failed
    conn.delete(keys.queue("low"))
    clock.set("2026-12-02T13:05:00")
    cron.tick()
    cron.tick()
    assert queued(conn, "low") == [run_id("low", at("2026-12-02T13:00:00"))], "the run was lost, or doubled"
    assert [e["entries"] for e in logs() if e["event"] == "periodic tasks: recovered"] == [["low"]]


def test_a_rescheduled_entry_starts_from_now(
    conn: redis.Redis, settings: Settings, write: Callable[..., Settings]
) -> None:
    clock = Clock("2026-12-02T12:00:30")
    cron_of(conn, settings, clock, load(write(SUM, base=settings))).tick()
    clock.set("2026-12-02T15:10:00")  # hourly became every 5 minutes while no leader ran: no past run of either
    cron = cron_of(conn, settings, clock, load(write(SUM | {"cron": "*/5 * * * *"}, base=settings)))
    cron.tick()
    assert queued(conn) == []
    clock.set("2026-12-02T15:15:00")
    cron.tick()
    assert queued(conn) == [run_id("sum", at("2026-12-02T15:15:00"))]


def handled(fleet: Fleet, name: str = "minutely") -> int | None:
    seen = fleet.cron.handled.get(name) if fleet.cron is not None else None
    return None if seen is None else seen.tick


def test_two_fleets_racing_on_one_redis_enqueue_each_tick_once(
    redis_url: str, conn: redis.Redis, settings: Settings, write: Callable[..., Settings]
) -> None:
    clock = Clock("2026-12-02T12:00:30")
    entries = load(write(SUM | {"name": "minutely", "cron": "* * * * *"}, base=settings))

    def fleet(elector: Follower | None = None) -> Fleet:
        cron = cron_of(connect(redis_url), settings, clock, entries)
        return Fleet(connect(redis_url), NoPools(), settings, elector=elector, cron=cron)

    fleets = [fleet(), fleet(), fleet(Follower())]
    stop = threading.Event()
    threads = [threading.Thread(target=f.run, args=(stop,), daemon=True) for f in fleets]
    for thread in threads:
        thread.start()
    minutes = [at(f"2026-12-02T12:{m:02d}:00") for m in range(1, 9)]
    try:
        for minute in minutes:
            clock.now = float(minute)

            def both_leaders_saw(m: int = minute) -> bool:
                return all(handled(f) == m for f in fleets[:2])

            wait_for(both_leaders_saw, what="both leaders to see the tick")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert queued(conn) == [run_id("minutely", m) for m in minutes]
    assert handled(fleets[2]) is None, "a follower ran periodic tasks"


@pytest.fixture
def own_redis() -> Iterator[LocalRedisServer]:
    with LocalRedisServer() as server:  # AOF on: what was written survives the kill
        yield server


@pytest.mark.timeout(90)
def test_a_run_that_fails_to_enqueue_is_retried_on_the_next_pass(
    own_redis: LocalRedisServer, write: Callable[..., Settings], logs: Callable[[], list[dict[str, Any]]]
) -> None:
    settings = write(SUM, base=Settings(redis_url=own_redis.url, task_modules=(TASK_MODULES,)))
    clock = Clock("2026-12-02T12:00:30")
    cron = cron_of(connect(own_redis.url), settings, clock, load(settings))
    cron.tick()
    own_redis.kill()
    clock.set("2026-12-02T13:00:10")
    cron.tick()
    cron.tick()
    failed = [e for e in logs() if e["event"] == "periodic tasks: step failed; retrying on the next pass"]
    assert len(failed) == 1, failed
    own_redis.start()
    cron.tick()
    cron.tick()
    conn = redis.Redis.from_url(own_redis.url)
    assert queued(conn) == [run_id("sum", at("2026-12-02T13:00:00"))]
    assert [e["event"] for e in logs()].count("periodic tasks: recovered") == 1


@pytest.mark.timeout(90)
def test_with_no_worker_up_a_due_run_scales_the_workers_up_and_one_runs_it(
    redis_url: str, conn: redis.Redis, settings: Settings, write: Callable[..., Settings], tmp_path: Path
) -> None:
    loop = Settings(**{**vars(settings), "scale_down_delay": 0.5, "target_wait": None, "start_spares": 0})
    pool = Pool("default", "task-processor", ("default",), bounds_from(loop, 0, 2), labelled=False)
    env = loop.child_env(REDIS_URL=redis_url, LOG_FORMAT="json")
    pools = LocalPools(conn, env, {"default": pool}, tmp_path).start()
    clock = Clock("2026-12-02T12:00:30")
    fleet = Fleet(conn, pools, loop, cron=cron_of(connect(redis_url), loop, clock, load(write(SUM, base=loop))))
    stop = threading.Event()
    thread = threading.Thread(target=fleet.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: fleet.cron and "sum" in fleet.cron.handled and "default" in fleet.pools, what="a first pass")
        assert pools.deployments["default"].get_replicas() == 0
        clock.set("2026-12-02T13:00:00")
        job_id = run_id("sum", at("2026-12-02T13:00:00"))
        wait_for(lambda: conn.hget(keys.job(job_id), "status") == b"finished", timeout=60, what="a worker to run it")
    finally:
        stop.set()
        thread.join(timeout=10)
        pools.close()
    assert Job.fetch(job_id, connection=conn, serializer="json").return_value() == 5
    first = fleet.pools["default"].events[0]
    assert (first.previous, first.desired, first.reason) == (0, 1, "scale-up")


# --- status -----------------------------------------------------------------------------------------------------


def test_status_shows_the_periodic_tasks(
    env: dict[str, str], conn: redis.Redis, settings: Settings, write: Callable[..., Settings]
) -> None:
    assert json.loads(run(["task-producer", "status", "--json"], env).stdout)["cron"] == {}
    clock = Clock("2026-12-02T12:00:30")
    hourly = {"name": "sync", "cron": "@daily", "func": "worker.examples.noop", "queue": "low"}
    cron = cron_of(conn, settings, clock, load(write(SUM, hourly, base=settings)))
    cron.tick()
    clock.set("2026-12-02T13:00:00")
    cron.tick()
    facts = json.loads(run(["task-producer", "status", "--json"], env).stdout)["cron"]
    assert {name: {k: v for k, v in c.items() if k != "updated_seconds_ago"} for name, c in facts.items()} == {
        "sum": {
            "schedule": "0 * * * *",
            "func": "worker.examples.add",
            "queue": "default",
            "last_run": "2026-12-02T13:00:00Z",
            "last_job_id": run_id("sum", at("2026-12-02T13:00:00")),
            "next_run": "2026-12-02T14:00:00Z",
        },
        "sync": {
            "schedule": "@daily",
            "func": "worker.examples.noop",
            "queue": "low",
            "last_run": None,
            "last_job_id": None,
            "next_run": "2026-12-03T00:00:00Z",
        },
    }
    table = run(["task-producer", "status"], env).stdout.splitlines()
    start = next(i for i, line in enumerate(table) if line.startswith("CRON"))
    assert [line.split() for line in table[start : start + 3]] == [
        ["CRON", "SCHEDULE", "FUNC", "QUEUE", "LAST", "RUN", "NEXT", "RUN"],
        [
            "sum",
            "0",
            "*",
            "*",
            "*",
            "*",
            "worker.examples.add",
            "default",
            "2026-12-02",
            "13:00Z",
            "2026-12-02",
            "14:00Z",
        ],
        ["sync", "@daily", "worker.examples.noop", "low", "-", "2026-12-03", "00:00Z"],
    ]
    assert conn.ttl(keys.CRON_STATUS) > 0, "the published schedule would outlive its leader"


def test_run_local_takes_task_cron_and_publishes_its_schedule(
    env: dict[str, str], conn: redis.Redis, tmp_path: Path, spawn: Callable[..., Proc]
) -> None:
    path = tmp_path / "cron.jsonl"
    path.write_text(json.dumps(SUM) + "\n")
    spawn("task-producer", "run-local", "--jobs", "0", "--keep-running", extra_env={"TASK_CRON": str(path)})
    wait_for(lambda: conn.hget(keys.CRON_STATUS, "sum"), timeout=30, what="run-local to publish its periodic task")
    assert json.loads(as_bytes(conn.hget(keys.CRON_TICKS, "sum")))["schedule"] == "0 * * * *"
