"""``task-producer status``: queues, workers, the autoscaler's last decision and the periodic tasks it fires, as a
table or as JSON.

The facts are RQ's own (the same keys rq-dashboard reads), so the dashboard and this command agree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TextIO

import redis

from producer.api import Producer
from producer.scaling.pools import serves
from producer.scaling.report import CronReport, Report
from task_processor.observe import WorkerInfo, list_workers, queue_head_ages

COLUMNS = ("queued", "started", "failed", "finished", "scheduled", "deferred", "workers", "busy_workers")

CLEAR_SCREEN = "\x1b[H\x1b[2J"
"""Cursor home, then erase the screen: ``--watch`` redraws in place on a terminal."""


def oldest_queued_seconds(connection: redis.Redis, queues: list[str]) -> dict[str, float | None]:
    """Seconds the job at the head of each queue has waited (None for an empty queue or an unreadable head)."""
    return {queue: None if a is None else round(a, 1) for queue, a in queue_head_ages(connection, queues).items()}


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


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
        # The latency rule's inputs as the loop last saw them: rates need two looks in time, which only it has.
        "queues": {
            queue: {
                "oldest_wait_seconds": _rounded(report.oldest_wait.get(queue), 1),
                "arrival_rate": _rounded(report.arrival_rate.get(queue)),
            }
            for queue in sorted(report.oldest_wait.keys() | report.arrival_rate.keys())
        },
        "service_rate": _rounded(report.service_rate),
        "target_wait": report.target_wait,
    }


def _pools(producer: Producer, workers: list[WorkerInfo]) -> dict[str, dict[str, Any]]:
    """Each worker pool an autoscaler reported on, with its workers: those naming the pool (WORKER_POOL), and
    those naming none that serve one of its queues (as the autoscaler counts them)."""
    pools: dict[str, dict[str, Any]] = {}
    for deployment in Report.targets(producer.connection):
        report = Report.read(producer.connection, deployment)
        if report is None:
            continue
        mine = [w for w in workers if serves(w, report.pool, report.queues)]
        pools[report.pool] = {
            "deployment": deployment,
            "queues": list(report.queues),
            "state": str(report.state),
            "desired": report.desired,
            "current": report.current,
            "reason": report.reason,
            "workers": len(mine),
            "busy": sum(w.busy for w in mine),
            "updated_seconds_ago": round(report.age, 1),
        }
    return dict(sorted(pools.items()))


def _utc(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def _cron(producer: Producer) -> dict[str, dict[str, Any]]:
    """The periodic tasks (TASK_CRON) as the leading autoscaler last published them; none without a leader lately."""
    return {
        report.name: {
            "schedule": report.schedule,
            "func": report.func,
            "queue": report.queue,
            "last_run": _utc(report.last_run),
            "last_job_id": report.last_job_id,
            "next_run": _utc(report.next_run),
            "updated_seconds_ago": round(report.age, 1),
        }
        for report in CronReport.read_all(producer.connection)
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
                {
                    "name": w.name,
                    "state": w.state,
                    "current_job": w.current_job,
                    "queues": list(w.queues),
                    "pool": w.pool,
                }
                for w in workers
            ],
        },
        "autoscaler": _autoscaler(producer, deployment),
        "pools": _pools(producer, workers),
        "cron": _cron(producer),
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


def rate(value: float | None) -> str:
    """Jobs per second at a glance: "-" when unknown."""
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _columns(headers: tuple[str, ...], rows: list[tuple[str, ...]], left: int = 1) -> list[str]:
    """Rows aligned under their headers: the first ``left`` columns (names) left, the others (numbers) right."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    return [
        "  ".join(
            cell.rjust(w) if i >= left else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in [headers, *rows]
    ]


def render_table(facts: dict[str, Any]) -> str:
    a = facts["autoscaler"]
    measured: dict[str, Any] = {} if a is None else a["queues"]
    headers = ("QUEUE", *(c.upper().replace("_WORKERS", "") for c in COLUMNS), "ARRIVAL/S", "OLDEST")
    rows = [
        (
            name,
            *(str(q[c]) for c in COLUMNS),
            rate(measured.get(name, {}).get("arrival_rate")),
            age(q["oldest_queued_seconds"]),
        )
        for name, q in facts["queues"].items()
    ]
    lines = _columns(headers, rows)
    pools = facts["pools"]
    if pools:
        lines.append("")
        pool_headers = ("POOL", "DEPLOYMENT", "QUEUES", "STATE", "DESIRED", "CURRENT", "WORKERS", "BUSY")
        keys = ("deployment", "queues", "state", "desired", "current", "workers", "busy")
        pool_rows = [
            (name, *(",".join(p[k]) if k == "queues" else str(p[k]) for k in keys)) for name, p in pools.items()
        ]
        lines.extend(_columns(pool_headers, pool_rows))
        lines.append("")
    if facts["cron"]:
        if not pools:
            lines.append("")
        headers, rows = _cron_rows(facts["cron"])
        lines.extend(_columns(headers, rows, left=len(headers)))
        lines.append("")
    w = facts["workers"]
    lines.append(f"workers: {w['total']} ({w['busy']} busy, {w['idle']} idle)")
    if a is None:
        lines.append("autoscaler: not running (no decision published in Redis)")
    else:
        lines.append(
            f"autoscaler: {a['state']}, {a['deployment']} desired {a['desired']}, current {a['current']} "
            f"({a['reason']}, {a['updated_seconds_ago']:g}s ago)"
        )
        target = "off" if a["target_wait"] is None else f"{a['target_wait']:g}s"
        lines.append(f"service: {rate(a['service_rate'])} jobs/s per busy worker; target wait {target}")
    return "\n".join(lines)


def _when(iso: str | None) -> str:
    """A published time at a glance: "2026-12-02 03:00Z"; "-" for none."""
    return "-" if iso is None else iso.replace("T", " ").replace(":00Z", "Z")


def _cron_rows(cron: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    headers = ("CRON", "SCHEDULE", "FUNC", "QUEUE", "LAST RUN", "NEXT RUN")
    rows: list[tuple[str, ...]] = [
        (name, c["schedule"], c["func"], c["queue"], _when(c["last_run"]), _when(c["next_run"]))
        for name, c in cron.items()
    ]
    return headers, rows


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
