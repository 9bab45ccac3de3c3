"""Bad input, garbage or foreign data under our keys: values RQ never writes (junk queue entries, unreadable
jobs, keys of the wrong Redis type) planted in the real Redis. ``task-producer status`` and the API's stats answer
through them, or refuse with ONE line naming the wrong key, and write nothing; a worker runs every good job around
them, once and in order; ``enqueue_many`` onto a broken queue writes nothing.

The other kinds of bad input, and what these modules share: tests/bad_input.py.
"""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis.typing import EncodableT, FieldT
from rq import Queue

from producer import Producer, RedisCommandError, Task, TaskProcessorError
from tests.bad_input import attempt, one_error_line, run_all, snapshot
from tests.conftest import Proc, job_lines, recorded

ERROR_WITH_MESSAGE = re.compile(r"[\w.]+: \S")
"""A failed job's error line that says what went wrong: ``SomeError: what``, not a bare class name."""


VALID_DATA = zlib.compress(json.dumps(["worker.examples.record", None, ["bad-ran", "bad"], {}]).encode())
"""A well-formed payload for the garbage job: it records into ``bad-ran`` when a worker runs it."""


def _bad_job(fields: Mapping[FieldT, EncodableT]) -> Callable[[redis.Redis], None]:
    def plant(conn: redis.Redis) -> None:
        conn.hset("rq:job:bad", mapping=fields)
        conn.rpush("rq:queue:default", "bad")

    return plant


def _replace(key: str, value: str) -> Callable[[redis.Redis], None]:
    def plant(conn: redis.Redis) -> None:
        conn.delete(key)
        conn.set(key, value)

    return plant


@dataclass(frozen=True)
class Garbage:
    id: str
    plant: Callable[[redis.Redis], object]
    key: str = ""  # what a failure message must name
    good_queue: str = "default"  # where the good jobs around the garbage go
    bad_job: str | None = None  # a job id the worker pops that is garbage
    set_aside: bool = False  # a key RQ's worker writes: the worker moves the foreign data aside and goes on
    wrong_type: bool = False  # ``key`` holds another Redis type: ``status`` refuses, naming it (else it answers)


GARBAGE = [
    Garbage(
        "queue-not-a-list",
        _replace("rq:queue:default", "garbage"),
        key="rq:queue:default",
        good_queue="other",
        wrong_type=True,
    ),
    Garbage("queue-entry-without-job", lambda c: c.rpush("rq:queue:default", "ghost")),
    Garbage(
        "job-data-not-zlib-json",
        _bad_job({"data": b"\x00garbage\xff", "status": "queued", "origin": "default"}),
        bad_job="bad",
    ),
    Garbage("job-hash-without-data", _bad_job({"status": "queued", "origin": "default"}), bad_job="bad"),
    Garbage(
        "job-status-invalid",
        _bad_job({"data": VALID_DATA, "status": "bogus", "origin": "default"}),
        bad_job="bad",
    ),
    Garbage(
        "job-timeout-invalid",
        _bad_job({"data": VALID_DATA, "status": "queued", "origin": "default", "timeout": "abc"}),
        bad_job="bad",
    ),
    Garbage(
        "job-created-at-invalid",
        _bad_job({"data": VALID_DATA, "status": "queued", "origin": "default", "created_at": "yesterday"}),
        bad_job="bad",
    ),
    Garbage(
        "job-key-not-a-hash",
        lambda c: (c.set("rq:job:bad", "x"), c.rpush("rq:queue:default", "bad")),
        bad_job="bad",
    ),
    Garbage("job-without-origin", _bad_job({"data": VALID_DATA, "status": "queued"}), bad_job="bad"),
    Garbage(
        "job-origin-mismatch",
        _bad_job({"data": VALID_DATA, "status": "queued", "origin": "elsewhere"}),
        bad_job="bad",
    ),
    Garbage(
        "workers-not-a-set",
        _replace("rq:workers", "x"),
        key="rq:workers",
        set_aside=True,
        wrong_type=True,
    ),
    Garbage("workers-junk-members", lambda c: c.sadd("rq:workers", "junk", "rq:worker:ghost", "")),
    Garbage(
        "workers-member-wrong-type",
        lambda c: (c.set("rq:worker:str", "x"), c.sadd("rq:workers", "rq:worker:str")),
        key="rq:worker:str",
        wrong_type=True,
    ),
    Garbage("workers-member-not-utf8", lambda c: c.sadd("rq:workers", b"\xff\xfe")),
    Garbage(
        "worker-hash-garbage",
        lambda c: (
            c.hset("rq:worker:fake", mapping={"last_heartbeat": "garbage", "queues": "default", "state": "busy"}),
            c.hset("rq:worker:fake", mapping={"pid": "x", "birth": "nope", "current_job": "nope"}),
            c.sadd("rq:workers", "rq:worker:fake"),
            c.sadd("rq:workers:default", "rq:worker:fake"),
        ),
    ),
    Garbage("queues-member-not-utf8", lambda c: c.sadd("rq:queues", b"rq:queue:\xff")),
    Garbage(
        "autoscaler-not-a-hash",
        _replace("task-processor:autoscaler:task-processor", "x"),
        key="task-processor:autoscaler:task-processor",
        wrong_type=True,
    ),
    Garbage(
        "autoscaler-garbage-fields",
        lambda c: c.hset("task-processor:autoscaler:task-processor", mapping={"desired": "lots", "reason": "?"}),
        key="task-processor:autoscaler:task-processor",
    ),
    Garbage(
        "wip-not-a-zset",
        _replace("rq:wip:default", "x"),
        key="rq:wip:default",
        set_aside=True,
        wrong_type=True,
    ),
    Garbage(
        "wip-junk-members",
        lambda c: c.zadd("rq:wip:default", {"junk": time.time() + 1000, "old-junk": 1, "x:y": 2, "": 3}),
    ),
    Garbage(
        "wip-member-not-utf8",
        lambda c: c.zadd("rq:wip:default", {b"\xff\xfe": 1}),
    ),
    Garbage(
        "intermediate-member-not-utf8",
        lambda c: c.rpush("rq:queue:default:intermediate", "ghost", b"\xff"),
    ),
]


GARBAGE_CASES = [pytest.param(case, id=case.id) for case in GARBAGE]


def wrong_type_message(url: str, key: str) -> str:
    """What ``status`` and the API say about a key holding a type RQ never writes there: the key and the fix."""
    return (
        f"Redis at {url}: key {key!r} holds data RQ did not write there (WRONGTYPE Operation against a key "
        "holding the wrong kind of value): rename or delete that key (the README lists the keys this project uses)"
    )


@pytest.mark.parametrize("case", GARBAGE_CASES)
def test_status_answers_through_garbage_or_names_the_wrong_key(
    producer: Producer, conn: redis.Redis, redis_url: str, env: dict[str, str], tmp_path: Path, case: Garbage
) -> None:
    """Garbage values (junk members, unreadable jobs, bad fields) are skipped and ``status`` answers; a key of
    the wrong type is refused with exit 1 and one line naming that key, never blamed on the network."""
    producer.enqueue("worker.examples.noop", queue="other")
    case.plant(conn)
    before = snapshot(conn)
    table, as_json = run_all([["task-producer", "status"], ["task-producer", "status", "--json"]], env, tmp_path)
    stats, api_error = attempt(producer.stats, TaskProcessorError)
    if case.wrong_type:
        for result in (table, as_json):
            assert (result.returncode, result.stdout) == (1, ""), (result.returncode, result.stdout)
            line = one_error_line(result.stderr, "task-producer")
            assert line == f"task-producer: error: {wrong_type_message(redis_url, case.key)}"
    else:
        assert (table.returncode, table.stderr, as_json.returncode, as_json.stderr) == (0, "", 0, ""), (
            table.stderr + as_json.stderr
        )
        facts = json.loads(as_json.stdout)
        assert facts["queues"]["other"]["queued"] == 1
        assert re.search(r"^other\s+1\s", table.stdout, re.M), table.stdout
        if case.id.startswith("autoscaler-"):  # a report the autoscaler did not write is no report
            assert facts["autoscaler"] is None
            assert "autoscaler: not running (no decision published in Redis)" in table.stdout
    # The API's stats read the queues and workers, not the autoscaler's report.
    if case.wrong_type and not case.id.startswith("autoscaler-"):
        assert isinstance(api_error, RedisCommandError), repr(api_error)
        assert str(api_error) == wrong_type_message(redis_url, case.key)
    else:
        assert api_error is None, str(api_error)
        assert stats["other"].queued == 1
    assert snapshot(conn) == before, "status wrote to Redis"


@pytest.mark.parametrize("case", GARBAGE_CASES)
def test_worker_survives_garbage_and_runs_the_good_jobs_around_it(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc], case: Garbage
) -> None:
    for i in range(3):
        producer.enqueue("worker.examples.record", "ran", f"before{i}", queue=case.good_queue)
    case.plant(conn)
    for i in range(3):
        producer.enqueue("worker.examples.record", "ran", f"after{i}", queue=case.good_queue)
    worker = spawn("task-worker", "--burst", "--queue", "default", "--queue", "other")
    code = worker.wait(timeout=30)
    output = worker.output()
    unstructured = [line for line in output.splitlines() if line.strip() and not line.startswith("{")]
    assert code == 0, output[-3000:]
    assert unstructured == [], output[-3000:]
    assert not [line for line in worker.json_lines() if "unhandled exception" in line.get("event", "")], output[-3000:]
    # Every good job ran, once, in order.
    assert recorded(conn, "ran") == [f"before{i}" for i in range(3)] + [f"after{i}" for i in range(3)]
    if case.set_aside:  # kept for whoever put it there, out of RQ's way, and the move logged naming the key
        assert conn.get(f"task-processor:foreign:{case.key}") == b"x"
        assert [line["key"] for line in worker.json_lines() if line.get("moved_to")] == [case.key]
    if case.bad_job is None:
        return
    mine = [line for line in job_lines(worker) if line["job_id"] == case.bad_job]
    assert len(mine) <= 1, mine
    # Nothing left where a worker or the reaper would pick the garbage job up again.
    for queue in ("default", "other", "elsewhere"):
        for key in (f"rq:queue:{queue}", Queue(queue, connection=conn).intermediate_queue_key):
            if conn.type(key) == b"list":
                assert case.bad_job.encode() not in conn.lrange(key, 0, -1), key
    # Skipped silently (it is not a job), or failed with an error that says what is wrong.
    if mine and mine[0]["outcome"] == "failed":
        assert ERROR_WITH_MESSAGE.match(mine[0]["error"]), mine[0]["error"]


def test_enqueue_many_onto_a_broken_queue_writes_nothing(producer: Producer, conn: redis.Redis) -> None:
    conn.set("rq:queue:broken", "garbage")
    before = snapshot(conn)
    with pytest.raises(TaskProcessorError) as info:
        producer.enqueue_many(
            [Task("worker.examples.noop", job_id="good", queue="fine"), Task("worker.examples.noop", queue="broken")]
        )
    # "Either every task is queued or none is", and nothing half-written that no worker will ever run.
    assert snapshot(conn) == before, sorted(conn.keys("*"))
    assert "\n" not in str(info.value)
    assert "rq:queue:broken" in str(info.value)
    assert "cannot reach Redis" not in str(info.value)


@pytest.mark.parametrize(
    ("garbage", "task"),
    [
        pytest.param("rq:queue:broken", Task("worker.examples.noop", queue="broken"), id="the queue"),
        pytest.param("rq:queue:broken", Task("worker.examples.noop", queue="broken", at_front=True), id="its head"),
        pytest.param("rq:queues", Task("worker.examples.noop", queue="fresh"), id="the queue set, a new queue"),
        pytest.param("rq:queues", Task("worker.examples.noop", queue="fine"), id="the queue set, a queue in use"),
        pytest.param(
            "rq:queues", Task("worker.examples.noop", queue="fine", at_front=True), id="the queue set, at the head"
        ),
        pytest.param("rq:job:taken", Task("worker.examples.noop", job_id="taken", queue="fine"), id="the job id"),
    ],
)
def test_one_enqueue_onto_a_key_of_another_type_writes_nothing(
    producer: Producer, conn: redis.Redis, garbage: str, task: Task
) -> None:
    """``enqueue``'s own script learns each key's type from the write itself and takes back what it wrote when a
    later key refuses (the queue set after the push): nothing is left behind, and the one line names the key."""
    producer.enqueue("worker.examples.noop", job_id="earlier", queue="fine")
    conn.set(garbage, "garbage")
    before = snapshot(conn)
    with pytest.raises(TaskProcessorError) as info:
        producer.enqueue_many([task])
    assert snapshot(conn) == before, sorted(conn.keys("*"))
    message = str(info.value)
    assert "\n" not in message
    assert f"{garbage} holds a string" in message, message
    assert "cannot reach Redis" not in message
