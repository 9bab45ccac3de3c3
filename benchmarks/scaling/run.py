"""One (trace, policy) simulation, and the targets checked over all of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from producer.scaling.policy import Bounds
from task_processor.settings import Settings

from .controllers import Keda, Ours, PromHpa
from .sim import Cluster, Sample, SimConfig
from .traces import Trace

POLICIES = ("ours", "ours-target-wait", "ours-count-only", "keda", "hpa")
TARGET_WAIT = 60.0
"""The `ours-target-wait` row's AUTOSCALE_TARGET_WAIT: a looser target than the default 30 s, and cheaper."""
DRAIN_LIMIT = 6 * 3600.0
"""Seconds past the horizon a run may take to finish its jobs before the rest count as not done."""
MAXIMUM = 100
"""Every policy's cap: KEDA's default maxReplicaCount (https://keda.sh/docs/2.14/reference/scaledobject-spec/)."""


@dataclass(frozen=True)
class Setup:
    maximum: int = MAXIMUM
    interval: float = Settings().autoscale_interval  # AUTOSCALE_INTERVAL's default
    sim: SimConfig = field(default_factory=SimConfig)

    def bounds(self, policy: str) -> Bounds:
        """The production defaults (task_processor.settings), but for the common cap and the row's target."""
        d = Settings()
        target_wait = {"ours": d.target_wait, "ours-target-wait": TARGET_WAIT, "ours-count-only": None}[policy]
        return Bounds(
            minimum=d.autoscale_min,
            maximum=self.maximum,
            jobs_per_worker=d.jobs_per_worker,
            scale_down_delay=d.scale_down_delay,
            target_wait=target_wait,
            start_spares=d.start_spares,
        )


@dataclass
class Outcome:
    metrics: dict[str, Any]
    samples: list[Sample]


def percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) on a sorted list."""
    if not ordered:
        return 0.0
    at = (len(ordered) - 1) * q
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def simulate(trace: Trace, policy: str, setup: Setup) -> Outcome:
    cluster = Cluster(trace.jobs, trace.horizon, setup.sim, sample_every=max(1.0, trace.horizon / 1500))
    extra: dict[str, Any] = {}
    if policy.startswith("ours"):
        bounds = setup.bounds(policy)
        Ours(cluster, bounds, setup.interval)
        extra["target_wait_s"] = bounds.target_wait
    elif policy == "keda":
        Keda(cluster, setup.maximum)
    elif policy == "hpa":
        PromHpa(cluster, setup.maximum)
        cluster.scale_changes = 0  # the Deployment is created with minReplicas: not a change
    else:
        raise ValueError(f"unknown policy {policy!r}")
    cluster.run(limit=trace.horizon + DRAIN_LIMIT)
    lost = cluster.jobs_lost()
    assert lost == 0, f"{trace.name}/{policy}: {lost} jobs vanished"  # an invariant of the simulation
    waits = sorted(cluster.waits)
    metrics: dict[str, Any] = {
        "p50_wait_s": round(percentile(waits, 0.50), 3),
        "p95_wait_s": round(percentile(waits, 0.95), 3),
        "max_wait_s": round(waits[-1] if waits else 0.0, 3),
        "pod_seconds": round(cluster.pod_seconds, 1),
        "scale_changes": cluster.scale_changes,
        "busy_pods_killed": cluster.busy_pods_killed,
        "jobs_lost": lost,
        "jobs_requeued": cluster.jobs_requeued,
        "jobs": len(trace.jobs),
        "jobs_not_done": len(trace.jobs) - cluster.completed,
        "pods_created": cluster.created,
        "peak_replicas": max((s.replicas for s in cluster.samples), default=0),
        "finished_at_s": round(cluster.now, 1),
        **extra,
    }
    return Outcome(metrics, cluster.samples)


def check_targets(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, bool]]:
    """Per trace: ours p95 <= half KEDA's (or < 1 s) with no more pod-seconds; no busy Pod removed by ours;
    no job lost; ours-target-wait p95 under its target on diurnal and sawtooth."""
    targets: dict[str, dict[str, bool]] = {}
    for name, by_policy in results.items():
        ours, keda = by_policy["ours"], by_policy["keda"]
        checks = {
            "ours_p95_wait_le_half_keda_or_lt_1s": ours["p95_wait_s"] <= keda["p95_wait_s"] / 2
            or ours["p95_wait_s"] < 1.0,
            "ours_pod_seconds_le_keda": ours["pod_seconds"] <= keda["pod_seconds"],
            "ours_no_busy_pods_removed": all(by_policy[p]["busy_pods_killed"] == 0 for p in POLICIES[:3]),
            "no_jobs_lost": all(m["jobs_lost"] == 0 for m in by_policy.values()),
        }
        if name in ("diurnal", "sawtooth"):
            checks["target_wait_p95_lt_target"] = by_policy["ours-target-wait"]["p95_wait_s"] < TARGET_WAIT
        targets[name] = checks
    return targets
