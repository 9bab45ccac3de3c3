"""``task-worker``: one long-running worker process (the container's PID 1), and its probe."""

from __future__ import annotations

import argparse
import sys

import redis

from task_processor.connection import OutageLog, connect, describe_failure, ping
from task_processor.errors import ConfigError, TaskProcessorError, exit_with
from task_processor.logs import configure_logging, get_logger
from task_processor.settings import Settings, validate_queue_name
from task_processor.taskmodules import TaskModules
from worker.batching import BatchedCalls
from worker.metrics import serve as serve_metrics
from worker.probe import healthy_workers
from worker.recycle import Recycler
from worker.runner import build_worker
from worker.slots import SlotPool, SlotWorker

log = get_logger("task_processor.worker")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="task-worker",
        description="Run one worker on TASK_QUEUES (highest priority first). `task-worker check` is its probe.",
    )
    parser.add_argument(
        "--queue",
        "-q",
        action="append",
        metavar="Q",
        help="queue to work on, repeatable, highest priority first (default: TASK_QUEUES)",
    )
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--max-jobs", type=int, metavar="N", help="exit after N jobs (the process is recycled)")
    parser.add_argument(
        "--max-memory",
        type=int,
        metavar="MB",
        help="exit after a job once resident memory exceeds MB MiB (the process is recycled; default: "
        "WORKER_MAX_MEMORY, else no limit)",
    )
    parser.add_argument(
        "--concurrency",
        "-c",
        type=int,
        default=1,
        metavar="N",
        help="run N tasks at once in threads, each slot its own RQ worker (for I/O-bound tasks; default 1)",
    )
    parser.add_argument("--name", help="worker name (default: <hostname>.<pid>.<random>)")
    return parser


def _check_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="task-worker check",
        description="Exit 0 only when a worker of this host (or the named one) is alive and registered.",
    )
    parser.add_argument("--name", help="check this worker instead of any worker of this host")
    return parser


def _check(argv: list[str], settings: Settings) -> int:
    args = _check_parser().parse_args(argv)
    connection = connect(settings.redis_url)
    try:
        workers = healthy_workers(connection, settings.host, args.name)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        if isinstance(exc, redis.AuthenticationError):  # a rotated password: a restart reads the new Secret
            raise describe_failure(settings.redis_url, exc) from exc
        # A liveness probe must not restart healthy workers for an outage of Redis: restarting cannot fix it,
        # and would interrupt every running job. The workers reconnect on their own.
        print(
            f"task-worker check: passing, {describe_failure(settings.redis_url, exc)} (workers reconnect)",
            file=sys.stderr,
        )
        return 0
    except redis.RedisError as exc:
        raise describe_failure(settings.redis_url, exc) from exc
    if not workers:
        target = f"worker {args.name!r}" if args.name else "a worker of this host"
        print(f"task-worker check: {target} is not registered and alive in Redis", file=sys.stderr)
        return 1
    print(f"ok: {', '.join(w.name + ' (' + w.state + ')' for w in workers)}")
    return 0


def _task_modules(settings: Settings) -> TaskModules:
    """The worker's trust boundary, its modules imported up front so that a typo shows at start-up."""
    modules = TaskModules(settings.task_modules)
    if not modules.modules:
        log.warning(
            "TASK_MODULES is not set: this worker refuses every job; set it to the modules of your tasks "
            "(e.g. TASK_MODULES=myapp.tasks)"
        )
    for problem in modules.preload():
        log.warning("cannot import a module of TASK_MODULES; its jobs will fail until it can", problem=problem)
    return modules


def _run(argv: list[str], settings: Settings) -> int:
    args = _parser().parse_args(argv)
    for option, value in (
        ("--max-jobs", args.max_jobs),
        ("--max-memory", args.max_memory),
        ("--concurrency", args.concurrency),
    ):
        if value is not None and value < 1:
            raise ConfigError(f"{option} {value} must be at least 1")
    if args.name and args.concurrency > 1:
        raise ConfigError("--name names one worker: leave it out with --concurrency (each slot gets its own name)")
    queues = tuple(validate_queue_name(q, "--queue") for q in args.queue) if args.queue else settings.queues
    recycler = Recycler(args.max_jobs, args.max_memory or settings.max_memory_mib)
    configure_logging(settings.log_level, settings.log_format)
    serve_metrics(settings.metrics_port, settings.metrics_bind, settings.pool)
    connection = connect(settings.redis_url, workers=args.concurrency)
    ping(connection, settings.redis_url)
    quiet = "DEBUG" if settings.log_level == "DEBUG" else "WARNING"
    modules = _task_modules(settings)
    started = {"queues": list(queues), "serializer": settings.serializer_name, "task_modules": list(modules.modules)}
    if args.concurrency > 1:
        outage, calls = OutageLog(), BatchedCalls(connection)
        slots = [
            build_worker(
                settings, connection, queues, worker_class=SlotWorker, outage=outage, calls=calls, modules=modules
            )
            for _ in range(args.concurrency)
        ]
        names = [slot.name for slot in slots]
        log.info("worker starting", workers=names, **started)
        code = SlotPool(slots).run(burst=args.burst, logging_level=quiet, recycler=recycler)  # type: ignore[arg-type]
        log.info("worker stopped", workers=names)
        return code
    worker = build_worker(settings, connection, queues, args.name, modules=modules)
    log.info("worker starting", worker=worker.name, **started)
    worker.work(burst=args.burst, with_scheduler=True, logging_level=quiet, recycler=recycler)
    log.info("worker stopped", worker=worker.name)
    return 1 if worker.cold_stopped else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = Settings.from_env()
        if argv[:1] == ["check"]:
            return _check(argv[1:], settings)
        return _run(argv, settings)
    except TaskProcessorError as exc:
        return exit_with("task-worker", exc)


if __name__ == "__main__":
    sys.exit(main())
