"""The four autoscalers under test, each wired to a simulated Cluster.

``ours`` runs the project's own policy (``producer.scaling.policy.decide``) and rate meter, imported, fed
the observation the real loop (``producer/scaling/autoscaler.py``) builds. The baselines are modelled from
their documented defaults; nothing in them is tuned to this workload.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from producer.scaling.policy import Bounds, Observation, PolicyState, decide
from producer.scaling.rates import RateMeter

from .sim import Cluster

QUEUE = "default"


class Ours:
    """``task-producer autoscale``: every ``interval`` seconds, observe, ``decide``, write when it changed.

    Like the real loop it sets pod-deletion-cost (-1000 idle, 1000 busy) before a scale-in, so the
    ReplicaSet removes idle Pods before busy ones; the policy itself never asks for fewer than the busy ones.
    Spare starts (AUTOSCALE_START_SPARES) are released through the same ReplicaSet choice: Pods not yet
    ready go first.
    """

    def __init__(self, cluster: Cluster, bounds: Bounds, interval: float) -> None:
        self.cluster = cluster
        self.bounds = bounds
        self.state = PolicyState()
        self.meter = RateMeter()
        cluster.prefer_idle_victims = True
        cluster.every(interval, self.step)

    def step(self, now: float) -> None:
        c = self.cluster
        rates = self.meter.update(now, {QUEUE: c.arrived}, c.worker_tallies())
        running = c.busy_workers()
        observation = Observation(
            queued=len(c.queue),
            in_flight=running,
            busy_workers=running,
            current=c.replicas,
            oldest_wait=c.oldest_wait(),
            arrival_rate=rates.total_arrival,
            service_rate=rates.service,
            ready=len(c.worker_tallies()),  # registered workers: ready Pods (terminating ones too)
        )
        decision, self.state = decide(observation, self.bounds, self.state, now)
        c.set_replicas(decision.desired)


@dataclass(frozen=True)
class HpaSpec:
    """The HPA's defaults for an External metric with an AverageValue target.

    - sync period 15 s (kube-controller-manager --horizontal-pod-autoscaler-sync-period) and tolerance 0.1
      (--horizontal-pod-autoscaler-tolerance):
      https://kubernetes.io/docs/reference/command-line-tools-reference/kube-controller-manager/
    - desired = ceil(metric / target) unless |metric / (target * current) - 1| <= tolerance (the
      algorithm for AverageValue targets):
      https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#algorithm-details
    - default behavior: scale-up without stabilization, at most max(+4 Pods, +100 %) per 15 s (selectPolicy
      Max); scale-down to the highest recommendation of the last 300 s, up to 100 % per 15 s:
      https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#default-behavior
    """

    target: float
    minimum: int
    maximum: int
    sync_period: float = 15.0
    tolerance: float = 0.1
    down_window: float = 300.0
    up_pods: int = 4
    up_percent: int = 100
    up_period: float = 15.0


class Hpa:
    """The replica computation of one HPA (pkg/controller/podautoscaler/horizontal.go, default behavior)."""

    def __init__(self, spec: HpaSpec) -> None:
        self.spec = spec
        self.recommendations: deque[tuple[float, int]] = deque()
        self.ups: deque[tuple[float, int]] = deque()

    def desired(self, now: float, metric: float, current: int) -> int | None:
        """The replicas to set, or None while the target is at zero (the HPA disables itself there)."""
        s = self.spec
        if current == 0:
            return None
        ratio = metric / (s.target * current)
        proposed = current if abs(ratio - 1.0) <= s.tolerance else math.ceil(metric / s.target)
        recs = self.recommendations
        recs.append((now, proposed))
        while recs and recs[0][0] <= now - s.down_window:
            recs.popleft()
        # Stabilization: up at once (window 0), down only to the highest recommendation in the window.
        wanted = min(max(current, proposed), max(value for _, value in recs))
        while self.ups and self.ups[0][0] <= now - s.up_period:
            self.ups.popleft()
        if wanted > current:
            start = current - sum(added for _, added in self.ups)  # replicas at the start of the period
            limit = max(start + s.up_pods, math.ceil(start * (1 + s.up_percent / 100)))
            wanted = min(wanted, limit)
        wanted = min(max(wanted, s.minimum), s.maximum)
        if wanted > current:
            self.ups.append((now, wanted - current))
        return wanted


@dataclass(frozen=True)
class KedaSpec:
    """KEDA's ScaledObject defaults and its Redis Lists scaler's.

    - pollingInterval 30 s, cooldownPeriod 300 s (only for going back to zero), minReplicaCount 0; the HPA
      it creates has minReplicas max(minReplicaCount, 1) and the HPA's default behavior:
      https://keda.sh/docs/2.14/reference/scaledobject-spec/ and
      https://keda.sh/docs/2.14/concepts/scaling-deployments/
    - redis trigger: metric = LLEN of the list (queued jobs only: running ones are invisible to it),
      listLength 5 (AverageValue target per Pod), activationListLength 0:
      https://keda.sh/docs/2.14/scalers/redis-lists/
    """

    list_length: float = 5.0
    activation_list_length: float = 0.0
    polling_interval: float = 30.0
    cooldown_period: float = 300.0


class Keda:
    """KEDA's operator loop (0 <-> 1 by activation) plus the HPA it drives (1 <-> N on the list length).

    The HPA reads the metric from KEDA's metrics server, which asks Redis on each request: no extra delay.
    """

    def __init__(self, cluster: Cluster, maximum: int, spec: KedaSpec = KedaSpec()) -> None:
        self.cluster = cluster
        self.spec = spec
        self.hpa = Hpa(HpaSpec(target=spec.list_length, minimum=1, maximum=maximum))
        self.last_active = -math.inf
        cluster.every(spec.polling_interval, self.poll)
        cluster.every(self.hpa.spec.sync_period, self.sync)

    def poll(self, now: float) -> None:
        c, s = self.cluster, self.spec
        if len(c.queue) > s.activation_list_length:
            self.last_active = now
            if c.replicas == 0:
                c.set_replicas(1)  # scale from zero to max(minReplicaCount, 1)
        elif c.replicas > 0 and now - self.last_active >= s.cooldown_period:
            c.set_replicas(0)

    def sync(self, now: float) -> None:
        c = self.cluster
        wanted = self.hpa.desired(now, float(len(c.queue)), c.replicas)
        if wanted is not None:
            c.set_replicas(wanted)


@dataclass(frozen=True)
class PromSpec:
    """A plain HPA on an External metric served by prometheus-adapter: the queue length, per Pod.

    Prometheus scrapes the exporter every 30 s (kube-prometheus-stack's default scrape interval; Prometheus'
    own default is 1 m: https://prometheus.io/docs/prometheus/latest/configuration/configuration/) and the
    adapter plus rule evaluation add some 15 s, so the HPA acts on a value 15-45 s old (about 30 s). Without
    the alpha HPAScaleToZero gate minReplicas is at least 1:
    https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/horizontal-pod-autoscaler-v2/
    The target (5 queued jobs per Pod) is KEDA's listLength default, so both baselines aim at the same ratio.
    """

    target: float = 5.0
    minimum: int = 1
    scrape_interval: float = 30.0
    adapter_lag: float = 15.0


class PromHpa:
    def __init__(self, cluster: Cluster, maximum: int, spec: PromSpec = PromSpec()) -> None:
        self.cluster = cluster
        self.spec = spec
        self.hpa = Hpa(HpaSpec(target=spec.target, minimum=spec.minimum, maximum=maximum))
        self.scrapes: deque[tuple[float, int]] = deque()
        cluster.set_replicas(spec.minimum)
        cluster.every(spec.scrape_interval, self.scrape)
        cluster.every(self.hpa.spec.sync_period, self.sync)

    def scrape(self, now: float) -> None:
        self.scrapes.append((now, len(self.cluster.queue)))

    def sync(self, now: float) -> None:
        visible = now - self.spec.adapter_lag
        while len(self.scrapes) > 1 and self.scrapes[1][0] <= visible:
            self.scrapes.popleft()
        if not self.scrapes or self.scrapes[0][0] > visible:
            return  # no value yet: the HPA reports the metric unavailable and leaves the replicas alone
        wanted = self.hpa.desired(now, float(self.scrapes[0][1]), self.cluster.replicas)
        if wanted is not None:
            self.cluster.set_replicas(wanted)
