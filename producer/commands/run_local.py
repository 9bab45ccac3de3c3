"""``task-producer run-local``: the whole system on one machine, driven by the same scaling policy.

Redis (the configured one, or a private durable redis-server when none answers), a LocalDeployment of worker
processes, the autoscaler sizing it, and a demo workload whose progress and scaling are shown as they happen.
"""

from __future__ import annotations

import random
import re
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import redis
from rq.job import Job

from producer.api import Producer, Task
from producer.commands.progress import ProgressBar
from producer.commands.redis_server import LocalRedisServer
from producer.scaling import cron
from producer.scaling.autoscaler import ScaleEvent, bounds_from
from producer.scaling.fleet import Fleet
from producer.scaling.local.pools import LocalPools
from producer.scaling.pools import Pool
from task_processor.connection import connect, describe_failure, ping, redact_url
from task_processor.errors import ConfigError
from task_processor.jobs import ATTEMPT_META_KEY
from task_processor.settings import Settings, parse_queues

POLL_INTERVAL = 0.2
"""Seconds between two looks at the workers while they return to the minimum."""

SCALE_DOWN_GRACE = 30.0
"""Seconds, beyond the scale-down delay, to wait for the workers to return to the minimum."""


POOL_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,54}[a-z0-9])?")
"""A pool's name, as a Kubernetes label value and a Deployment name suffix allow it."""

DEMO_MODULE = "worker.examples"
"""The demo workload's tasks: run-local's own workers may run them, on top of TASK_MODULES."""


@dataclass(frozen=True)
class RunLocalOptions:
    jobs: int = 300
    minimum: int = 0
    maximum: int = 4
    scale_down_delay: float = 5.0
    keep_running: bool = False
    private_redis: bool = False
    seed: int | None = None
    pools: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """``--pool NAME=QUEUE[,QUEUE]``: worker pools of their own, each with its queues (none: one pool, TASK_QUEUES)."""


def parse_pool(raw: str) -> tuple[str, tuple[str, ...]]:
    """``NAME=QUEUE[,QUEUE]`` as ``--pool`` takes it; ConfigError naming the option and the fix."""
    name, equals, queues = raw.partition("=")
    name = name.strip()
    if not equals or not POOL_NAME.fullmatch(name):
        raise ConfigError(
            f"--pool {raw!r} is not NAME=QUEUE[,QUEUE]: name the pool (lowercase letters, digits and '-') and list "
            "its queues, e.g. --pool bulk=reports,exports"
        )
    return name, parse_queues(queues, f"--pool {name}")


def demo_tasks(count: int, rng: random.Random) -> list[Task]:
    """Mostly quick tasks, a fifth slow ones, and one that fails twice before it succeeds on a retry."""
    tasks = [Task(f"{DEMO_MODULE}.flaky", (2,), retries=3, retry_backoff=1)] if count else []
    for i in range(count - len(tasks)):
        if rng.random() < 0.2:
            tasks.append(Task(f"{DEMO_MODULE}.sleep", (round(rng.uniform(0.1, 0.6), 2),)))
        elif i % 2:
            tasks.append(Task(f"{DEMO_MODULE}.compute", (rng.randint(1_000, 20_000),)))
        else:
            tasks.append(Task(f"{DEMO_MODULE}.add", (i, i)))
    return tasks


@contextmanager
def redis_for_run(settings: Settings, private: bool, out: TextIO) -> Iterator[str]:
    """The configured Redis if it answers; else, unless REDIS_URL was set explicitly, a private one."""
    if not private:
        connection = connect(settings.redis_url)
        try:
            connection.ping()
        except redis.RedisError as exc:
            if settings.redis_url_set:
                raise describe_failure(settings.redis_url, exc) from exc
        else:
            print(f"Using Redis at {redact_url(settings.redis_url)}", file=out)
            yield settings.redis_url
            return
        finally:
            connection.close()
    with LocalRedisServer() as server:
        print(f"Started a private redis-server at {server.url} (AOF on, data in {server.directory})", file=out)
        yield server.url


def _describe(event: ScaleEvent, pool: str | None) -> str:
    arrow = "up" if event.desired > event.previous else "down"
    return (
        f"  {'' if pool is None else f'pool {pool}: '}scaled {arrow} {event.previous} -> {event.desired} workers "
        f"({event.reason}: {event.queued} queued, {event.in_flight} running)"
    )


def _pools(settings: Settings, options: RunLocalOptions) -> dict[str, Pool]:
    bounds = bounds_from(settings, options.minimum, options.maximum, options.scale_down_delay)
    if not options.pools:
        return {"default": Pool("default", settings.deployment, settings.queues, bounds, labelled=False)}
    return {name: Pool(name, f"{settings.deployment}-{name}", queues, bounds) for name, queues in options.pools}


def run_local(settings: Settings, options: RunLocalOptions, out: TextIO) -> int:
    modules = tuple(dict.fromkeys((*settings.task_modules, DEMO_MODULE)))
    periodic = cron.load(settings, modules)  # a bad TASK_CRON file stops here (exit 2), before Redis is touched
    with redis_for_run(settings, options.private_redis, out) as url:
        connection = connect(url)
        ping(connection, url)
        log_dir = Path(tempfile.mkdtemp(prefix="task-processor-run-local-"))
        pools = LocalPools(
            connection,
            # The workers share this machine: only this process serves METRICS_PORT (the autoscaler's metrics).
            settings.child_env(REDIS_URL=url, LOG_FORMAT="json", METRICS_PORT="0", TASK_MODULES=",".join(modules)),
            _pools(settings, options),
            log_dir,
        ).start()
        schedule = cron.Cron(connection, periodic, settings, modules) if periodic else None
        fleet = Fleet(connection, pools, settings, cron=schedule)
        stop = threading.Event()
        loop = threading.Thread(target=fleet.run, args=(stop,), name="autoscaler", daemon=True)
        loop.start()
        try:
            code = _demo(
                Producer(url, settings.queues[0], serializer=settings.serializer_name, modules=modules),
                options,
                fleet,
                pools,
                out,
            )
            logs = sorted(log_dir.glob("workers*.log")) or [log_dir / "workers.log"]
            print(f"  worker logs  {', '.join(str(path) for path in logs)}", file=out)
            if options.keep_running:
                # Ctrl-C is the documented way out: honoured even when started with SIGINT ignored (a shell
                # starts its background jobs so), as `task-producer autoscale` does.
                if threading.current_thread() is threading.main_thread():
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                print(
                    "Workers keep running and scaling; enqueue with "
                    f"`REDIS_URL={redact_url(url)} task-producer enqueue {DEMO_MODULE}.add 1 2` (tasks of your own: "
                    "start run-local with TASK_MODULES naming their modules). "
                    "Ctrl-C stops.",
                    file=out,
                )
                threading.Event().wait()
            return code
        finally:
            stop.set()
            loop.join()
            pools.close()


def _demo(producer: Producer, options: RunLocalOptions, fleet: Fleet, pools: LocalPools, out: TextIO) -> int:
    rng = random.Random(options.seed)
    tasks = demo_tasks(options.jobs, rng)
    deployments = pools.deployments
    several = len(deployments) > 1
    if several:  # the demo's tasks go round the pools, onto each pool's first queue
        heads = [pool.queues[0] for pool in pools.pools().values()]
        tasks = [replace(task, queue=heads[i % len(heads)]) for i, task in enumerate(tasks)]
    started = time.monotonic()
    jobs = producer.enqueue_many(tasks)
    where = (
        "queues " + ", ".join(f"'{q}' (pool {name})" for name, q in zip(deployments, heads, strict=True))
        if several
        else f"queue '{producer.default_queue}'"
    )
    print(
        f"Enqueued {len(jobs)} demo tasks on {where} (workers: min {options.minimum}, max {options.maximum})", file=out
    )
    bar = ProgressBar(len(jobs), out)
    shown: dict[str, int] = dict.fromkeys(deployments, 0)
    peak = 0

    def running() -> int:
        return sum(len(d.running()) for d in deployments.values())

    def events(name: str) -> list[ScaleEvent]:
        autoscaler = fleet.pools.get(name)
        return [] if autoscaler is None else list(autoscaler.events)

    def show_events() -> None:
        for name in deployments:
            for event in events(name)[shown[name] :]:
                bar.message(_describe(event, name if several else None))
                shown[name] += 1

    failed: list[str] = []
    for progress in producer.follow(jobs):
        failed = [job_id for job_id, _ in progress.failed]
        peak = max(peak, running())
        show_events()
        ended = progress.done + len(failed)
        rate = ended / max(time.monotonic() - started, 1e-9)
        bar.update(ended, f"workers {running()}  {rate:.1f} tasks/s")
    drained = time.monotonic() - started
    bar.close()

    def above_minimum() -> bool:
        return any(
            d.get_replicas() > options.minimum or len(d.running()) > options.minimum for d in deployments.values()
        )

    deadline = time.monotonic() + options.scale_down_delay + SCALE_DOWN_GRACE
    while above_minimum() and time.monotonic() < deadline:
        show_events()
        time.sleep(POLL_INTERVAL)
    show_events()

    retries = sum(max(0, int(job.meta.get(ATTEMPT_META_KEY, 1)) - 1) for job in _refetch(producer, jobs))
    started_workers = sum(d.counters.started for d in deployments.values())
    replaced = sum(d.counters.replaced for d in deployments.values())
    print("Summary", file=out)
    print(f"  tasks        {len(jobs) - len(failed)} finished, {len(failed)} failed, {retries} retries", file=out)
    print(
        f"  throughput   {len(jobs)} tasks in {drained:.1f} s = {len(jobs) / max(drained, 1e-9):.1f} tasks/s", file=out
    )
    print(f"  workers      peak {peak}, {started_workers} started, {replaced} replaced, now {running()}", file=out)
    for name in deployments:
        history = " -> ".join(str(n) for n in [options.minimum, *(e.desired for e in events(name))])
        label = f"scaling {name}".ljust(12) if several else "scaling     "
        print(f"  {label} {history} ({len(events(name))} events)", file=out)
    for job_id in failed[:5]:
        print(f"  failed job   {job_id}", file=out)
    back_to_min = all(d.get_replicas() == options.minimum for d in deployments.values())
    if not back_to_min:
        print(f"  warning      workers did not return to the minimum ({options.minimum})", file=out)
    return 0 if not failed and back_to_min else 1


def _refetch(producer: Producer, jobs: list[Job]) -> list[Job]:
    fetched = Job.fetch_many(
        [j.id for j in jobs], connection=producer.connection, serializer=producer.queue().serializer
    )
    return [job for job in fetched if job is not None]
