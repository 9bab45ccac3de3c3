"""``task-producer status``: queues, workers and the autoscaler's last decision, as a table or as JSON.

The facts are RQ's own (the same keys rq-dashboard reads), so the dashboard and this command agree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC
from typing import Any, TextIO

import redis
from rq.utils import utcparse

from producer.api import Producer
from producer.scaling.report import Report
from task_processor import keys, scripts
from task_processor.observe import list_workers

COLUMNS = ("queued", "started", "failed", "finished", "scheduled", "deferred", "workers", "busy_workers")

CLEAR_SCREEN = "\x1b[H\x1b[2J"
"""Cursor home, then erase the screen: ``--watch`` redraws in place on a terminal."""


def oldest_queued_seconds(connection: redis.Redis, queues: list[str]) -> dict[str, float | None]:
    """Seconds the job at the head of each queue has waited (None for an empty queue or an unreadable head)."""
    if not queues:
        return {}
    heads = scripts.register(connection, "queue_heads")(keys=[keys.queue(q) for q in queues], args=[keys.JOB_PREFIX])
    now = time.time()
    ages: dict[str, float | None] = {}
    for queue, raw in zip(queues, heads, strict=True):
        try:
            enqueued = utcparse(raw.decode()).replace(tzinfo=UTC).timestamp()
        except (ValueError, UnicodeDecodeError):
            ages[queue] = None
        else:
            ages[queue] = round(max(0.0, now - enqueued), 1)
    return ages


def _autoscaler(producer: Producer, deployment: str) -> dict[str, Any] | None:
    report = Report.read(producer.connection, deployment)
    if report is None:
        return None
    return {
        "deployment": deployment,
        "desired": report.desired,
        "current": report.current,
        "reason": report.reason,
        "state": str(report.state),
        "updated_seconds_ago": round(report.age, 1),
    }


def collect(producer: Producer, deployment: str) -> dict[str, Any]:
    """Every fact ``status`` shows, as plain data (what ``--json`` prints)."""
    workers = list_workers(producer.connection)
    stats = producer.stats(workers=workers)  # the same workers in both views, read once
    ages = oldest_queued_seconds(producer.connection, list(stats))
    busy = sum(w.busy for w in workers)
    return {
        "queues": {name: {**asdict(s), "oldest_queued_seconds": ages[name]} for name, s in stats.items()},
        "workers": {
            "total": len(workers),
            "busy": busy,
            "idle": len(workers) - busy,
            "list": [
                {"name": w.name, "state": w.state, "current_job": w.current_job, "queues": list(w.queues)}
                for w in workers
            ],
        },
        "autoscaler": _autoscaler(producer, deployment),
    }


def render_json(facts: dict[str, Any], compact: bool = False) -> str:
    return json.dumps(facts, sort_keys=True) if compact else json.dumps(facts, indent=2, sort_keys=True)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def render_table(facts: dict[str, Any]) -> str:
    headers = ("QUEUE", *(c.upper().replace("_WORKERS", "") for c in COLUMNS), "OLDEST")
    rows = [
        (name, *(str(q[c]) for c in COLUMNS), age(q["oldest_queued_seconds"])) for name, q in facts["queues"].items()
    ]
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


def watch(render: Callable[[], str], interval: float, out: TextIO, gap: bool = True) -> int:
    """Print ``render()`` every ``interval`` seconds until Ctrl-C: redrawn in place on a terminal, else one
    after another for a log or a pipe (with a blank line between two when ``gap``; JSON lines go without).
    Ctrl-C is the normal way out: exit code 0."""
    on_tty = out.isatty()
    try:
        while True:
            text = render()
            if on_tty:
                stamp = time.strftime("%H:%M:%S")
                out.write(f"{CLEAR_SCREEN}every {interval:g}s, at {stamp} (Ctrl-C quits)\n\n{text}\n")
            else:
                out.write(f"{text}\n\n" if gap else f"{text}\n")
            out.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0
