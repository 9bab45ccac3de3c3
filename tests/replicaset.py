"""Which Pods a ReplicaSet deletes first on scale-in, as plain functions over Pod dicts (API JSON shape).

The ReplicaSet controller sorts its active Pods with ``ActivePodsWithRanks.Less`` (kubernetes
pkg/controller/controller_utils.go), ranked by ``getPodsRankedByRelatedPodsOnSameNode`` and cut by
``getPodsToDelete`` (pkg/controller/replicaset/replica_set.go). Applying each rule in turn until one tells the
two Pods apart, the Pod deleted first is the one:

1. not assigned to a node (``spec.nodeName`` empty), when only one of the two is;
2. in the earlier phase: Pending < Unknown < Running (any other phase, or none, counts as Pending);
3. not ready (no ``Ready`` condition with status ``"True"``), when only one of the two is;
4. with the lower ``controller.kubernetes.io/pod-deletion-cost`` (an int32; missing or invalid counts as 0);
5. with the higher rank: more active related Pods on its node ("doubled up" goes first);
6. ready for a shorter time: both ready, the later ``Ready`` ``lastTransitionTime`` (none at all goes first);
7. with the higher restart count of any one container (``status.containerStatuses[].restartCount``);
8. created more recently (a missing ``creationTimestamp`` goes first).

Rules 4 and 5 are in the order of the current upstream code: the deletion cost (added in 1.21) is checked
before the node rank, so a lower cost wins over being doubled up.

Simplified: with the ``LogarithmicScaleDown`` feature gate (on by default since 1.22) upstream compares the
times of rules 6 and 8 on a log2 scale of their age and orders Pods of the same scale by UID, a deliberate
randomness; here they are compared exactly (the gate-off behaviour), so the order is reproducible. Pods that no
rule tells apart keep their given order (Go's ``sort.Sort`` promises none).
"""

from __future__ import annotations

import datetime
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from producer.scaling.kube.deployment import DELETION_COST

PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}
"""Rule 2; a phase missing here (Succeeded, Failed, none) is 0, as for a Go map lookup."""

INT32 = range(-(2**31), 2**31)

_COST = re.compile(r"-[0-9]+|0|[1-9][0-9]*")
"""What the deletion-cost parser accepts: no "+", no leading zeros (but "-007" parses), ASCII digits only."""


def parse_time(value: str | None) -> datetime.datetime | None:
    """An RFC 3339 time as the API writes it (``...Z``, any fraction); None for a missing or empty one."""
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def deletion_cost(pod: dict[str, Any]) -> int:
    """The Pod's ``pod-deletion-cost`` annotation; 0 when missing or not a valid int32 (as upstream, no error)."""
    value = (pod.get("metadata", {}).get("annotations") or {}).get(DELETION_COST)
    if value is None or not _COST.fullmatch(value) or int(value) not in INT32:
        return 0
    return int(value)


def is_ready(pod: dict[str, Any]) -> bool:
    """``podutil.IsPodReady``: the Pod's first ``Ready`` condition has status ``"True"``."""
    conditions = pod.get("status", {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    return ready is not None and ready.get("status") == "True"


def ready_since(pod: dict[str, Any]) -> datetime.datetime | None:
    """When a ready Pod became ready (its ``Ready`` condition's ``lastTransitionTime``); None when not ready."""
    if not is_ready(pod):
        return None
    conditions = pod["status"]["conditions"]
    return parse_time(next(c for c in conditions if c.get("type") == "Ready").get("lastTransitionTime"))


def max_restarts(pod: dict[str, Any]) -> int:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return max((int(s.get("restartCount", 0)) for s in statuses), default=0)


def is_active(pod: dict[str, Any]) -> bool:
    """``controller.IsPodActive``: neither terminating nor finished."""
    phase = pod.get("status", {}).get("phase")
    return "deletionTimestamp" not in pod.get("metadata", {}) and phase not in ("Succeeded", "Failed")


def node_name(pod: dict[str, Any]) -> str:
    return str(pod.get("spec", {}).get("nodeName") or "")


def node_ranks(pods: Sequence[dict[str, Any]], related: Sequence[dict[str, Any]]) -> list[int]:
    """Each Pod's rank: how many active Pods of ``related`` (the Deployment's, every ReplicaSet's) share its node.

    The emulated kubelet runs every Pod on one node, so there all Pods have the same rank and rule 5 never
    decides; it is modelled anyway so that the ranking stays the controller's."""
    on_node = Counter(node_name(pod) for pod in related if is_active(pod))
    return [on_node[node_name(pod)] for pod in pods]


def _newest_first(when: datetime.datetime | None) -> tuple[int, float]:
    """Sort key of ``afterOrZero``: a missing time first, then the later time first."""
    return (0, 0.0) if when is None else (1, -when.timestamp())


def scale_in_order(
    pods: Sequence[dict[str, Any]], related: Sequence[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """``pods`` in the order the ReplicaSet deletes them on scale-in: the first ones go first (see the module).

    ``related`` is what the node rank counts (rule 5); by default ``pods`` themselves."""
    ranks = node_ranks(pods, pods if related is None else related)

    def key(index: int) -> tuple[Any, ...]:
        pod = pods[index]
        return (
            node_name(pod) != "",  # 1. unassigned first
            PHASE_ORDER.get(pod.get("status", {}).get("phase", ""), 0),  # 2. Pending, Unknown, Running
            is_ready(pod),  # 3. not ready first
            deletion_cost(pod),  # 4. lower cost first
            -ranks[index],  # 5. more colocated Pods first
            _newest_first(ready_since(pod)),  # 6. ready for less time first (no ready time: not ready, or first)
            -max_restarts(pod),  # 7. more restarts first
            _newest_first(parse_time(pod.get("metadata", {}).get("creationTimestamp"))),  # 8. newer first
        )

    return [pods[i] for i in sorted(range(len(pods)), key=key)]
