"""Run every measurement for every system against one private redis-server, then write the table and chart.

    benchmarks/run [--quick] [--repeat N] [--out DIR]

Figures are medians over the repeats; ratios compare systems measured in the same run, which is what holds
from one machine to the next (absolute rates move with the machine and whatever else runs on it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import redis

from benchmarks import measure, report
from benchmarks.systems import TUNED_DRAMATIQ, System, all_systems, ours
from producer.commands.redis_server import LocalRedisServer

ROOT = Path(__file__).resolve().parent.parent

SIZES = {
    "task-processor": 20_000,
    "RQ SimpleWorker": 2_000,
    "RQ Worker (fork)": 500,
    "Celery": 6_000,
    "Dramatiq": 15_000,
    "raw redis-py (RPUSH/BLMOVE)": 60_000,
}
"""Tasks per drain, so that each drain takes a few seconds whatever the system's speed (a drain of a second or
two would count the start-up of a fleet's later workers and threads, which begin after the first pop)."""

ENQUEUES = 10_000
"""Tasks enqueued one by one per measurement: a few seconds for every system (a second-long sample on a shared
2-CPU machine moved the ratio to RQ between 1.5x and 2.5x from one sample to the next)."""

PAIRS = 3
"""Back-to-back pairs against the per-process anchors in each repeat."""

DEPTHS = (10_000, 1_000_000)
"""Queue depths at which one task-worker's pop rate is compared (the deep one is 100 k with --quick)."""

DEPTH_WINDOW, DEPTH_ROUNDS = 2_000, 5
"""The pop rate at a depth is the median over this many turns (alternating with the other depth) of one window of
this many pops each."""


def worker_env(url: str) -> dict[str, str]:
    """The environment of every worker process a run starts: this Redis, the benchmark's task module allowed."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "TASK_", "LOG_"))},
        "BENCH_REDIS_URL": url,
        "REDIS_URL": url,
        "TASK_MODULES": "benchmarks.tasks",  # task-worker runs only the modules it is allowed
        "LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }


def _machine(connection: redis.Redis) -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "cpu": next(
            (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")),
            platform.processor(),
        ),
        "load_average_at_start": os.getloadavg()[0],
        "python": platform.python_version(),
        "redis": connection.info("server")["redis_version"],
    }  # fmt: skip


def run(quick: bool, repeat: int) -> dict[str, Any]:
    scale = 4 if quick else 1
    samples: defaultdict[tuple[str, str], list[Any]] = defaultdict(list)
    with LocalRedisServer(appendonly=False) as server:
        connection = redis.Redis.from_url(server.url)
        env = worker_env(server.url)
        os.environ["BENCH_REDIS_URL"] = server.url  # the Celery and Dramatiq apps read it when imported here too
        systems = all_systems(server.url)
        results: dict[str, Any] = {"machine": _machine(connection), "quick": quick, "repeat": repeat}
        for rep in range(repeat):
            for system in systems:
                n = SIZES[system.name] // scale
                print(f"[{rep + 1}/{repeat}] {system.name}", flush=True)
                samples[(system.name, "enqueue")].append(
                    measure.enqueue_rate(connection, system, ENQUEUES // scale, False)
                )
                samples[(system.name, "enqueue_batch")].append(
                    measure.enqueue_rate(connection, system, 20_000 // scale, True)
                )
                samples[(system.name, "bytes")].append(measure.bytes_per_task(connection, system, 10_000 // scale))
                first = next(iter(system.workers.values()))[0]
                samples[(system.name, "latency")].append(
                    measure.latency_ms(connection, system, first, env, 200 // scale)
                )
                for label, commands in system.workers.items():
                    rate = measure.drain_rate(connection, system, commands, env, n, timeout=300)
                    samples[(system.name, f"drain:{label}")].append(rate)
                    print(f"    {label}: {rate:,.0f} tasks/s", flush=True)
            _anchor_pairs(connection, systems, env, scale, samples)
        worker = systems[0].workers["1 process"][0]
        depths = [depth // (10 if quick and depth > 10_000 else 1) for depth in DEPTHS]
        results["depths"] = depths
        # The shallow queue on a Redis of its own, so that each keeps its depth while the turns alternate.
        with LocalRedisServer(appendonly=False) as shallow:
            queues = [
                (redis.Redis.from_url(shallow.url), ours(shallow.url), depths[0], worker_env(shallow.url)),
                (connection, systems[0], depths[1], env),
            ]
            for rep in range(repeat):
                print(f"[{rep + 1}/{repeat}] task-processor with {depths[0]:,} and {depths[1]:,} queued", flush=True)
                rates = measure.paired_pop_rates(queues, worker, DEPTH_WINDOW, DEPTH_ROUNDS)
                for depth, measured in zip(depths, rates, strict=True):
                    samples[("task-processor", f"depth:{depth}")].append(statistics.median(measured))
    results["figures"] = {f"{name}|{what}": _median(values) for (name, what), values in samples.items()}
    return results


def _anchor_pairs(
    connection: redis.Redis, systems: list[System], env: dict[str, str], scale: int, samples: dict[Any, list[Any]]
) -> None:
    """One task-worker process against the tuned Dramatiq process, and our enqueue against Dramatiq's send(),
    each pair measured back to back: the ratio of a pair holds even on a machine whose speed drifts from one
    minute to the next, which the table's figures (each system measured minutes apart) do not."""
    ours, dramatiq = systems[0], next(s for s in systems if s.name == "Dramatiq")
    for _ in range(PAIRS):
        rates = [
            measure.drain_rate(connection, system, system.workers[label], env, SIZES["Dramatiq"] // scale, timeout=300)
            for system, label in ((ours, "1 process"), (dramatiq, TUNED_DRAMATIQ))
        ]
        samples[(ours.name, "pair:drain")].append(rates[0] / rates[1])
        sends = [measure.enqueue_rate(connection, system, ENQUEUES // scale, False) or 0 for system in (ours, dramatiq)]
        samples[(ours.name, "pair:enqueue")].append(sends[0] / sends[1])
        print(f"    paired: drain {rates[0] / rates[1]:.2f}x, enqueue {sends[0] / sends[1]:.2f}x", flush=True)


def _median(values: list[Any]) -> Any:
    if values[0] is None:
        return None
    if isinstance(values[0], tuple):
        return tuple(statistics.median(v[i] for v in values) for i in range(len(values[0])))
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a quarter of the tasks, one repeat, 100 k deep")
    parser.add_argument("--repeat", type=int, help="repeats per figure (default 3, 1 with --quick)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="where to write")
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else 3)
    started = time.monotonic()
    results = run(args.quick, repeat)
    results["seconds"] = round(time.monotonic() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    table = report.markdown(results)
    (args.out / "latest.md").write_text(table)
    report.chart(results, args.out / "latest.png")
    print(table)
    print(f"wrote {args.out / 'latest.md'} and {args.out / 'latest.png'} in {results['seconds']} s")


if __name__ == "__main__":
    main()
