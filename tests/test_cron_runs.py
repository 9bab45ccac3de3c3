"""Periodic tasks (TASK_CRON, producer/scaling/cron.py): the runs the leading autoscaler enqueues, on a real
redis-server with real workers: each tick once, a missed tick once after a restart with no backlog, no run twice
when its record was lost or two fleets race, a run retried after a failed enqueue, and workers scaled up from zero
for a due run. The cron clock is injected: a test moves it to the tick it wants instead of waiting for the minute to
turn. The file and the ticks: tests/test_cron_file.py; what these share: tests/cron.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.job import Job

from producer.commands.redis_server import LocalRedisServer
from producer.errors import DuplicateJobError
from producer.scaling.autoscaler import bounds_from
from producer.scaling.cron import load, run_id
from producer.scaling.fleet import Fleet
from producer.scaling.local.pools import LocalPools
from producer.scaling.pools import Pool
from task_processor import keys
from task_processor.connection import connect
from task_processor.settings import Settings
from tests.conftest import TASK_MODULES, as_bytes, decoded, wait_for
from tests.cron import (
    SUM,
    Clock,
    at,
    cron_of,
    settings_fixture,  # noqa: F401  (the settings fixture)
    write_fixture,  # noqa: F401  (the write fixture)
)


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


def queued(conn: redis.Redis, queue: str = "default") -> list[str]:
    return decoded(conn.lrange(keys.queue(queue), 0, -1))


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
