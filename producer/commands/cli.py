"""``task-producer``: run the embedded default, enqueue a task, show the state of queues and workers."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

import redis
from rq.job import Job

from producer.api import Producer, Task
from producer.commands.dashboard import run_dashboard
from producer.commands.progress import ProgressBar
from producer.commands.requeue import requeue_failed
from producer.commands.run_local import RunLocalOptions, parse_pool, run_local
from producer.commands.status import collect, render_json, render_table, watch
from producer.scaling import metrics
from producer.taskfile import enqueue_in_batches, json_object, parse_time, read_tasks
from task_processor.connection import describe_failure
from task_processor.errors import ConfigError, TaskProcessorError, exit_with
from task_processor.logs import configure_logging
from task_processor.metrics import serve as serve_metrics
from task_processor.settings import Settings, validate_queue_name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="task-producer",
        description="Enqueue tasks onto Redis (RQ) queues and scale the workers that run them.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    local = commands.add_parser(
        "run-local",
        help="run Redis, autoscaled local workers and a demo workload on this machine",
        description="The embedded default: uses Redis at REDIS_URL, or starts a private redis-server when none "
        "answers on localhost; runs worker processes sized by the autoscaler; enqueues a demo workload.",
    )
    defaults = RunLocalOptions()
    local.add_argument("--jobs", type=int, default=defaults.jobs, help="demo tasks to enqueue (default %(default)s)")
    local.add_argument("--min", type=int, default=defaults.minimum, help="fewest workers (default %(default)s)")
    local.add_argument("--max", type=int, default=defaults.maximum, help="most workers (default %(default)s)")
    local.add_argument(
        "--scale-down-delay",
        type=float,
        default=defaults.scale_down_delay,
        metavar="S",
        help="seconds of lower demand before workers are retired (default %(default)s)",
    )
    local.add_argument("--keep-running", action="store_true", help="keep workers and autoscaler up after the demo")
    local.add_argument("--private-redis", action="store_true", help="always start a private redis-server")
    local.add_argument("--seed", type=int, help="seed for the demo workload's mix")
    local.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="NAME=QUEUE[,QUEUE]",
        help="a worker pool of its own serving these queues, sized under the same loop (repeatable; default: one "
        "pool serving TASK_QUEUES)",
    )

    enqueue = commands.add_parser(
        "enqueue",
        help="enqueue one task (or a file of them) and print the job ids",
        description="Enqueue FUNC with its arguments, or every task of --from-file; prints one job id per line.",
    )
    enqueue.add_argument(
        "func", metavar="FUNC", nargs="?", help="dotted path of the task function, e.g. myapp.tasks.resize"
    )
    enqueue.add_argument("args", metavar="ARG", nargs="*", help="arguments: JSON when they parse as JSON, else text")
    enqueue.add_argument("--kwargs", metavar="JSON", help="keyword arguments as a JSON object")
    enqueue.add_argument("--queue", "-q", help="queue (default: the first of TASK_QUEUES)")
    enqueue.add_argument("--job-id", help="job id (default: a random UUID)")
    enqueue.add_argument("--timeout", type=int, metavar="S", help="seconds the task may run (default TASK_TIMEOUT)")
    enqueue.add_argument("--retries", type=int, default=0, metavar="N", help="retries on failure, with backoff")
    enqueue.add_argument("--at-front", action="store_true", help="put the task at the head of the queue")
    enqueue.add_argument("--in", dest="delay", type=float, metavar="S", help="run it S seconds from now, not at once")
    enqueue.add_argument("--at", metavar="ISO8601", help="run it at this time, with its offset (2027-01-01T09:00:00Z)")
    enqueue.add_argument(
        "--depends-on",
        action="append",
        metavar="ID",
        help="run it only after this job finished (repeatable: after every one)",
    )
    enqueue.add_argument("--meta", metavar="JSON", help="a JSON object stored with the job (job.meta)")
    enqueue.add_argument("--result-ttl", type=int, metavar="S", help="seconds the result is kept (-1: for ever)")
    enqueue.add_argument(
        "--unique", action="store_true", help="with --job-id: refuse it (nothing enqueued) while that job is live"
    )
    enqueue.add_argument(
        "--from-file",
        metavar="FILE",
        type=argparse.FileType("r", encoding="utf-8"),
        help='tasks as JSON lines ({"func": ..., "args": [...], "kwargs": {...}}; "-" reads stdin), all checked '
        "first, then enqueued in batches with a progress bar on a terminal",
    )

    wait = commands.add_parser(
        "wait",
        help="wait until jobs finish, print their results",
        description="Wait for every JOB_ID to finish and print each result as a JSON line, in order. Exit 1 when "
        "one failed or the timeout passed. A progress bar shows on a terminal.",
    )
    wait.add_argument("job_ids", metavar="JOB_ID", nargs="+", help="ids printed by enqueue")
    wait.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds (default: wait forever)")

    autoscale = commands.add_parser(
        "autoscale",
        help="size the worker Deployment from the queues (the producer image's command)",
        description="Watch queued and in-flight work across TASK_QUEUES and set the replicas of "
        "WORKER_DEPLOYMENT in WORKER_NAMESPACE through its scale subresource; one replica leads via a Lease.",
    )
    autoscale.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="kubeconfig to use outside a cluster (default: in-cluster credentials, else KUBECONFIG or ~/.kube/config)",
    )

    status = commands.add_parser("status", help="queues, workers and the autoscaler's last decision")
    status.add_argument("--json", action="store_true", help="print the same facts as JSON")
    status.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=2.0,
        metavar="S",
        help="refresh every S seconds (default 2) until Ctrl-C: in place on a terminal, else one after another",
    )

    dashboard = commands.add_parser(
        "dashboard",
        help="run rq-dashboard on this Redis with this serializer (the dashboard extra)",
        description="rq-dashboard on REDIS_URL, reading jobs and workers with TASK_SERIALIZER. Basic auth from "
        "RQ_DASHBOARD_USERNAME and RQ_DASHBOARD_PASSWORD, required to listen on any address but loopback.",
    )
    dashboard.add_argument("--bind", default="127.0.0.1", help="address to listen on (default %(default)s)")
    dashboard.add_argument("--port", type=int, default=9181, help="port to listen on (default %(default)s)")
    dashboard.add_argument(
        "--read-only",
        action="store_true",
        help="serve views and data reads only: delete, requeue, empty, compact and any other write answer 403",
    )

    cancel = commands.add_parser(
        "cancel",
        help="cancel jobs: they never run",
        description="Cancel each JOB_ID as RQ's Job.cancel does: taken off its queue (or the scheduled or deferred "
        "registry) into the canceled registry; a job already running finishes. Every id is checked first: an unknown "
        "or already canceled one cancels nothing. Prints each canceled id.",
    )
    cancel.add_argument("job_ids", metavar="JOB_ID", nargs="+", help="ids printed by enqueue")

    requeue = commands.add_parser(
        "requeue",
        help="move failed jobs back onto their queue for another run",
        description="Move jobs from a queue's failed registry (rq:failed:<q>) to the back of the queue, keeping "
        "their id, arguments and meta. Prints each requeued job id.",
    )
    requeue.add_argument("--failed", action="store_true", help="take the jobs from the failed registry (required)")
    requeue.add_argument("--queue", "-q", help="queue (default: the first of TASK_QUEUES)")
    requeue.add_argument("--all", action="store_true", help="every failed job of the queue, oldest failure first")
    requeue.add_argument("job_ids", metavar="JOB_ID", nargs="*", help="the failed jobs to requeue")
    return parser


def _parse_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _enqueue(args: argparse.Namespace, settings: Settings) -> int:
    if args.from_file is not None:
        if args.func is not None:
            raise ConfigError("enqueue takes FUNC or --from-file, not both")
        for flag, given in (("--job-id", args.job_id), ("--kwargs", args.kwargs)):
            if given is not None:
                raise ConfigError(
                    f'{flag} names one task: with --from-file, put "{flag[2:].replace("-", "_")}" on each line'
                )
        defaults = {
            "queue": args.queue,
            "timeout": args.timeout,
            "retries": args.retries,
            "at_front": args.at_front,
            **_options(args),
        }
        return _enqueue_file(args.from_file, Producer.from_env(settings), defaults)
    if args.func is None:
        raise ConfigError("enqueue needs FUNC (a dotted path like myapp.tasks.resize) or --from-file FILE")
    kwargs = _json_object(args.kwargs, "--kwargs") or {}
    job = Producer.from_env(settings).enqueue_many(
        [
            Task(
                args.func,
                [_parse_arg(a) for a in args.args],
                kwargs,
                job_id=args.job_id,
                timeout=args.timeout,
                retries=args.retries,
                at_front=args.at_front,
                queue=args.queue,
                **_options(args),
            )
        ]
    )[0]
    print(job.id)
    return 0


def _json_object(text: str | None, flag: str) -> dict[str, Any] | None:
    return None if text is None else json_object(text, """'{"w": 640}'""", flag)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The job options given on the command line, as ``Task`` fields (for --from-file: the lines' defaults)."""
    given: dict[str, Any] = {
        "delay": args.delay,
        "at": parse_time(args.at, "--at") if args.at is not None else None,
        "depends_on": args.depends_on,
        "meta": _json_object(args.meta, "--meta"),
        "result_ttl": args.result_ttl,
    }
    options = {name: value for name, value in given.items() if value is not None}
    if args.unique:
        options["unique"] = True
    return options


def _cancel(args: argparse.Namespace, settings: Settings) -> int:
    producer = Producer.from_env(settings)
    jobs = [producer.job(job_id) for job_id in args.job_ids]
    missing = [job_id for job_id, job in zip(args.job_ids, jobs, strict=True) if job is None]
    if missing:
        raise TaskProcessorError(
            f"no such job in Redis: {', '.join(missing)} (a mistyped id, or it expired): nothing was canceled"
        )
    done = [job.id for job in jobs if job is not None and job.get_status(refresh=False) == "canceled"]
    if done:
        raise TaskProcessorError(f"already canceled: {', '.join(done)}: nothing was canceled")
    for job_id in args.job_ids:
        producer.cancel(job_id)
        print(job_id)
    return 0


def _enqueue_file(stream: TextIO, producer: Producer, defaults: dict[str, Any]) -> int:
    with stream:
        tasks = read_tasks(stream, producer, defaults)
    bar = ProgressBar(len(tasks), sys.stderr)
    done = 0

    def printed(ids: list[str]) -> None:
        nonlocal done
        bar.message("\n".join(ids), sys.stdout)
        done += len(ids)
        bar.update(done, "enqueued")

    if tasks:
        enqueue_in_batches(producer, tasks, printed)
    bar.close()
    return 0


def _wait(args: argparse.Namespace, settings: Settings) -> int:
    producer = Producer.from_env(settings)
    fetched = Job.fetch_many(args.job_ids, connection=producer.connection, serializer=producer.queue().serializer)
    missing = [job_id for job_id, job in zip(args.job_ids, fetched, strict=True) if job is None]
    if missing:
        raise ConfigError(f"no such job in Redis: {', '.join(missing)} (a mistyped id, or its result expired)")
    jobs = [job for job in fetched if job is not None]
    bar = ProgressBar(len(jobs), sys.stderr)
    try:
        results = producer.wait(jobs, args.timeout, on_progress=lambda done, _: bar.update(done, "finished"))
    finally:
        bar.close()
    for result in results:
        print(json.dumps(result, default=repr))
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    producer = Producer.from_env(settings)

    def render() -> str:
        facts = collect(producer, settings.deployment)
        # Watched off a terminal, JSON goes one document per line (JSON lines).
        compact = args.watch is not None and not sys.stdout.isatty()
        return render_json(facts, compact) if args.json else render_table(facts)

    if args.watch is None:
        print(render())
        return 0
    if args.watch <= 0:
        raise ConfigError(f"--watch {args.watch:g}: give a number of seconds > 0")
    return watch(render, args.watch, sys.stdout, gap=not args.json)


def _requeue(args: argparse.Namespace, settings: Settings) -> int:
    # --failed names the source explicitly, so a later --scheduled cannot change what a bare command does.
    if not args.failed:
        raise ConfigError("requeue needs a source: pass --failed to requeue jobs from the failed registry")
    if args.all == bool(args.job_ids):
        raise ConfigError("requeue --failed takes either --all or JOB_IDs, not both and not neither")
    queue = validate_queue_name(args.queue, "--queue") if args.queue is not None else settings.queues[0]
    connection = Producer.from_env(settings).connection
    requeued = requeue_failed(connection, queue, None if args.all else args.job_ids, settings.serializer)
    for job_id in requeued:
        print(job_id)
    print(f"requeued {len(requeued)} jobs from the failed registry of {queue!r}", file=sys.stderr)
    return 0


def _pools(raw: list[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    pools = tuple(parse_pool(option) for option in raw)
    names = [name for name, _ in pools]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"--pool {name} is given twice: name each pool once")
    return pools


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        # Logs go to stderr: stdout carries what the command prints (a job id, a table, JSON).
        configure_logging(
            settings.log_level if args.command != "run-local" else "WARNING", settings.log_format, sys.stderr
        )
        try:
            if args.command == "run-local":
                options = RunLocalOptions(
                    jobs=args.jobs,
                    minimum=args.min,
                    maximum=args.max,
                    scale_down_delay=args.scale_down_delay,
                    keep_running=args.keep_running,
                    private_redis=args.private_redis,
                    seed=args.seed,
                    pools=_pools(args.pool),
                )
                serve_metrics(settings.metrics_port, settings.metrics_bind, metrics.REGISTRY)
                return run_local(settings, options, sys.stdout)
            if args.command == "enqueue":
                return _enqueue(args, settings)
            if args.command == "autoscale":
                # Only this command needs the Kubernetes client (the `kube` extra).
                from producer.commands.autoscale import autoscale

                serve_metrics(settings.metrics_port, settings.metrics_bind, metrics.REGISTRY)
                return autoscale(settings, args.kubeconfig)
            if args.command == "requeue":
                return _requeue(args, settings)
            if args.command == "cancel":
                return _cancel(args, settings)
            if args.command == "wait":
                return _wait(args, settings)
            if args.command == "dashboard":
                return run_dashboard(settings, args.bind, args.port, args.read_only)
            return _status(args, settings)
        except redis.RedisError as exc:
            raise describe_failure(settings.redis_url, exc) from exc
    except TaskProcessorError as exc:
        return exit_with("task-producer", exc)
    except KeyboardInterrupt:
        print("task-producer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
