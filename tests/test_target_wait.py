"""AUTOSCALE_TARGET_WAIT, the autoscaler's latency target: the oldest queued job's age and the worker tallies it
reads from Redis, the setting, what status, metrics and the decision log show of it, and a real fleet under a
steady stream of jobs, with and without the target."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.job import Job
from rq.utils import utcformat

from producer import Producer, Task
from producer.commands.status import rate
from producer.scaling import metrics
from producer.scaling.autoscaler import Autoscaler, TargetState, bounds_from
from producer.scaling.local.deployment import LocalDeployment
from task_processor import keys
from task_processor.errors import ConfigError
from task_processor.observe import WorkerInfo, list_workers, oldest_waits, queue_head_ages
from task_processor.settings import Settings
from tests.conftest import Proc, run, running, wait_for


class FixedTarget:
    """A Deployment that takes every write (the loop's inputs and outputs are what is under test)."""

    name = "task-processor"

    def __init__(self, replicas: int) -> None:
        self.state = TargetState(replicas)

    def read(self, fresh: bool = False) -> TargetState:
        return self.state

    def set_replicas(self, replicas: int, workers: Sequence[WorkerInfo] = ()) -> None:
        self.state = TargetState(replicas)


class FakeClock:
    """The autoscaler's monotonic clock (the rates' time base), moved on by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def backdate(conn: redis.Redis, job: Job, seconds: float) -> None:
    """As if ``job`` had been enqueued ``seconds`` ago: its enqueued_at, in RQ's own format."""
    conn.hset(job.key, "enqueued_at", utcformat(datetime.now(UTC) - timedelta(seconds=seconds)))


# ------------------------------------------------------------------------------------------- observe: oldest job


def test_the_oldest_queued_jobs_age_per_queue(producer: Producer, conn: redis.Redis) -> None:
    before = time.time()
    producer.enqueue("worker.examples.noop", queue="high")
    after = time.time()
    producer.enqueue("worker.examples.noop", queue="high")  # behind the head: its age is not the queue's
    old = producer.enqueue("worker.examples.noop", queue="low")
    backdate(conn, old, 95)
    now = after + 10  # a look 10 s after the enqueue: the head has waited 10 s (and the enqueue's own span)
    waits = oldest_waits(conn, ["high", "low", "empty"], now=now)
    assert now - after - 0.01 <= waits["high"] <= now - before + 0.01
    assert waits["low"] == pytest.approx(95 + 10, abs=1)  # backdated 95 s, looked at 10 s later
    assert waits["empty"] == 0.0
    # Read without ``now``: the wall clock, the same job.
    assert 0 <= oldest_waits(conn, ["high"])["high"] < time.time() - before + 0.01


def test_a_queue_whose_head_is_not_a_readable_job_has_waited_zero(producer: Producer, conn: redis.Redis) -> None:
    garbage = producer.enqueue("worker.examples.noop", queue="garbage")
    conn.hset(garbage.key, "enqueued_at", "not a date")
    undecodable = producer.enqueue("worker.examples.noop", queue="undecodable")
    conn.hset(undecodable.key, "enqueued_at", b"\xff\xfe2024")
    future = producer.enqueue("worker.examples.noop", queue="future")
    backdate(conn, future, -3600)  # a producer whose clock runs an hour ahead
    missing = producer.enqueue("worker.examples.noop", queue="missing")
    conn.hdel(missing.key, "enqueued_at")
    conn.rpush(keys.queue("orphan"), "no-such-job")
    conn.set(keys.queue("foreign"), "a string where RQ keeps a list")
    conn.rpush(keys.queue("not-a-hash"), "plain")
    conn.set(f"{keys.JOB_PREFIX}plain", "a string where RQ keeps a hash")
    queues = ["garbage", "undecodable", "future", "missing", "orphan", "foreign", "not-a-hash", "empty"]
    assert oldest_waits(conn, queues) == dict.fromkeys(queues, 0.0)
    ages = queue_head_ages(conn, queues)
    assert ages["future"] == 0.0  # a readable date, only not in the past
    assert all(ages[q] is None for q in queues if q != "future")


def test_the_autoscaler_sees_the_oldest_wait_across_its_queues(producer: Producer, conn: redis.Redis) -> None:
    producer.enqueue("worker.examples.noop", queue="high")
    backdate(conn, producer.enqueue("worker.examples.noop", queue="low"), 42)
    backdate(conn, producer.enqueue("worker.examples.noop", queue="elsewhere"), 500)  # not one of its queues
    look = Autoscaler(conn, ("high", "low"), FixedTarget(1), bounds_from(Settings())).observe()
    assert set(look.waits) == {"high", "low"}
    assert 42 <= look.waits["low"] < 50
    assert look.observation.oldest_wait == look.waits["low"] == max(look.waits.values())


# ---------------------------------------------------------------------------------------- observe: worker tallies


def test_worker_tallies_are_read_with_the_worker(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    jobs = producer.enqueue_many(
        [Task("worker.examples.sleep", (0.2,)), Task("worker.examples.sleep", (0.2,)), Task("worker.examples.fail")]
    )
    spawn("task-worker")
    wait_for(lambda: all(j.get_status(refresh=True) in ("finished", "failed") for j in jobs), 30, "the three jobs")
    (worker,) = wait_for(lambda: [w for w in list_workers(conn) if w.completed == 3], 10, "the worker's tally")
    assert 0.4 <= worker.working_time < 5


def test_worker_tallies_of_foreign_data_read_as_zero(conn: redis.Redis) -> None:
    workers: dict[str, dict[Any, Any]] = {
        "counted": {"successful_job_count": "7", "failed_job_count": "2", "total_working_time": "3.5"},
        "garbage": {"successful_job_count": "x", "failed_job_count": "-1", "total_working_time": "nan"},
        "fresh": {},
    }
    for name, fields in workers.items():
        conn.sadd(keys.WORKERS, f"{keys.WORKER_PREFIX}{name}")
        conn.hset(f"{keys.WORKER_PREFIX}{name}", mapping={"last_heartbeat": "2024-01-01T00:00:00Z", **fields})
    tallies = {w.name: (w.completed, w.working_time) for w in list_workers(conn)}
    assert tallies == {"counted": (9, 3.5), "garbage": (0, 0.0), "fresh": (0, 0.0)}


# ------------------------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [(None, 30.0), ("", 30.0), ("  ", 30.0), ("2", 2.0), (" 0.5 ", 0.5), ("off", None), ("OFF", None)],
)
def test_the_target_is_30_seconds_unless_set_or_off(raw: str | None, parsed: float | None) -> None:
    settings = Settings.from_env({} if raw is None else {"AUTOSCALE_TARGET_WAIT": raw})
    assert settings.target_wait == parsed
    assert bounds_from(settings).target_wait == parsed


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "inf", "nan", "2s", "none"])
def test_a_bad_target_wait_is_one_line_naming_the_variable(raw: str, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"^AUTOSCALE_TARGET_WAIT=.* seconds > 0: set it to one .*or to off"):
        Settings.from_env({"AUTOSCALE_TARGET_WAIT": raw})
    result = run(["task-producer", "status"], {**env, "AUTOSCALE_TARGET_WAIT": raw})
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "AUTOSCALE_TARGET_WAIT" in line, line


# ------------------------------------------------------------------------------- status, metrics, decision log


def test_status_metrics_and_the_decision_log_show_wait_arrivals_and_service(
    env: dict[str, str], producer: Producer, conn: redis.Redis, logs: Callable[[], list[dict[str, Any]]]
) -> None:
    worker = f"{keys.WORKER_PREFIX}counting"
    conn.sadd(keys.WORKERS, worker)
    conn.hset(
        worker,
        mapping={"last_heartbeat": "2024-01-01T00:00:00Z", "queues": "default", "successful_job_count": 4},
    )
    clock = FakeClock()
    settings = Settings.from_env({"AUTOSCALE_TARGET_WAIT": "2", "AUTOSCALE_MAX": "5"})
    autoscaler = Autoscaler(conn, ("default",), FixedTarget(1), bounds_from(settings), clock=clock)
    autoscaler.step()  # the first look: counters to measure from
    jobs = producer.enqueue_many([Task("worker.examples.noop") for _ in range(200)])
    backdate(conn, jobs[0], 95)
    conn.hincrby(worker, "successful_job_count", 8)
    conn.hincrby(worker, "failed_job_count", 2)
    conn.hincrbyfloat(worker, "total_working_time", 5.0)  # 10 jobs in 5 s of work: 2 jobs/s per busy worker
    clock.now += 10
    autoscaler.step()
    look = autoscaler.observe()
    arrival, service = look.rates.arrival["default"], look.rates.service
    assert service == pytest.approx(2.0)
    assert 0 < arrival <= 20  # 200 jobs in 10 s, smoothed
    assert look.observation.arrival_rate == pytest.approx(arrival)
    assert look.observation.service_rate == pytest.approx(2.0)

    # Prometheus
    def sample(name: str, **labels: str) -> float | None:
        return metrics.REGISTRY.get_sample_value(name, labels)

    assert 95 <= sample("task_processor_queue_oldest_wait_seconds", queue="default") < 110  # type: ignore[operator]
    assert sample("task_processor_queue_arrival_rate", queue="default") == pytest.approx(arrival)
    assert sample("task_processor_service_rate", pool="default") == pytest.approx(2.0)

    # The decision log: the second look decided anew (the latency rule, now that the rates are known).
    decision = [line for line in logs() if line.get("event") == "scaling decision"][-1]
    assert 95 <= decision["oldest_wait"]["default"] < 110
    assert decision["arrival_rate"] == {"default": pytest.approx(arrival, abs=0.001)}
    assert decision["service_rate"] == pytest.approx(2.0)
    assert decision["target_wait"] == 2.0

    # task-producer status, as JSON and as the table
    facts = json.loads(run(["task-producer", "status", "--json"], env).stdout)["autoscaler"]
    assert facts["service_rate"] == 2.0
    assert facts["target_wait"] == 2.0
    assert facts["queues"]["default"]["arrival_rate"] == round(arrival, 2)
    assert 95 <= facts["queues"]["default"]["oldest_wait_seconds"] < 110
    table = run(["task-producer", "status"], env).stdout
    assert re.search(r"^QUEUE\s.*\sBUSY\s+ARRIVAL/S\s+OLDEST$", table, re.M), table
    assert re.search(rf"^default\s+200\s.*\s{re.escape(rate(arrival))}\s+1m3\ds$", table, re.M), table
    assert "service: 2.00 jobs/s per busy worker; target wait 2s" in table


def test_status_before_any_job_ended_shows_no_service_rate(
    env: dict[str, str], producer: Producer, conn: redis.Redis
) -> None:
    producer.enqueue("worker.examples.noop")
    Autoscaler(conn, ("default",), FixedTarget(1), bounds_from(Settings())).step()
    service = metrics.REGISTRY.get_sample_value("task_processor_service_rate", {"pool": "default"})
    assert service is not None
    assert math.isnan(service)
    facts = json.loads(run(["task-producer", "status", "--json"], env).stdout)["autoscaler"]
    assert (facts["service_rate"], facts["target_wait"]) == (None, 30.0)  # the default target
    assert "service: - jobs/s per busy worker; target wait 30s" in run(["task-producer", "status"], env).stdout


# ------------------------------------------------------------------------------------ end to end: a real fleet

TARGET_WAIT = 2.0
JOB_SECONDS = 0.3
RATE = 8.0  # jobs/s: 2.4 busy workers' worth of 0.3 s jobs, more than one worker can take
STREAM_SECONDS = 15.0


def stream(producer: Producer, seen: Callable[[], None]) -> list[Job]:
    """Enqueue one JOB_SECONDS job every 1/RATE s for STREAM_SECONDS, on a schedule (no drift); ``seen`` runs
    between two enqueues."""
    jobs = []
    start = time.monotonic()
    for i in range(int(RATE * STREAM_SECONDS)):
        due = start + i / RATE
        while (late := due - time.monotonic()) > 0:
            seen()
            time.sleep(min(late, 0.05))
        jobs.append(producer.enqueue("worker.examples.sleep", JOB_SECONDS))
    return jobs


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("target_wait", [str(TARGET_WAIT), "off"], ids=["target-2s", "target-off"])
def test_a_steady_stream_grows_the_fleet_to_keep_waits_near_the_target(
    target_wait: str, env: dict[str, str], producer: Producer, conn: redis.Redis, tmp_path: Path
) -> None:
    # The count rule alone keeps one worker: 1000 jobs per worker is never reached.
    environ = {
        **env,
        "AUTOSCALE_MIN": "1",
        "AUTOSCALE_MAX": "6",
        "AUTOSCALE_JOBS_PER_WORKER": "1000",
        "AUTOSCALE_SCALE_DOWN_DELAY": "60",
        "AUTOSCALE_INTERVAL": "0.25",
    }
    environ["AUTOSCALE_TARGET_WAIT"] = target_wait
    settings = Settings.from_env(environ)
    deployment = LocalDeployment(
        conn,
        settings.child_env(REDIS_URL=settings.redis_url, LOG_FORMAT="json"),
        settings.queues,
        replicas=1,
        log_file=tmp_path / "w.log",
    ).start()
    autoscaler = Autoscaler(conn, settings.queues, deployment, bounds_from(settings), settings.autoscale_interval)
    peak = 0

    def seen() -> None:
        nonlocal peak
        peak = max(peak, len(list_workers(conn)))

    try:
        with running(autoscaler):
            wait_for(lambda: len(list_workers(conn)) == 1, timeout=30, what="the first worker")
            jobs = stream(producer, seen)
            if target_wait == "off":
                # Without the target nothing asks for a second worker, and the backlog's head has waited for long.
                head = oldest_waits(conn, settings.queues)[settings.queues[0]]
                assert [e.desired for e in autoscaler.events] == []
                assert peak == 1
                assert head > 4 * TARGET_WAIT, head
                return
            producer.wait(jobs, timeout=90)
    finally:
        deployment.close(timeout=10)
    fetched = Job.fetch_many([j.id for j in jobs], connection=conn, serializer=producer.queue().serializer)
    waits = [
        (job.started_at - job.enqueued_at).total_seconds()
        for job in fetched
        if job is not None and job.started_at is not None and job.enqueued_at is not None
    ]
    assert len(waits) == len(jobs)
    late = p95(waits[len(waits) // 2 :])  # the second half of the stream, once the fleet had its chance to grow
    desired = [e.desired for e in autoscaler.events]
    assert max(desired, default=1) > 1, desired
    assert peak > 1
    assert late < 4 * TARGET_WAIT, (late, desired)
