"""``task-producer run-local``: the whole system on one machine, driven by the same scaling policy.

Redis (the configured one, or a private durable redis-server when none answers), a LocalDeployment of worker
processes, the autoscaler sizing it, and a demo workload whose progress and scaling are shown as they happen.
"""

from __future__ import annotations

import random
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import redis
from rq.job import Job

from producer.api import Producer, Task
from producer.commands.progress import ProgressBar
from producer.commands.redis_server import LocalRedisServer
from producer.scaling.autoscaler import Autoscaler, ScaleEvent, bounds_from
from producer.scaling.local import LocalDeployment
from task_processor.connection import connect, describe_failure, ping, redact_url
from task_processor.jobs import ATTEMPT_META_KEY
from task_processor.settings import Settings

POLL_INTERVAL = 0.2
"""Seconds between two looks at the workers while they return to the minimum."""

SCALE_DOWN_GRACE = 30.0
"""Seconds, beyond the scale-down delay, to wait for the workers to return to the minimum."""


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


def _describe(event: ScaleEvent) -> str:
    arrow = "up" if event.desired > event.previous else "down"
    return (
        f"  scaled {arrow} {event.previous} -> {event.desired} workers "
        f"({event.reason}: {event.queued} queued, {event.in_flight} running)"
    )


def run_local(settings: Settings, options: RunLocalOptions, out: TextIO) -> int:
    modules = tuple(dict.fromkeys((*settings.task_modules, DEMO_MODULE)))
    bounds = bounds_from(settings, options.minimum, options.maximum, options.scale_down_delay)
    with redis_for_run(settings, options.private_redis, out) as url:
        connection = connect(url)
        ping(connection, url)
        log_dir = Path(tempfile.mkdtemp(prefix="task-processor-run-local-"))
        deployment = LocalDeployment(
            connection,
            # The workers share this machine: only this process serves METRICS_PORT (the autoscaler's metrics).
            settings.child_env(REDIS_URL=url, LOG_FORMAT="json", METRICS_PORT="0", TASK_MODULES=",".join(modules)),
            settings.queues,
            replicas=options.minimum,
            log_file=log_dir / "workers.log",
            name=settings.deployment,
        ).start()
        autoscaler = Autoscaler(
            connection,
            settings.queues,
            deployment,
            bounds,
            settings.autoscale_interval,
            settings.serializer,
            settings.max_abandons,
        )
        stop = threading.Event()
        loop = threading.Thread(target=autoscaler.run, args=(stop,), name="autoscaler", daemon=True)
        loop.start()
        try:
            code = _demo(
                Producer(url, settings.queues[0], serializer=settings.serializer_name, modules=modules),
                options,
                autoscaler,
                deployment,
                out,
            )
            print(f"  worker logs  {log_dir / 'workers.log'}", file=out)
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
            deployment.close()


def _demo(
    producer: Producer, options: RunLocalOptions, autoscaler: Autoscaler, deployment: LocalDeployment, out: TextIO
) -> int:
    rng = random.Random(options.seed)
    tasks = demo_tasks(options.jobs, rng)
    started = time.monotonic()
    jobs = producer.enqueue_many(tasks)
    print(
        f"Enqueued {len(jobs)} demo tasks on queue '{producer.default_queue}' "
        f"(workers: min {options.minimum}, max {options.maximum})",
        file=out,
    )
    bar = ProgressBar(len(jobs), out)
    shown = 0
    peak = 0

    def show_events() -> None:
        nonlocal shown
        for event in list(autoscaler.events)[shown:]:
            bar.message(_describe(event))
            shown += 1

    failed: list[str] = []
    for progress in producer.follow(jobs):
        failed = [job_id for job_id, _ in progress.failed]
        peak = max(peak, len(deployment.running()))
        show_events()
        ended = progress.done + len(failed)
        rate = ended / max(time.monotonic() - started, 1e-9)
        bar.update(ended, f"workers {len(deployment.running())}  {rate:.1f} tasks/s")
    drained = time.monotonic() - started
    bar.close()

    deadline = time.monotonic() + options.scale_down_delay + SCALE_DOWN_GRACE
    while (deployment.get_replicas() > options.minimum or len(deployment.running()) > options.minimum) and (
        time.monotonic() < deadline
    ):
        show_events()
        time.sleep(POLL_INTERVAL)
    show_events()

    retries = sum(max(0, int(job.meta.get(ATTEMPT_META_KEY, 1)) - 1) for job in _refetch(producer, jobs))
    counters = deployment.counters
    history = " -> ".join(str(n) for n in [options.minimum, *(e.desired for e in autoscaler.events)])
    print("Summary", file=out)
    print(f"  tasks        {len(jobs) - len(failed)} finished, {len(failed)} failed, {retries} retries", file=out)
    print(
        f"  throughput   {len(jobs)} tasks in {drained:.1f} s = {len(jobs) / max(drained, 1e-9):.1f} tasks/s", file=out
    )
    print(
        f"  workers      peak {peak}, {counters.started} started, {counters.replaced} replaced, "
        f"now {len(deployment.running())}",
        file=out,
    )
    print(f"  scaling      {history} ({len(autoscaler.events)} events)", file=out)
    for job_id in failed[:5]:
        print(f"  failed job   {job_id}", file=out)
    back_to_min = deployment.get_replicas() == options.minimum
    if not back_to_min:
        print(f"  warning      workers did not return to the minimum ({options.minimum})", file=out)
    return 0 if not failed and back_to_min else 1


def _refetch(producer: Producer, jobs: list[Job]) -> list[Job]:
    fetched = Job.fetch_many(
        [j.id for j in jobs], connection=producer.connection, serializer=producer.queue().serializer
    )
    return [job for job in fetched if job is not None]
