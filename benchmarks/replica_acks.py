"""What TASK_REPLICA_ACKS=1 costs: one-by-one enqueue throughput with and without waiting for a replica.

A private master and its replica (redis-servers on free loopback ports, temp dirs, AOF with the same fsync policy,
``always`` by default as run-local and the chart use); rounds alternate between a producer that waits for no replica
and one that waits for one (Redis WAIT on the enqueue's connection), so drift of the machine hits both alike.
Reports each one's median tasks per second and their ratio.

    .venv/bin/python -m benchmarks.replica_acks [--one N] [--rounds N] [--appendfsync always|everysec]
"""

from __future__ import annotations

import argparse
import statistics
import time

import redis

from benchmarks.enqueue_fsync import one_by_one
from producer import Producer
from producer.commands.redis_server import APPENDFSYNC, LocalRedisServer

SYNC_TIMEOUT = 30.0
"""Seconds the replica may take to finish its first sync."""


class Replica(LocalRedisServer):
    """A private redis-server replicating ``master``."""

    def __init__(self, master: LocalRedisServer, appendfsync: str) -> None:
        super().__init__(appendfsync=appendfsync)
        self.master = master

    def arguments(self) -> list[str]:
        return [*super().arguments(), "--replicaof", "127.0.0.1", str(self.master.port)]


def wait_for_sync(master: redis.Redis) -> None:
    master.config_set("repl-diskless-sync-delay", 0)  # Redis waits 5 s for more replicas by default
    deadline = time.monotonic() + SYNC_TIMEOUT
    while int(master.execute_command("WAIT", 1, 100)) < 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the replica did not sync within {SYNC_TIMEOUT:g}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", type=int, default=3000, help="tasks enqueued one by one per round and producer")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--appendfsync", choices=APPENDFSYNC, default="always", help="both servers' AOF fsync policy")
    args = parser.parse_args()
    master = LocalRedisServer(appendfsync=args.appendfsync).start()
    replica = Replica(master, args.appendfsync)
    results: dict[int, list[float]] = {0: [], 1: []}
    try:
        replica.start()
        producers = {acks: Producer(master.url, replica_acks=acks) for acks in results}
        wait_for_sync(producers[0].connection)
        for _ in range(args.rounds):
            for acks, producer in producers.items():
                producer.connection.flushall()
                results[acks].append(one_by_one(producer, args.one))
    finally:
        replica.close()
        master.close()
    medians = {acks: statistics.median(rates) for acks, rates in results.items()}
    print(f"appendfsync {args.appendfsync}, one replica, {args.one} tasks one by one, median of {args.rounds} rounds")
    for acks, rate in medians.items():
        print(f"TASK_REPLICA_ACKS={acks}: {rate:>10,.0f} tasks/s")
    print(f"TASK_REPLICA_ACKS=1 / TASK_REPLICA_ACKS=0: {medians[1] / medians[0]:.2f}")


if __name__ == "__main__":
    main()
