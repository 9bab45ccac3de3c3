"""Prometheus metrics of the autoscaler: what it saw, what it chose, and what failed.

Served on METRICS_PORT by ``task-producer autoscale`` and ``run-local`` (off by default). The gauges are
set on every pass of the loop; a follower replica keeps its last values and says so through
``task_processor_autoscaler_state``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

import redis
from prometheus_client import Counter, Gauge

from producer.scaling.rates import Rates
from producer.scaling.report import LoopState
from task_processor.metrics import new_registry
from task_processor.observe import QueueCounts

REGISTRY = new_registry()
QUEUE_DEPTH = Gauge("task_processor_queue_depth", "Jobs waiting in the queue.", ["queue"], registry=REGISTRY)
INFLIGHT = Gauge(
    "task_processor_inflight_jobs", "Jobs running now (live started entries).", ["queue"], registry=REGISTRY
)
OLDEST_WAIT = Gauge(
    "task_processor_queue_oldest_wait_seconds",
    "Seconds the job at the head of the queue has waited since it was enqueued (0 when the queue is empty).",
    ["queue"],
    registry=REGISTRY,
)
ARRIVAL_RATE = Gauge(
    "task_processor_queue_arrival_rate",
    "Jobs per second entering the queue, smoothed (half-life 30 s).",
    ["queue"],
    registry=REGISTRY,
)
SERVICE_RATE = Gauge(
    "task_processor_service_rate",
    "Jobs per second one busy worker of the pool completes, smoothed (half-life 30 s); NaN until a job has ended.",
    ["pool"],
    registry=REGISTRY,
)
REPLICAS_DESIRED = Gauge(
    "task_processor_replicas_desired", "Workers the policy asks for, per pool.", ["pool"], registry=REGISTRY
)
REPLICAS_CURRENT = Gauge(
    "task_processor_replicas_current", "Workers the pool's Deployment has now.", ["pool"], registry=REGISTRY
)
STATE = Gauge(
    "task_processor_autoscaler_state",
    "1 for each pool's current state (active, holding, paused, follower), 0 for the others.",
    ["pool", "state"],
    registry=REGISTRY,
)
SCALE_DECISIONS = Counter(
    "task_processor_scale_decisions",
    "Replica changes written to a pool's Deployment, by direction and the policy's reason.",
    ["pool", "direction", "reason"],
    registry=REGISTRY,
)
API_ERRORS = Counter(
    "task_processor_api_errors",
    "Failed loop passes, by the API that failed (kubernetes, redis, other) and the error's type.",
    ["api", "error"],
    registry=REGISTRY,
)


def observed(
    pool: str, counts: Mapping[str, QueueCounts], current: int, waits: Mapping[str, float], rates: Rates
) -> None:
    for queue, c in counts.items():
        QUEUE_DEPTH.labels(queue).set(c.queued)
        INFLIGHT.labels(queue).set(c.started)
    for queue, wait in waits.items():
        OLDEST_WAIT.labels(queue).set(wait)
    for queue, rate in rates.arrival.items():
        ARRIVAL_RATE.labels(queue).set(rate)
    SERVICE_RATE.labels(pool).set(math.nan if rates.service is None else rates.service)  # unknown is not zero
    REPLICAS_CURRENT.labels(pool).set(current)


def desired(pool: str, replicas: int) -> None:
    """What the policy asks for, set before the write: a refused write leaves desired != current in view."""
    REPLICAS_DESIRED.labels(pool).set(replicas)


def state(pool: str, mode: str) -> None:
    for name in LoopState:
        STATE.labels(pool, str(name)).set(1 if name == mode else 0)


def scaled(pool: str, previous: int, desired: int, reason: str) -> None:
    SCALE_DECISIONS.labels(pool, "up" if desired > previous else "down", reason).inc()


def forget(pool: str) -> None:
    """A pool that is gone: its gauges go too, rather than showing its last values for ever."""
    for gauge in (SERVICE_RATE, REPLICAS_DESIRED, REPLICAS_CURRENT):
        with contextlib.suppress(KeyError):  # never set: nothing to remove
            gauge.remove(pool)
    for name in LoopState:
        with contextlib.suppress(KeyError):
            STATE.remove(pool, str(name))


def failed(exc: Exception) -> None:
    # By module, not by import: this module must not pull in the Kubernetes client (only kube/client.py does).
    if type(exc).__module__ == "producer.scaling.kube.client":
        api = "kubernetes"
    elif isinstance(exc, redis.RedisError):
        api = "redis"
    else:
        api = "other"
    API_ERRORS.labels(api, type(exc).__name__).inc()
