"""LocalDeployment and the autoscaler loop driving it, with real worker processes and a real redis-server."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue

from producer import Producer, Task
from producer.commands.redis_server import LocalRedisServer
from producer.commands.status import collect
from producer.scaling.autoscaler import Autoscaler, TargetState
from producer.scaling.local.deployment import LocalDeployment
from producer.scaling.policy import Bounds
from task_processor.observe import WorkerInfo, list_workers
from task_processor.settings import Settings
from tests.conftest import TASK_MODULES, Proc, decoded, running, wait_for


@pytest.fixture
def deployment(redis_url: str, conn: redis.Redis, tmp_path: Path) -> Iterator[LocalDeployment]:
    settings = Settings(redis_url=redis_url, task_modules=(TASK_MODULES,))
    local = LocalDeployment(
        conn, settings.child_env(REDIS_URL=redis_url, LOG_FORMAT="json"), ("default",), log_file=tmp_path / "w.log"
    ).start()
    yield local
    local.close(timeout=10)


def registered(conn: redis.Redis) -> list[WorkerInfo]:
    return list_workers(conn)


class RecordingTarget:
    """A ScaleTarget that only remembers what it was told (the loop's writes are what is under test)."""

    name = "recording"

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.writes: list[int] = []

    def read(self, fresh: bool = False) -> TargetState:
        return TargetState(self.replicas)

    def set_replicas(self, replicas: int, workers: Sequence[WorkerInfo] = ()) -> None:
        self.writes.append(replicas)
        self.replicas = replicas


def test_scale_in_retires_idle_workers_and_spares_the_busy_one(
    deployment: LocalDeployment, producer: Producer, conn: redis.Redis
) -> None:
    deployment.set_replicas(3)
    wait_for(lambda: len(registered(conn)) == 3, timeout=20, what="3 registered workers")
    job = producer.enqueue("worker.examples.record", "done", "slow", seconds=2)
    busy = wait_for(lambda: [w for w in registered(conn) if w.busy], what="a busy worker")[0]
    deployment.set_replicas(1)
    wait_for(lambda: len(deployment.running()) == 1, timeout=20, what="two idle workers to exit")
    assert [w.pid for w in deployment.running()] == [busy.pid]
    assert producer.wait([job], timeout=10) == ["slow"]
    assert deployment.counters.retired == 2


def test_a_killed_worker_is_replaced(deployment: LocalDeployment, conn: redis.Redis) -> None:
    deployment.set_replicas(2)
    wait_for(lambda: len(deployment.running()) == 2, what="2 workers")
    victim = deployment.running()[0].pid
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: len(deployment.running()) == 2 and victim not in {w.pid for w in deployment.running()},
        timeout=20,
        what="a replacement worker",
    )
    assert deployment.counters.replaced == 1
    assert deployment.get_replicas() == 2


def test_autoscaler_scales_up_drains_and_returns_to_minimum(
    deployment: LocalDeployment, producer: Producer, conn: redis.Redis
) -> None:
    autoscaler = Autoscaler(conn, ("default",), deployment, Bounds(0, 3, 2, 1.0), interval=0.1)
    stop = threading.Event()
    loop = threading.Thread(target=autoscaler.run, args=(stop,))
    loop.start()
    try:
        jobs = producer.enqueue_many(Task("worker.examples.record", ("ran", str(i), 0.3)) for i in range(12))
        wait_for(lambda: deployment.get_replicas() == 3, timeout=5, what="scale-up to the maximum")
        producer.wait(jobs, timeout=60)
        wait_for(lambda: deployment.get_replicas() == 0, timeout=20, what="scale-down to the minimum")
        wait_for(lambda: not deployment.running(), timeout=20, what="workers to exit")
    finally:
        stop.set()
        loop.join()
    ran = decoded(conn.lrange("ran", 0, -1))
    assert sorted(ran, key=int) == [str(i) for i in range(12)]  # every task once: none lost, none twice
    assert next(e.desired for e in autoscaler.events) == 3
    assert autoscaler.events[-1].desired == 0
    assert all(e.reason == "scale-up" for e in autoscaler.events if e.desired > e.previous)


def test_scheduled_work_scales_up_from_zero(redis_url: str, deployment: LocalDeployment, conn: redis.Redis) -> None:
    """RQ's scheduler lives in workers; with none running, the autoscaler must still enqueue due jobs."""
    autoscaler = Autoscaler(conn, ("default",), deployment, Bounds(0, 2, 10, 30.0), interval=0.1)
    job = Queue("default", connection=conn, serializer="json").enqueue_in(
        timedelta(seconds=1), "worker.examples.add", 1, 2
    )
    stop = threading.Event()
    loop = threading.Thread(target=autoscaler.run, args=(stop,))
    loop.start()
    try:
        assert Producer(redis_url).wait([job], timeout=30) == [3]
    finally:
        stop.set()
        loop.join()
    assert autoscaler.events[0].previous == 0
    assert autoscaler.events[0].desired == 1


def test_no_write_when_nothing_changes(conn: redis.Redis, producer: Producer) -> None:
    target = RecordingTarget(replicas=1)
    autoscaler = Autoscaler(conn, ("default",), target, Bounds(1, 5, 10, 0.0))
    for _ in range(5):
        autoscaler.step()
    assert target.writes == []
    producer.enqueue_many([Task("worker.examples.noop") for _ in range(25)])
    autoscaler.step()
    autoscaler.step()
    assert target.writes == [3]
    # The decision is published for `task-producer status`.
    published = collect(producer, "recording")["autoscaler"]
    assert (published["desired"], published["current"], published["reason"]) == (3, 3, "steady")
    assert published["state"] == "active"


@pytest.fixture
def own_redis() -> Iterator[LocalRedisServer]:
    """A redis-server of this test's own, on a free port, for a test that kills and restarts it."""
    with LocalRedisServer(appendonly=False) as server:
        yield server


def events(logs: Callable[[], list[dict[str, Any]]], event: str) -> list[dict[str, Any]]:
    return [line for line in logs() if line.get("event") == event]


@pytest.mark.timeout(90)
def test_the_loop_survives_redis_going_away(
    own_redis: LocalRedisServer, logs: Callable[[], list[dict[str, Any]]]
) -> None:
    conn = redis.Redis.from_url(own_redis.url)
    target = RecordingTarget(replicas=1)
    autoscaler = Autoscaler(conn, ("default",), target, Bounds(0, 5, 10, 0.0), interval=0.05)
    port = own_redis.port
    try:
        with running(autoscaler):
            wait_for(lambda: target.writes == [0], timeout=30, what="a first decision with Redis up")
            own_redis.kill()
            failed = wait_for(
                lambda: events(logs, "autoscaler step failed; retrying with backoff"),
                timeout=30,
                what="the loop to see Redis gone",
            )
            # Killed between two passes the next connect fails; killed during one, the reply never comes (the
            # connection closed, or reset while reading): either way the line says what went away.
            gone = (f"127.0.0.1:{port}", "Connection closed by server")
            assert any(text in failed[0]["error"] for text in gone), failed[0]
            own_redis.start()
            assert own_redis.port == port, "the port was taken while Redis was down"
            recovered = wait_for(lambda: events(logs, "autoscaler recovered"), timeout=30, what="the loop to recover")
            assert recovered[0]["failed_steps"] >= 1
            # Back to work: demand on the restarted Redis scales the target up.
            Producer(own_redis.url).enqueue_many([Task("worker.examples.noop") for _ in range(25)])
            wait_for(lambda: target.writes == [0, 3], timeout=30, what="a scale-up once Redis is back")
    finally:
        conn.close()


def test_a_process_with_busy_slots_is_one_busy_replica(
    conn: redis.Redis, producer: Producer, spawn: Callable[..., Proc]
) -> None:
    """With --concurrency, a Pod's slots are several RQ workers; the busy floor counts the Pod once."""
    producer.enqueue_many([Task("worker.examples.sleep", (20,)) for _ in range(3)])
    spawn("task-worker", "--concurrency", "3")
    wait_for(lambda: sum(w.busy for w in registered(conn)) == 3, timeout=20, what="three busy slots")
    autoscaler = Autoscaler(conn, ("default",), RecordingTarget(replicas=3), Bounds(0, 5, 10, 0.0))
    look = autoscaler.observe()
    observation, workers = look.observation, look.workers
    assert len(workers) == 3
    assert observation.busy_workers == 1
