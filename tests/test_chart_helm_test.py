"""The Helm chart's ``helm test`` hook: the Pod's own script, run with its rendered environment against the test
Redis and a real worker, runs a task through it.

The other chart modules are listed in tests/test_chart.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

from tests.chart import Helm


def test_the_helm_test_pod_runs_a_task_through_a_worker(
    helm: Helm, redis_url: str, spawn: Callable[..., Any], env: dict[str, str]
) -> None:
    """Run the hook Pod's own script, with its rendered environment, against the test Redis and a real worker."""
    (pod,) = [d for d in helm.docs() if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["image"].startswith("task-processor-producer:"), "the producer image carries the Python API"
    assert container["command"] == ["python", "-c"]
    rendered_env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    run_env = {**env, **rendered_env, "REDIS_URL": redis_url, "POD_NAME": "helm-test", "TEST_TIMEOUT": "20"}
    spawn("task-worker", extra_env={k: v for k, v in rendered_env.items() if k.startswith(("TASK_", "LOG_"))})
    result = subprocess.run(
        [sys.executable, "-c", container["args"][0]],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"the helm test script failed:\n{result.stdout}\n{result.stderr}"
    assert "redis: PONG" in result.stdout, result.stdout
    assert "result 5, 1 worker(s) registered" in result.stdout, result.stdout
