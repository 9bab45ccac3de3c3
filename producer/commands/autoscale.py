"""``task-producer autoscale``: the control loop against the worker Deployment, until SIGTERM."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from uuid import uuid4

from producer.scaling.autoscaler import Autoscaler, bounds_from
from producer.scaling.kube import KubeClient, KubeDeployment
from producer.scaling.leader import LeaderElector
from task_processor.connection import connect
from task_processor.logs import get_logger
from task_processor.settings import Settings

log = get_logger("task_processor.autoscaler")


def build(settings: Settings, kube: KubeClient) -> Autoscaler:
    """The autoscaler for ``settings``' Deployment, leading only while it holds ``<deployment>-autoscaler``."""
    identity = f"{settings.host}-{uuid4().hex[:6]}"
    kube.api_client.user_agent = f"task-producer/{identity}"  # which replica wrote, in the API's audit log
    return Autoscaler(
        connect(settings.redis_url),
        settings.queues,
        KubeDeployment(kube, settings.deployment),
        bounds_from(settings),
        interval=settings.autoscale_interval,
        serializer=settings.serializer,
        max_abandons=settings.max_abandons,
        manual_hold=settings.manual_hold,
        elector=LeaderElector(kube, f"{settings.deployment}-autoscaler", identity),
    )


def autoscale(settings: Settings, kubeconfig: str | None = None) -> int:
    kube = KubeClient.connect(settings.namespace, kubeconfig)
    autoscaler = build(settings, kube)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info(
        "autoscaler starting",
        deployment=f"{kube.namespace}/{settings.deployment}",
        queues=list(settings.queues),
        min=settings.autoscale_min,
        max=settings.autoscale_max,
        jobs_per_worker=settings.jobs_per_worker,
        interval=settings.autoscale_interval,
        scale_down_delay=settings.scale_down_delay,
        manual_hold=settings.manual_hold,
        target_wait=settings.target_wait,
    )
    autoscaler.run(stop)
    log.info("autoscaler stopped")
    return 0
