"""A worker that joins late gets its share: no worker holds work it will not start soon.

    python -m benchmarks.late_worker [--tasks 40] [--seconds 0.5] [--late 1.0]

40 tasks of 0.5 s are queued; one task-worker starts, a second one a second later. A worker that took more than it
runs at once (a deep prefetch, Celery's default) would leave the late one idle while the first works through its
hoard; here each worker holds at most the job it runs and the one its last finish popped, so the late worker runs
about half. Prints how many tasks each worker ran; the target is at least 15 of 40 for the late one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

from producer import Producer, Task
from producer.commands.redis_server import LocalRedisServer

BIN = Path(sys.executable).parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.late_worker", description=__doc__)
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=0.5, help="how long each task sleeps")
    parser.add_argument("--late", type=float, default=1.0, help="seconds between the two workers' starts")
    args = parser.parse_args(argv)
    with LocalRedisServer(appendonly=False) as server:
        producer = Producer(server.url)
        jobs = producer.enqueue_many([Task("worker.examples.sleep", (args.seconds,)) for _ in range(args.tasks)])
        env = {**os.environ, "REDIS_URL": server.url, "TASK_MODULES": "worker.examples", "LOG_FORMAT": "json"}
        workers = []
        for name in ("first", "late"):
            command = [str(BIN / "task-worker"), "--burst", "--name", name]
            workers.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            if name == "first":
                time.sleep(args.late)
        for worker in workers:
            worker.wait(timeout=args.tasks * args.seconds + 60)
        producer.wait(jobs, timeout=10)
        connection = redis.Redis.from_url(server.url)
        ran = {
            name: int(connection.hget(f"rq:worker:{name}", "successful_job_count") or 0) for name in ("first", "late")
        }
    print(json.dumps({"tasks": args.tasks, "ran": ran, "late_share": round(ran["late"] / args.tasks, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
