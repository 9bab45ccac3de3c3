"""Server-side `meta.k8s.io/v1` Tables, so that a plain `kubectl get deploy` prints the usual columns."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def _age(obj: dict[str, Any]) -> str:
    created = obj.get("metadata", {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    then = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _pod_ready(pod: dict[str, Any]) -> str:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    total = len(pod.get("spec", {}).get("containers") or statuses)
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _restarts(pod: dict[str, Any]) -> int:
    return sum(s.get("restartCount", 0) for s in pod.get("status", {}).get("containerStatuses") or [])


_NAME: Column = ("Name", lambda o: o["metadata"]["name"])
_AGE: Column = ("Age", _age)
_COLUMNS: dict[str, list[Column]] = {
    "Deployment": [
        _NAME,
        (
            "Ready",
            lambda o: f"{o.get('status', {}).get('readyReplicas', 0)}/{o.get('spec', {}).get('replicas', 0)}",
        ),
        ("Up-to-date", lambda o: o.get("status", {}).get("updatedReplicas", 0)),
        ("Available", lambda o: o.get("status", {}).get("availableReplicas", 0)),
        _AGE,
    ],
    "Pod": [
        _NAME,
        ("Ready", _pod_ready),
        ("Status", lambda o: o.get("status", {}).get("phase", "")),
        ("Restarts", _restarts),
        _AGE,
    ],
    "Lease": [_NAME, ("Holder", lambda o: o.get("spec", {}).get("holderIdentity", "")), _AGE],
}


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def table(
    kind: str,
    objects: list[dict[str, Any]],
    resource_version: str,
    include_object: str,
) -> dict[str, Any]:
    columns = _COLUMNS.get(kind, [_NAME, _AGE])
    types = {"Restarts": "integer", "Up-to-date": "integer", "Available": "integer"}
    rows = []
    for obj in objects:
        embedded: dict[str, Any] | None = obj
        if include_object == "None":
            embedded = None
        elif include_object != "Object":
            embedded = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append({"cells": [fn(obj) for _, fn in columns], "object": embedded})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {
                "name": name,
                "type": types.get(name, "string"),
                "format": "name" if name == "Name" else "",
                "description": "",
                "priority": 0,
            }
            for name, _ in columns
        ],
        "rows": rows,
    }
