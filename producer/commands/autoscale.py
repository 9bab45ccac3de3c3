"""``task-producer autoscale``: the control loop against the worker Deployment, until SIGTERM."""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from types import FrameType
from uuid import uuid4

from producer.scaling import cron
from producer.scaling.fleet import Fleet
from producer.scaling.kube.client import KubeClient
from producer.scaling.kube.leader import LeaderElector
from producer.scaling.kube.pools import KubePools
from task_processor.connection import connect
from task_processor.logs import get_logger
from task_processor.settings import Settings

log = get_logger("task_processor.autoscaler")


def build(settings: Settings, kube: KubeClient, periodic: Sequence[cron.CronEntry] = ()) -> Fleet:
    """Every worker pool of the namespace (or ``settings``' one Deployment), sized only while this replica holds
    ``<deployment>-autoscaler``, and the ``periodic`` tasks (TASK_CRON) enqueued by the same leader."""
    identity = f"{settings.host}-{uuid4().hex[:6]}"
    kube.api_client.user_agent = f"task-producer/{identity}"  # which replica wrote, in the API's audit log
    elector = LeaderElector(kube, f"{settings.deployment}-autoscaler", identity)
    connection = connect(settings.redis_url)
    schedule = cron.Cron(connection, periodic, settings) if periodic else None
    return Fleet(connection, KubePools(kube, settings, identity), settings, elector, cron=schedule)


def autoscale(settings: Settings, kubeconfig: str | None = None) -> int:
    periodic = cron.load(settings)  # a bad TASK_CRON file stops here (exit 2), before Redis or the API is touched
    kube = KubeClient.connect(settings.namespace, kubeconfig)
    autoscaler = build(settings, kube, periodic)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info(
        "autoscaler starting",
        namespace=kube.namespace,
        deployment=settings.deployment,
        queues=list(settings.queues),
        min=settings.autoscale_min,
        max=settings.autoscale_max,
        jobs_per_worker=settings.jobs_per_worker,
        interval=settings.autoscale_interval,
        scale_down_delay=settings.scale_down_delay,
        manual_hold=settings.manual_hold,
        target_wait=settings.target_wait,
        periodic_tasks=len(periodic),
    )
    autoscaler.run(stop)
    log.info("autoscaler stopped")
    return 0
