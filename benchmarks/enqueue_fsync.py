"""Enqueue throughput with Redis' AOF fsync policies side by side: what ``appendfsync always`` costs.

Two private redis-servers (AOF on, ``everysec`` and ``always``) in temp dirs on the same disk; rounds alternate
between them so drift of the machine hits both alike. Reports tasks per second, one by one and in batches.

    .venv/bin/python benchmarks/enqueue_fsync.py [--one N] [--batch N] [--batch-size N] [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from producer import Producer, Task
from producer.commands.redis_server import LocalRedisServer


def one_by_one(producer: Producer, count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        producer.enqueue("worker.examples.add", i, 1)
    return count / (time.perf_counter() - started)


def batched(producer: Producer, count: int, size: int) -> float:
    tasks = [Task("worker.examples.add", (i, 1)) for i in range(size)]
    started = time.perf_counter()
    for _ in range(count // size):
        producer.enqueue_many(tasks)
    return (count // size) * size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", type=int, default=2000, help="tasks enqueued one by one per round")
    parser.add_argument("--batch", type=int, default=20000, help="tasks enqueued with enqueue_many per round")
    parser.add_argument("--batch-size", type=int, default=500, help="tasks per enqueue_many call")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    policies = ("everysec", "always")
    servers = {p: LocalRedisServer(appendfsync=p).start() for p in policies}
    results: dict[tuple[str, str], list[float]] = {}
    try:
        producers = {p: Producer(s.url) for p, s in servers.items()}
        for _ in range(args.rounds):
            for policy, producer in producers.items():
                producer.connection.flushall()
                results.setdefault((policy, "one by one"), []).append(one_by_one(producer, args.one))
                producer.connection.flushall()
                rate = batched(producer, args.batch, args.batch_size)
                results.setdefault((policy, f"enqueue_many({args.batch_size})"), []).append(rate)
    finally:
        for server in servers.values():
            server.close()
    print(f"{'appendfsync':<12} {'mode':<20} {'tasks/s (median of ' + str(args.rounds) + ')':>26}")
    for (policy, mode), rates in results.items():
        print(f"{policy:<12} {mode:<20} {statistics.median(rates):>26,.0f}")
    for mode in sorted({m for _, m in results}):
        ratio = statistics.median(results[("always", mode)]) / statistics.median(results[("everysec", mode)])
        print(f"always / everysec, {mode}: {ratio:.2f}")


if __name__ == "__main__":
    main()
