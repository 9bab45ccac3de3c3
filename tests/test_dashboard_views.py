"""rq-dashboard against the test Redis: it sees exactly what ``task-producer status`` sees, and renders it. Its login
and read-only mode: tests/test_dashboard_access.py; the chart's dashboard: tests/test_chart_dashboard.py."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from producer import Producer
from tests.conftest import Proc, run, wait_for
from tests.dashboard import (
    Dashboard,
    dashboard_fixture,  # noqa: F401  (the dashboard fixture)
    get_json,
)

CHROMIUM = shutil.which("chromium")
REGISTRIES = ("started", "failed", "finished", "scheduled", "deferred")


@pytest.fixture
def busy_redis(producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]) -> dict[str, str]:
    """Every registry of 'reports' holds something, one worker is busy on it and one idles on 'low'."""
    spawn("task-worker", "--queue", "reports", "--name", "busy-one")
    spawn("task-worker", "--queue", "low", "--name", "idle-one")
    done = producer.enqueue("worker.examples.add", 1, 2, queue="reports")
    failed = producer.enqueue("worker.examples.fail", "disk full", queue="reports")
    producer.wait([done], timeout=20)
    wait_for(lambda: failed.get_status(refresh=True) == "failed", timeout=20, what="the failed job")
    running = producer.enqueue("worker.examples.sleep", 120, queue="reports")
    wait_for(lambda: running.get_status(refresh=True) == "started", timeout=20, what="the running job")
    queue = producer.queue("reports")
    for _ in range(3):
        producer.enqueue("worker.examples.noop", queue="reports")
    queue.enqueue("worker.examples.noop", depends_on=running)
    queue.enqueue_in(timedelta(hours=1), "worker.examples.noop")
    producer.enqueue("worker.examples.noop", queue="low")
    wait_for(lambda: conn.zcard("rq:finished:low") == 1, timeout=20, what="the idle worker's job")
    return {"failed": failed.id, "running": running.id}


def test_the_dashboard_shows_what_status_shows(
    busy_redis: dict[str, str], dashboard: Dashboard, env: dict[str, str]
) -> None:
    ours = dashboard("task-producer", "dashboard")
    upstream = dashboard("rq-dashboard", "--json", "--redis-url", env["REDIS_URL"])
    status = json.loads(run(["task-producer", "status", "--json"], {**env, "TASK_QUEUES": "reports,low"}).stdout)

    for base in (ours, upstream):
        queues = {q["name"]: q for q in get_json(f"{base}/0/data/queues.json")["queues"]}
        assert set(queues) == set(status["queues"]) == {"reports", "low"}
        for name, facts in status["queues"].items():
            seen = {r: queues[name][f"{r}_job_registry_count"] for r in REGISTRIES}
            assert {"queued": queues[name]["count"], **seen} == {k: facts[k] for k in ("queued", *REGISTRIES)}
    assert status["queues"]["reports"] | {"oldest_queued_seconds": 0} == {
        "queued": 3,
        "started": 1,
        "failed": 1,
        "finished": 1,
        "scheduled": 1,
        "deferred": 1,
        "workers": 1,
        "busy_workers": 1,
        "oldest_queued_seconds": 0,
    }

    # Workers, each with its state and current job (rq-dashboard's own --json cannot read a busy worker's job).
    workers = get_json(f"{ours}/0/data/workers.json")["workers"]
    current = {w["name"]: (w["state"], w["current_job"]) for w in workers}
    assert current["busy-one"][1]["job_id"] == busy_redis["running"]
    assert {name: (state, job if job == "idle" else job["job_id"]) for name, (state, job) in current.items()} == {
        w["name"]: (w["state"], w["current_job"] or "idle") for w in status["workers"]["list"]
    }
    assert {w["name"]: w["state"] for w in status["workers"]["list"]} == {"busy-one": "busy", "idle-one": "idle"}

    # The failed job, listed in its registry and shown with its error.
    listed = get_json(f"{ours}/0/data/jobs/reports/failed/8/asc/1.json")["jobs"]
    assert [job["id"] for job in listed] == [busy_redis["failed"]]
    detail = get_json(f"{ours}/0/data/job/{busy_redis['failed']}.json")
    assert detail["status"] == "failed"
    assert detail["exc_info"].strip().splitlines()[-1] == "RuntimeError: disk full"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium missing: run scripts/bootstrap")
def test_a_headless_browser_renders_the_queue_page(producer: Producer, dashboard: Dashboard, tmp_path: Path) -> None:
    producer.enqueue("worker.examples.noop", queue="reports-eu")
    base = dashboard("task-producer", "dashboard")
    page = f"{base}/0/view/queues"
    common = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,800",
        "--virtual-time-budget=5000",  # the queue table fills in from queues.json after the page loads
    ]
    shot = tmp_path / "queues.png"
    browsers = [
        subprocess.Popen(
            [*common, f"--user-data-dir={tmp_path / name}", *extra, page],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        for name, extra in (("shot", [f"--screenshot={shot}"]), ("dom", ["--dump-dom"]))
    ]
    dom = browsers[1].communicate(timeout=60)[0].decode()
    browsers[0].communicate(timeout=60)
    assert "reports-eu" in dom  # the queue row the page's script drew
    image = shot.read_bytes()
    assert png_size(image) == (1280, 800)
    assert len(image) > 10_000, "a blank page compresses to almost nothing"
