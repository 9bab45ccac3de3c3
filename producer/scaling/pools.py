"""Worker pools: which Deployments the autoscaler sizes, from which queues, within which bounds.

A pool is a Deployment labelled ``task-processor.io/pool=<name>``; its annotations say which queues its workers
serve and, optionally, its own bounds (a missing one takes the ``AUTOSCALE_*`` setting). Ops add, change, pause
or drop a pool with ``kubectl`` alone. Everything here is pure: the loop that lists the Deployments is
``producer/scaling/fleet.py``.

A queue listed by several pools is shared: its queued jobs are split evenly between those pools, the remainder
going one job each to the pools first in name order, so the pools together ask for the workers one pool would,
and a single queued job wakes exactly one pool.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from producer.scaling.policy import Bounds
from task_processor.errors import ConfigError
from task_processor.observe import WorkerInfo
from task_processor.settings import Settings, parse_number, parse_queues, parse_target_wait

PREFIX = "task-processor.io/"
POOL_LABEL = f"{PREFIX}pool"
"""The label that makes a Deployment a pool; its value is the pool's name."""

QUEUES = f"{PREFIX}queues"
MIN_REPLICAS = f"{PREFIX}min-replicas"
MAX_REPLICAS = f"{PREFIX}max-replicas"
JOBS_PER_WORKER = f"{PREFIX}jobs-per-worker"
SCALE_DOWN_DELAY = f"{PREFIX}scale-down-delay"
TARGET_WAIT = f"{PREFIX}target-wait"


class Described(Protocol):
    """What a pool is read from: a Deployment's name, namespace, labels and annotations (``kube.client``'s
    DeploymentInfo, or anything shaped like it: this module stays free of any cluster client)."""

    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def annotations(self) -> Mapping[str, str]: ...


class PoolError(ConfigError):
    """A pool's annotation cannot be used: the message names the Deployment and the annotation."""


@dataclass(frozen=True)
class Pool:
    name: str
    deployment: str
    queues: tuple[str, ...]
    bounds: Bounds
    labelled: bool = True
    """False for the one pool of WORKER_DEPLOYMENT + TASK_QUEUES: its workers are those of its queues."""


def pool_from(deployment: Described, defaults: Settings) -> Pool:
    """The pool a labelled Deployment describes; PoolError naming the Deployment and the annotation if it cannot."""
    notes, where = deployment.annotations, f"Deployment {deployment.namespace}/{deployment.name}"

    def annotation(key: str, parse: type[int] | type[float], minimum: float, default: float) -> float:
        raw = notes.get(key, "").strip()
        if not raw:
            return default
        try:
            return parse_number(key, raw, parse, minimum)
        except ConfigError as exc:
            raise PoolError(f"{where}: {exc}") from None

    raw_queues = notes.get(QUEUES, "")
    if not raw_queues.strip():
        raise PoolError(f"{where}: annotation {QUEUES} is missing: set it to the pool's queues, e.g. 'high,default'")
    try:
        queues = parse_queues(raw_queues, QUEUES)
        raw_wait = notes.get(TARGET_WAIT, "").strip()
        target_wait = parse_target_wait(TARGET_WAIT, raw_wait) if raw_wait else defaults.target_wait
    except ConfigError as exc:
        raise PoolError(f"{where}: {exc}") from None
    minimum = int(annotation(MIN_REPLICAS, int, 0, defaults.autoscale_min))
    maximum = int(annotation(MAX_REPLICAS, int, 1, defaults.autoscale_max))
    if maximum < minimum:
        raise PoolError(
            f"{where}: {MAX_REPLICAS} ({maximum}) is below {MIN_REPLICAS} ({minimum}): raise the one or lower the other"
        )
    bounds = Bounds(
        minimum=minimum,
        maximum=maximum,
        jobs_per_worker=int(annotation(JOBS_PER_WORKER, int, 1, defaults.jobs_per_worker)),
        scale_down_delay=float(annotation(SCALE_DOWN_DELAY, float, 0, defaults.scale_down_delay)),
        target_wait=target_wait,
        start_spares=defaults.start_spares,
    )
    return Pool(deployment.labels.get(POOL_LABEL, ""), deployment.name, queues, bounds)


def shares(pools: Iterable[Pool]) -> dict[str, dict[str, tuple[int, int]]]:
    """Per pool name, per queue it lists: (its rank among the queue's pools in name order, how many list it)."""
    serving: dict[str, list[str]] = {}
    for pool in sorted(pools, key=lambda p: p.name):
        for queue in pool.queues:
            serving.setdefault(queue, []).append(pool.name)
    result: dict[str, dict[str, tuple[int, int]]] = {}
    for queue, names in serving.items():
        for rank, name in enumerate(names):
            result.setdefault(name, {})[queue] = (rank, len(names))
    return result


def share(queued: int, rank: int, among: int) -> int:
    """The part of a shared queue's ``queued`` jobs that counts for the pool of ``rank`` among ``among`` pools."""
    queued = max(0, queued)
    return queued // among + (1 if rank < queued % among else 0)


def serves(worker: WorkerInfo, pool: str, queues: Iterable[str]) -> bool:
    """Whether ``worker`` is one of the pool's: it names the pool (WORKER_POOL), or it names none and serves one of
    the pool's queues (started before pools, or without WORKER_POOL: counting a busy worker for two pools keeps a
    Pod, missing it could remove one)."""
    return worker.pool == pool or (worker.pool is None and not set(queues).isdisjoint(worker.queues))
