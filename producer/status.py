"""``task-producer status``: queues, workers and the autoscaler's last decision, as a table or as JSON."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

from producer.api import Producer
from producer.autoscaler import STATUS_KEY
from worker.observe import list_workers

COLUMNS = ("queued", "started", "failed", "finished", "scheduled", "deferred", "workers", "busy_workers")


def collect(producer: Producer, deployment: str) -> dict[str, Any]:
    """Every fact ``status`` shows, as plain data (what ``--json`` prints)."""
    stats = producer.stats()
    raw = producer.connection.hgetall(STATUS_KEY.format(target=deployment))
    workers = list_workers(producer.connection)
    busy = sum(w.busy for w in workers)
    autoscaler = None
    if raw:
        fields = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}
        try:
            autoscaler = {
                "deployment": deployment,
                "desired": int(fields["desired"]),
                "current": int(fields["current"]),
                "reason": fields["reason"],
                "state": fields.get("state", "active"),
                "updated_seconds_ago": round(max(0.0, time.time() - float(fields["updated_at"])), 1),
            }
        except (KeyError, ValueError):
            autoscaler = None  # not written by an autoscaler of ours: as good as none
    return {
        "queues": {name: asdict(s) for name, s in stats.items()},
        "workers": {"total": len(workers), "busy": busy, "idle": len(workers) - busy},
        "autoscaler": autoscaler,
    }


def render_json(facts: dict[str, Any]) -> str:
    return json.dumps(facts, indent=2, sort_keys=True)


def render_table(facts: dict[str, Any]) -> str:
    headers = ("QUEUE", *(c.upper().replace("_WORKERS", "") for c in COLUMNS))
    rows = [(name, *(str(q[c]) for c in COLUMNS)) for name, q in facts["queues"].items()]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
        for r in [headers, *rows]
    ]
    w = facts["workers"]
    lines.append(f"workers: {w['total']} ({w['busy']} busy, {w['idle']} idle)")
    a = facts["autoscaler"]
    if a is None:
        lines.append("autoscaler: not running (no decision published in Redis)")
    else:
        lines.append(
            f"autoscaler: {a['state']}, {a['deployment']} desired {a['desired']}, current {a['current']} "
            f"({a['reason']}, {a['updated_seconds_ago']:g}s ago)"
        )
    return "\n".join(lines)
