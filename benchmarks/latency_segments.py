"""Where the enqueue-to-start time of an idle worker goes: task-processor against the raw redis-py loop.

    python -m benchmarks.latency_segments [--samples 300] [--idle 0.02]

One task at a time, each after ``--idle`` seconds of quiet (as the main benchmark's latency measurement), on a
private redis-server whose slow log records every command. For each system it prints the medians, in
microseconds from the moment the producer is called:

- the producer's Python up to its write to Redis (task-processor: ``enqueue``'s checks, serialization and
  packing; the raw loop: redis-py's RPUSH);
- what the enqueue script and, once the waiting worker is woken, its pop script add to the path in Redis, each
  against a stand-in that does only the list work (``benchmarks.script_cost``);
- the task starting on the worker;
- the producer's call returning: on 2 CPUs often after the task started, as Redis answers both at once and the
  woken worker runs first.

What is left between the write, the scripts and the start is the wake of Redis and of the worker, and the worker's
Python: reading the reply, building the RQ job, and RQ's perform path up to the call of the function.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import redis

from benchmarks import script_cost
from benchmarks.bench import worker_env
from benchmarks.measure import fleet
from benchmarks.systems import System, all_systems
from benchmarks.tasks import LATENCY_KEY
from producer.commands.redis_server import LocalRedisServer

OURS, RAW = "task-processor", "raw redis-py (RPUSH/BLMOVE)"

ROWS = ("Python before the write", "enqueue script's part", "pop script's part", "task started", "call returned")


def _timed(connection: redis.Redis, system: System, samples: int, idle: float) -> dict[str, float]:
    """Medians, in microseconds from the producer's call: to its first write to Redis, to the task's start, to the
    call's return."""
    written = [0.0]
    send = redis.Connection.send_packed_command

    def noting(wire: redis.Connection, *args: Any, **kwargs: Any) -> None:
        written[0] = written[0] or time.time()
        send(wire, *args, **kwargs)

    times: dict[str, list[float]] = {"Python before the write": [], "task started": [], "call returned": []}
    redis.Connection.send_packed_command = noting  # type: ignore[method-assign,assignment]
    try:
        for _ in range(samples):
            time.sleep(idle)
            written[0] = 0.0
            called = time.time()
            system.enqueue("stamp", (called,))
            times["call returned"].append((time.time() - called) * 1e6)
            times["Python before the write"].append((written[0] - called) * 1e6)
            reply = connection.blpop([LATENCY_KEY], timeout=10)
            if reply is None:
                raise TimeoutError(f"{system.name}: a probe did not run")
            times["task started"].append(float(reply[1]) * 1e6)
    finally:
        redis.Connection.send_packed_command = send  # type: ignore[method-assign]
    return {row: statistics.median(values) for row, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency_segments", description=__doc__)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--idle", type=float, default=0.02, help="seconds of quiet before each task")
    args = parser.parse_args(argv)
    rows: dict[str, dict[str, float]] = {}
    with LocalRedisServer(appendonly=False) as server:
        connection = redis.Redis.from_url(server.url)
        os.environ["BENCH_REDIS_URL"] = server.url
        systems = {system.name: system for system in all_systems(server.url)}
        for name in (OURS, RAW):
            system = systems[name]
            with fleet([next(iter(system.workers.values()))[0]], worker_env(server.url)):
                _timed(connection, system, 3, args.idle)  # the worker is up, its code paths loaded
                rows[name] = _timed(connection, system, args.samples, args.idle)
            connection.flushall()
        parts = script_cost.parts(script_cost.measure(server.url, args.samples, args.idle))
        rows[OURS]["enqueue script's part"] = parts["enqueue script"]
        rows[OURS]["pop script's part"] = parts["pop script"]
    print(f"medians over {args.samples} tasks, each after {args.idle:g} s idle, in microseconds from the call")
    print(f"{'':28}{'task-processor':>16}{'raw loop':>10}")
    for row in ROWS:
        cells = [f"{rows[name][row]:,.0f}" if row in rows[name] else "-" for name in (OURS, RAW)]
        print(f"{row:28}{cells[0]:>16}{cells[1]:>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
