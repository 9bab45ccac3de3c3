"""What each of the two Lua scripts on an idle worker's path adds to its enqueue-to-start time, in Redis.

    python -m benchmarks.script_cost [--samples 300] [--idle 0.02]

Two waiters block as an idle task-worker does (``worker.wake``: a blocking wait on the queue with the pop script
behind it, in one write), each on a queue of its own: one with the pop script (move, start and read the job), the
other with a stand-in that only takes the queue's head (LPOP). A producer wakes one of them at a time, after
``--idle`` seconds of quiet, either through ``Producer.enqueue`` (the enqueue script) or with a bare RPUSH of a job
whose hash was written before the quiet, the four pairings in turns so that each sees the same machine. Each figure
is the median time from the producer's write to the waiter's read of its replies; the differences to the pairing
of RPUSH and stand-in are each script's part of the path: its run in Redis, as cold as the path meets it, and the
reply it makes.

Redis's slow log cannot give these: at a threshold of 0 it also logs each command a script calls, and does so inside
the script's own time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.queues import Queue
from typing import Any

import redis

from producer import Producer
from producer.commands.redis_server import LocalRedisServer
from task_processor import keys
from worker.batching import BatchedCalls
from worker.fastpath import FastPath

STAND_IN = "return redis.call('LPOP', KEYS[2])"
"""What the stand-in waiter runs after its wait: the queue's head taken, nothing else (KEYS as the pop's)."""

POP, STAND = "pop script", "stand-in"
ENQUEUE, RPUSH = "enqueue script", "RPUSH"


def _waiter(url: str, queue: str, pops: bool, woke: Queue[float]) -> None:
    """Wait for a job on ``queue`` as an idle worker waits, again and again; put the time of each wake's read."""
    connection = redis.Redis.from_url(url)
    fast = FastPath(connection, BatchedCalls(connection), "rq:worker:waiter", "waiter", 60, starts_on_pop=True)
    sha = connection.script_load(fast._pop.script if pops else STAND_IN)
    pop_keys = [keys.SUSPENDED, keys.queue(queue), keys.intermediate(queue), keys.started(queue)]
    while True:
        args = [keys.JOB_PREFIX, 1, *fast._start_part(fast._start_args(at_run=True))]
        if fast.waker.wait_then_call(keys.queue(queue), 5, sha, pop_keys, args):
            woke.put(time.time())


@contextmanager
def _noting_writes() -> Iterator[list[float]]:
    """The time of each process's first write to Redis after the list is cleared."""
    written: list[float] = []
    send = redis.Connection.send_packed_command

    def noting(wire: redis.Connection, *args: Any, **kwargs: Any) -> None:
        if not written:
            written.append(time.time())
        send(wire, *args, **kwargs)

    redis.Connection.send_packed_command = noting  # type: ignore[method-assign,assignment]
    try:
        yield written
    finally:
        redis.Connection.send_packed_command = send  # type: ignore[method-assign]


def measure(url: str, samples: int, idle: float) -> dict[tuple[str, str], float]:
    """Median microseconds from the write to the wake, by (waiter, enqueue) pairing."""
    connection = redis.Redis.from_url(url)
    producer = Producer(url)
    context = multiprocessing.get_context("spawn")
    waiters: dict[str, tuple[str, Queue[float], Any]] = {}
    for name, pops in ((POP, True), (STAND, False)):
        woke: Queue[float] = context.Queue()
        queue = f"cost-{len(waiters)}"
        process = context.Process(target=_waiter, args=(url, queue, pops, woke), daemon=True)
        process.start()
        waiters[name] = (queue, woke, process)
    times: dict[tuple[str, str], list[float]] = {(w, e): [] for w in waiters for e in (ENQUEUE, RPUSH)}
    try:
        for pairing in list(times) * (samples + 3):
            queue, woke, _ = waiters[pairing[0]]
            staged = None
            if pairing[1] == RPUSH:  # the job's hash, written before the quiet; only its id is pushed on the path
                staged = producer.enqueue("benchmarks.tasks.noop", queue="cost-staging").id
                connection.delete(keys.queue("cost-staging"))
            time.sleep(idle)
            with _noting_writes() as written:
                if staged is None:
                    producer.enqueue("benchmarks.tasks.noop", queue=queue)
                else:
                    connection.rpush(keys.queue(queue), staged)
            times[pairing].append((woke.get(timeout=10) - written[0]) * 1e6)
    finally:
        for _, _, process in waiters.values():
            process.kill()
    return {pairing: statistics.median(values[3:]) for pairing, values in times.items()}


def parts(medians: dict[tuple[str, str], float]) -> dict[str, float]:
    """Each script's part of the path: its pairing's median less the RPUSH and stand-in pairing's."""
    base = medians[(STAND, RPUSH)]
    return {
        "enqueue script": medians[(STAND, ENQUEUE)] - base,
        "pop script": medians[(POP, RPUSH)] - base,
        "both": medians[(POP, ENQUEUE)] - base,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.script_cost", description=__doc__)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--idle", type=float, default=0.02, help="seconds of quiet before each wake")
    args = parser.parse_args(argv)
    with LocalRedisServer(appendonly=False) as server:
        medians = measure(server.url, args.samples, args.idle)
    print(f"medians over {args.samples} wakes each, after {args.idle:g} s idle, in microseconds from the write")
    for (waiter, enqueue), value in medians.items():
        print(f"{enqueue + ', ' + waiter:32}{value:>8,.0f}")
    for name, value in parts(medians).items():
        print(f"{name + ' part of the path':32}{value:>8,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
