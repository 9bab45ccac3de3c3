"""Dependents of a job ``task-worker`` finishes are queued by the finish itself, as RQ's own code queues them.

The contract tests run the same jobs twice on a flushed Redis: once under RQ's ``SimpleWorker``, whose
``handle_job_success`` calls RQ's ``Queue.enqueue_dependents``, and once under ``task-worker``, whose finish script
queues the dependents (``task_processor/lua/lib/dependents.lua``). After each parent they compare the dependents'
hashes (timestamps only for their presence) and the TTLs of their keys, the parents' dependents sets, the queue
lists, the deferred registries and ``rq:queues``. ``task-worker`` is suspended (``rq suspend``) while the parent
runs, so that its finish pops nothing and what the finish left can be looked at.

The kill test SIGKILLs a worker the moment its finish call returns, before any more of its Python runs: the
dependent is queued all the same, and another worker runs it once.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import redis
from rq import Queue
from rq.job import Dependency, Job, JobStatus
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend

from tests.conftest import Proc, ReferenceWorker, as_bytes, bytes_fields, wait_for

PARENT_SECONDS = 1.0
"""How long a parent runs: the test suspends ``task-worker`` meanwhile, so that its finish pops nothing."""

QUEUES = ("default", "other")
"""Every queue the scenarios use. Parents run from ``default``, the only queue the workers take jobs from."""

TIMESTAMPS = {"created_at", "enqueued_at"}
"""Job fields compared for their presence only."""

ENDED = {b"finished", b"failed"}

KILL_AFTER_FINISH = """
import os, signal, sys
from worker import cli, fastpath

finish = fastpath.FastPath.finish

def finish_then_die(self, *args, **kwargs):
    reply = finish(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
    return reply

fastpath.FastPath.finish = finish_then_die
sys.exit(cli.main(sys.argv[1:]))
"""
"""``task-worker``, SIGKILLed as soon as its first finish call returns (``python -c`` this, then the arguments)."""


def queue(conn: redis.Redis, name: str = "default") -> Queue:
    return Queue(name, connection=conn, serializer=JSONSerializer)


def parent(conn: redis.Redis, job_id: str = "parent") -> Job:
    return queue(conn).enqueue("worker.examples.sleep", PARENT_SECONDS, job_id=job_id)


def dependent(conn: redis.Redis, job_id: str, depends_on: Any, name: str = "default", **options: Any) -> Job:
    return queue(conn, name).enqueue("worker.examples.add", 1, 2, job_id=job_id, depends_on=depends_on, **options)


@dataclass(frozen=True)
class Step:
    runs: tuple[str, ...]
    """The jobs a worker runs in this step, in queue order; the last is a parent that succeeds."""
    queued: dict[str, list[str]]
    """What RQ leaves in each queue's list after the step (so that the comparison compares real work)."""


@dataclass(frozen=True)
class Scenario:
    setup: Callable[[redis.Redis], None]
    steps: tuple[Step, ...]
    dependents: tuple[str, ...]


def single(conn: redis.Redis) -> None:
    parent(conn)
    dependent(conn, "child", "parent")


def other_queue(conn: redis.Redis) -> None:
    parent(conn)
    dependent(conn, "child", "parent", name="other", ttl=600)


def at_front(conn: redis.Redis) -> None:
    parent(conn)
    queue(conn, "other").enqueue("worker.examples.noop", job_id="waiting")
    dependent(conn, "child", Dependency(["parent"], enqueue_at_front=True), name="other")


def two_parents(conn: redis.Redis) -> None:
    parent(conn, "first")
    parent(conn, "second")
    dependent(conn, "child", ["first", "second"])


def allow_failures(conn: redis.Redis) -> None:
    queue(conn).enqueue("worker.examples.fail", job_id="broken")
    parent(conn)
    dependent(conn, "tolerant", Dependency(["broken", "parent"], allow_failure=True))
    dependent(conn, "strict", ["broken", "parent"])


def canceled(conn: redis.Redis) -> None:
    parent(conn)
    dependent(conn, "child", "parent")
    dependent(conn, "canceled", "parent").cancel()


SCENARIOS = {
    "single-dependent": Scenario(single, (Step(("parent",), {"default": ["child"]}),), ("child",)),
    "dependent-in-another-queue": Scenario(
        other_queue, (Step(("parent",), {"default": [], "other": ["child"]}),), ("child",)
    ),
    "enqueue-at-front": Scenario(at_front, (Step(("parent",), {"other": ["child", "waiting"]}),), ("child",)),
    "two-parents": Scenario(
        two_parents,
        (Step(("first",), {"default": ["second"]}), Step(("second",), {"default": ["child"]})),
        ("child",),
    ),
    "allow-dependency-failures": Scenario(
        allow_failures, (Step(("broken", "parent"), {"default": ["tolerant"]}),), ("tolerant", "strict")
    ),
    "canceled-dependent": Scenario(canceled, (Step(("parent",), {"default": ["child"]}),), ("child", "canceled")),
}


def ttl_class(ttl: int) -> str:
    return {-2: "missing", -1: "persistent"}.get(ttl, "expires")


def snapshot(conn: redis.Redis, scenario: Scenario) -> dict[str, Any]:
    """The dependents' hashes and keys, the parents' dependents sets, the queues and deferred registries."""
    state: dict[str, Any] = {}
    for job_id in scenario.dependents:
        job = Job(job_id, connection=conn)
        fields = {k.decode(): v for k, v in bytes_fields(conn.hgetall(job.key)).items()}
        state[job.key] = {k: bool(v) if k in TIMESTAMPS else v for k, v in fields.items()}
        for key in (job.key, job.dependents_key, job.dependencies_key):
            state[f"ttl of {key}"] = ttl_class(conn.ttl(key))
    for job_id in {job_id for step in scenario.steps for job_id in step.runs}:
        key = f"rq:job:{job_id}:dependents"
        state[key] = (sorted(conn.smembers(key)), ttl_class(conn.ttl(key)))
    for name in QUEUES:
        state[f"rq:queue:{name}"] = conn.lrange(f"rq:queue:{name}", 0, -1)
        state[f"rq:deferred:{name}"] = sorted(conn.zrange(f"rq:deferred:{name}", 0, -1))
    state["rq:queues"] = sorted(conn.smembers("rq:queues"))
    return state


def status(conn: redis.Redis, job_id: str) -> bytes | None:
    value = conn.hget(f"rq:job:{job_id}", "status")
    return None if value is None else as_bytes(value)


def started(conn: redis.Redis, job_id: str) -> bool:
    return status(conn, job_id) == b"started"


def ended(conn: redis.Redis, job_ids: tuple[str, ...]) -> bool:
    return all(status(conn, job_id) in ENDED for job_id in job_ids)


def rq_leaves(conn: redis.Redis, scenario: Scenario) -> list[dict[str, Any]]:
    """What RQ's SimpleWorker leaves after each step."""
    conn.flushall()
    scenario.setup(conn)
    snapshots = []
    for step in scenario.steps:
        rq_worker = ReferenceWorker([queue(conn)], connection=conn, serializer=JSONSerializer)
        rq_worker.work(burst=True, max_jobs=len(step.runs))
        assert ended(conn, step.runs)
        snapshots.append(snapshot(conn, scenario))
    return snapshots


def ours_leave(conn: redis.Redis, spawn: Callable[..., Proc], scenario: Scenario) -> list[dict[str, Any]]:
    """What ``task-worker`` leaves after each step: it runs the step's jobs and is suspended before the step's
    parent ends, so that the parent's finish pops nothing."""
    conn.flushall()
    scenario.setup(conn)
    worker = spawn("task-worker", "--queue", "default")
    snapshots = []
    for step in scenario.steps:
        resume(conn)
        last = step.runs[-1]
        wait_for(partial(started, conn, last), timeout=30, what=f"{last} to start")
        suspend(conn)
        if not started(conn, last):
            pytest.fail(f"{last} ended before the worker was suspended (a slow machine?): its finish may have popped")
        wait_for(partial(ended, conn, step.runs), timeout=30, what=f"{step.runs} to end")
        snapshots.append(snapshot(conn, scenario))
    assert worker.popen.poll() is None, worker.output()[-2000:]
    return snapshots


@pytest.mark.timeout(100)
@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_the_finish_queues_dependents_as_rq_enqueue_dependents_does(
    conn: redis.Redis, spawn: Callable[..., Proc], scenario: Scenario
) -> None:
    theirs = rq_leaves(conn, scenario)
    for step, state in zip(scenario.steps, theirs, strict=True):
        for name, ids in step.queued.items():
            assert state[f"rq:queue:{name}"] == [job_id.encode() for job_id in ids]
    ours = ours_leave(conn, spawn, scenario)
    for index, (mine, rqs) in enumerate(zip(ours, theirs, strict=True)):
        assert mine == rqs, f"after step {index}"


def test_a_dependent_no_longer_deferred_is_not_queued_again(conn: redis.Redis, spawn: Callable[..., Proc]) -> None:
    """A dependent queued already (here by hand, as a finish run twice would have) stays queued once; RQ's
    enqueue_dependents would push it a second time."""
    first = queue(conn).enqueue("worker.examples.add", 1, 2)
    child = dependent(conn, "child", first, name="other")
    queue(conn, "other")._enqueue_job(child)
    worker = spawn("task-worker", "--queue", "default", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()[-2000:]
    assert status(conn, first.id) == b"finished"
    assert conn.lrange("rq:queue:other", 0, -1) == [b"child"]
    assert conn.smembers(first.dependents_key) == {b"child"}  # not queued by this finish: left in the set, as RQ does


def test_a_dependent_whose_queue_holds_foreign_data_stays_deferred(
    conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    """A dependent's queue key holding another type (where RQ's own call would raise): the parent still finishes,
    the dependent stays deferred, and the worker goes on with the next job."""
    first = queue(conn).enqueue("worker.examples.add", 1, 2)
    child = dependent(conn, "child", first, name="other")
    then = queue(conn).enqueue("worker.examples.add", 2, 2)
    conn.set("rq:queue:other", "not a list")
    worker = spawn("task-worker", "--queue", "default", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()[-2000:]
    assert [status(conn, first.id), status(conn, then.id)] == [b"finished", b"finished"]
    assert status(conn, child.id) == b"deferred"
    assert conn.zrange("rq:deferred:other", 0, -1) == [b"child"]
    assert conn.smembers(first.dependents_key) == {b"child"}


@pytest.mark.fault
def test_a_worker_killed_right_after_a_finish_leaves_its_dependent_queued(
    conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    first = queue(conn).enqueue("worker.examples.add", 1, 2)
    child = queue(conn, "other").enqueue("worker.examples.record", "ran", "child", depends_on=first)
    assert child.get_status() == JobStatus.DEFERRED
    dying = spawn("python", "-c", KILL_AFTER_FINISH, "--queue", "default", "--burst")
    assert dying.wait(timeout=60) == -signal.SIGKILL, dying.output()[-2000:]
    assert status(conn, first.id) == b"finished"
    # Queued by the finish itself: nothing after it ran.
    assert status(conn, child.id) == b"queued"
    assert conn.lrange("rq:queue:other", 0, -1) == [child.id.encode()]
    assert conn.zrange("rq:deferred:other", 0, -1) == []
    assert not conn.exists(first.dependents_key)

    worker = spawn("task-worker", "--queue", "other", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()[-2000:]
    assert conn.lrange("ran", 0, -1) == [b"child"]
    assert status(conn, child.id) == b"finished"
    assert [line["job_id"] for line in worker.json_lines() if line.get("event") == "job"] == [child.id]
