"""LocalDeployment's crash-loop backoff: a worker that dies right after start is restarted with growing delays."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
import redis

from producer.scaling.local.deployment import CRASH_BACKOFF_FIRST, LocalDeployment
from tests.conftest import wait_for

STARTS = 5


@pytest.mark.timeout(90)
def test_a_worker_dying_at_start_is_restarted_with_growing_delays(conn: redis.Redis, tmp_path: Path) -> None:
    # Every worker process of this deployment writes when it started, then exits at once (a sitecustomize on its
    # PYTHONPATH), as a worker with a broken image or setting would.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, time\n"
        "with open(os.environ['CRASH_LOG'], 'a') as f:\n"
        "    f.write(f'{time.time()}\\n')\n"
        "os._exit(1)\n"
    )
    starts = tmp_path / "starts"
    env = {**os.environ, "PYTHONPATH": str(site), "CRASH_LOG": str(starts)}
    fleet = LocalDeployment(conn, env, ("default",), replicas=1, log_file=tmp_path / "w.log").start()

    def started() -> list[float]:
        return [float(t) for t in starts.read_text().split()] if starts.exists() else []

    try:
        wait_for(lambda: len(started()) >= STARTS, timeout=60, what=f"{STARTS} starts")
    finally:
        fleet.close(timeout=10)
    times = started()[:STARTS]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    print("gaps between starts:", [round(g, 2) for g in gaps])
    # Each restart waits at least twice as long as the one before: 0.5, 1, 2, 4 s, not a tight loop.
    for n, gap in enumerate(gaps):
        assert gap >= CRASH_BACKOFF_FIRST * 2**n * 0.95, f"restart {n + 1} came {gap:.2f}s after the last: {gaps}"
