"""Redis bytes per finished task, while its result is kept: task-worker against RQ's SimpleWorker, on a Redis
configured as the chart and run-local configure theirs and on a default one.

    python -m benchmarks.finished_bytes [--tasks N] [--json PATH]

Each figure is used_memory after N tasks ran minus before they were enqueued, over N, on a fresh redis-server
(scripts flushed), so one system's leftovers never count for the other. Tasks: ``worker.examples.noop`` (returns
None) and ``worker.examples.add`` (returns a number).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import redis
from rq import Queue, SimpleWorker

from producer import Producer, Task
from producer.commands.redis_server import STREAM_NODE_MAX_BYTES, LocalRedisServer

BIN = Path(sys.executable).parent
TASKS = {"noop (returns None)": ("worker.examples.noop", ()), "add (returns 3)": ("worker.examples.add", (1, 2))}
REDISES = {"project Redis": STREAM_NODE_MAX_BYTES, "default Redis": 4096}


def _ours(url: str, func: str, args: tuple[int, ...], n: int) -> None:
    Producer(url).enqueue_many([Task(func, args) for _ in range(n)])
    env = {**os.environ, "REDIS_URL": url, "TASK_MODULES": "worker.examples", "LOG_LEVEL": "WARNING"}
    done = subprocess.run([str(BIN / "task-worker"), "--burst"], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr[-2000:]


def _rq(url: str, func: str, args: tuple[int, ...], n: int) -> None:
    connection = redis.Redis.from_url(url)
    queue = Queue("default", connection=connection)
    for _ in range(n):
        queue.enqueue(func, *args)
    SimpleWorker([queue], connection=connection).work(burst=True)


Runner = Callable[[str, str, tuple[int, ...], int], None]


def per_task(run: Runner, node_bytes: int, func: str, args: tuple[int, ...], n: int) -> float:
    with LocalRedisServer(appendonly=False) as server:
        connection = redis.Redis.from_url(server.url)
        connection.config_set("stream-node-max-bytes", node_bytes)
        before = int(connection.info("memory")["used_memory"])
        run(server.url, func, args, n)
        connection.script_flush()
        assert connection.zcard("rq:finished:default") == n, "not every task finished"
        return (int(connection.info("memory")["used_memory"]) - before) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.finished_bytes", description=__doc__)
    parser.add_argument("--tasks", type=int, default=3000, help="tasks per figure (default %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # RQ's worker logs every job
    figures: dict[str, dict[str, float]] = {}
    print("| task | Redis | task-processor B | RQ B | x RQ on a default Redis |\n|---|---|--:|--:|--:|")
    for task, (func, call_args) in TASKS.items():
        rq_default = per_task(_rq, REDISES["default Redis"], func, call_args, args.tasks)
        for where, node_bytes in REDISES.items():
            ours = per_task(_ours, node_bytes, func, call_args, args.tasks)
            theirs = rq_default if node_bytes == 4096 else per_task(_rq, node_bytes, func, call_args, args.tasks)
            figures[f"{task}|{where}"] = {"task-processor": round(ours), "rq": round(theirs)}
            print(f"| {task} | {where} | {ours:,.0f} | {theirs:,.0f} | {ours / rq_default:.2f}x |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
