"""The `autoscaling/v1` Scale subresource: a view of a Deployment's replicas that only moves `spec.replicas`."""

from __future__ import annotations

from typing import Any

from tests.kubeapi import patching
from tests.kubeapi.resources import ResourceType
from tests.kubeapi.status import FieldError, invalid
from tests.kubeapi.store import ObjectStore, check_version

_SCALE_METADATA = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")


def scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The Scale of an object: its metadata's identity and version, its spec and status replicas."""
    meta, spec = obj["metadata"], obj.get("spec", {})
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in _SCALE_METADATA if k in meta},
        "spec": {"replicas": spec.get("replicas", 0)},
        "status": {
            "replicas": obj.get("status", {}).get("replicas", 0),
            "selector": patching.selector_string(spec.get("selector", {}).get("matchLabels")),
        },
    }


def write_scale(
    store: ObjectStore,
    rt: ResourceType,
    ns: str | None,
    name: str,
    method: str,
    content_type: str,
    body: Any,
    *,
    dry_run: bool = False,
) -> dict[str, Any]:
    """PUT or PATCH /scale: only `spec.replicas` moves; a stale resourceVersion answers 409."""
    current = store.get(rt, ns, name)
    scale = store.changed(scale_of(current), method, content_type, body)
    check_version(rt, current, scale.get("metadata", {}).get("resourceVersion"))
    replicas = scale.get("spec", {}).get("replicas", 0)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        problem = FieldError("spec.replicas", replicas, "must be greater than or equal to 0")
        raise invalid("autoscaling", "Scale", name, [problem])
    if dry_run:
        current.setdefault("spec", {})["replicas"] = replicas
        return scale_of(current)
    return scale_of(store.replace_spec_replicas(rt, current, replicas))
