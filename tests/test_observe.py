"""Metrics and logs of real processes: a worker and an autoscaler, scraped over HTTP, their output parsed."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import urllib.request
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from producer import Producer, Task
from producer.commands.redis_server import free_port
from tests.conftest import Proc, run, wait_for
from tests.kubeapi.fixtures import kube_api  # noqa: F401
from tests.kubeapi.server import KubeAPI

SCALE = r"/namespaces/default/deployments/task-processor/scale$"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def every_line_is_json(proc: Proc) -> list[dict[str, Any]]:
    lines = proc.output().splitlines()
    assert lines, "no output"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    for entry in parsed:
        assert {"event", "level", "timestamp", "logger"} <= entry.keys(), entry
    return parsed


def test_a_worker_counts_its_jobs_and_logs_each_as_json(producer: Producer, spawn: Callable[..., Proc]) -> None:
    port = free_port()
    worker = spawn("task-worker", extra_env={"METRICS_PORT": str(port), "WORKER_POOL": "bulk"})
    jobs = producer.enqueue_many(
        [
            Task("worker.examples.add", (1, 2)),
            Task("worker.examples.fail", ("disk full",)),
            Task("worker.examples.flaky", (1,), retries=1, retry_backoff=0),
        ]
    )
    wait_for(
        lambda: [j.get_status(refresh=True) for j in jobs] == ["finished", "failed", "finished"],
        timeout=20,
        what="the three jobs to end",
    )
    samples = wait_for(
        lambda: (s := scrape(port)) and value(s, "task_processor_jobs_finished_total", **FLAKY) == 1 and s,
        what="the last count",
    )
    counts = {
        (name.removeprefix("task_processor_jobs_").removesuffix("_total"), dict(labels)["function"]): n
        for (name, labels), n in samples.items()
        if name.startswith("task_processor_jobs_") and name.endswith("_total")
    }
    assert counts == {
        ("started", "worker.examples.add"): 1,
        ("started", "worker.examples.fail"): 1,
        ("started", "worker.examples.flaky"): 2,
        ("finished", "worker.examples.add"): 1,
        ("finished", "worker.examples.flaky"): 1,
        ("failed", "worker.examples.fail"): 1,
        ("retried", "worker.examples.flaky"): 1,
    }
    assert all(dict(labels)["queue"] == "default" for (_, labels) in samples if "function" in dict(labels))
    assert value(samples, "task_processor_job_duration_seconds_count", **FLAKY) == 2
    assert value(samples, "task_processor_job_duration_seconds_bucket", le="+Inf", **FLAKY) == 2
    assert value(samples, "task_processor_worker_busy", pool="bulk") == 0
    assert value(samples, "process_resident_memory_bytes")

    running = producer.enqueue("worker.examples.sleep", 60)
    wait_for(lambda: running.get_status(refresh=True) == "started", what="the long job to start")
    assert value(scrape(port), "task_processor_worker_busy", pool="bulk") == 1
    worker.signal(signal.SIGTERM)
    wait_for(lambda: "warm shutdown" in worker.output(), what="the warm shutdown log line")
    worker.signal(signal.SIGINT)  # a second signal: a cold stop, the job goes back to its queue
    assert worker.wait(timeout=10) == 1

    job_lines = [line for line in every_line_is_json(worker) if line["event"] == "job"]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for line in job_lines:
        assert {"job_id", "queue", "func", "outcome", "attempt", "duration_ms"} <= line.keys(), line
        by_id.setdefault(line["job_id"], []).append(line)
    outcomes = {job.id: [(line["outcome"], line["attempt"]) for line in by_id[job.id]] for job in [*jobs, running]}
    assert outcomes == {
        jobs[0].id: [("finished", 1)],
        jobs[1].id: [("failed", 1)],
        jobs[2].id: [("retry-queued", 1), ("finished", 2)],
        running.id: [("interrupted-requeued", 1)],
    }
    failed = by_id[jobs[1].id][0]
    assert (failed["level"], failed["error"], failed["func"]) == (
        "error",
        "RuntimeError: disk full",
        "worker.examples.fail",
    )


FLAKY = {"pool": "bulk", "queue": "default", "function": "worker.examples.flaky"}


def test_the_autoscaler_exports_what_it_sees_and_logs_each_decision_once(
    kube_api: KubeAPI,  # noqa: F811
    producer: Producer,
    spawn: Callable[..., Proc],
) -> None:
    kube_api.create_deployment("task-processor", replicas=0)
    port = free_port()
    env = {
        "WORKER_NAMESPACE": "default",
        "AUTOSCALE_INTERVAL": "0.05",
        "AUTOSCALE_JOBS_PER_WORKER": "5",
        "AUTOSCALE_MAX": "6",
        "AUTOSCALE_SCALE_DOWN_DELAY": "0",
        "AUTOSCALE_START_SPARES": "0",  # the count rule's own numbers below
        "METRICS_PORT": str(port),
    }
    autoscaler = spawn("task-producer", "autoscale", "--kubeconfig", str(kube_api.kubeconfig), extra_env=env)
    wait_for(
        lambda: value(scrape_or_empty(port), "task_processor_autoscaler_state", pool="default", state="active"),
        what="a leader",
    )
    producer.enqueue_many([Task("worker.examples.noop") for _ in range(12)])
    wait_for(lambda: kube_api.replicas() == 3, what="the scale-up")
    samples = wait_for(
        lambda: (s := scrape(port)) and value(s, "task_processor_replicas_current", pool="default") == 3 and s,
        what="current 3",
    )
    assert value(samples, "task_processor_queue_depth", queue="default") == 12
    assert value(samples, "task_processor_inflight_jobs", queue="default") == 0
    assert value(samples, "task_processor_replicas_desired", pool="default") == 3
    assert (
        value(samples, "task_processor_scale_decisions_total", pool="default", direction="up", reason="scale-up") == 1
    )
    assert value(samples, "task_processor_autoscaler_state", pool="default", state="paused") == 0

    kube_api.fail("PATCH", SCALE, 403, times=1000)
    producer.connection.delete("rq:queue:default")  # demand drops to zero: the scale-down is refused
    wait_for(
        lambda: value(scrape(port), "task_processor_api_errors_total", api="kubernetes", error="ForbiddenError"),
        what="the API error to be counted",
    )
    samples = scrape(port)
    assert value(samples, "task_processor_queue_depth", queue="default") == 0
    assert value(samples, "task_processor_replicas_desired", pool="default") == 0
    assert (
        value(samples, "task_processor_scale_decisions_total", pool="default", direction="down", reason="scale-down")
        is None
    )

    autoscaler.signal(signal.SIGTERM)
    assert autoscaler.wait() == 0
    decisions = [line for line in every_line_is_json(autoscaler) if line["event"] == "scaling decision"]
    assert {"queued", "in_flight", "current", "desired", "reason", "busy", "target"} <= decisions[0].keys()
    inputs = [{k: d[k] for k in ("queued", "in_flight", "current", "desired", "reason")} for d in decisions]
    assert inputs[0] == {"queued": 0, "in_flight": 0, "current": 0, "desired": 0, "reason": "steady"}
    assert {"queued": 12, "in_flight": 0, "current": 0, "desired": 3, "reason": "scale-up"} in inputs
    keys = [(d["desired"], d["reason"]) for d in decisions]
    assert all(a != b for a, b in itertools.pairwise(keys)), f"a decision logged twice in a row: {keys}"
    assert keys[-1] == (0, "scale-down")  # logged once, although every pass since has tried to write it


def scrape_or_empty(port: int) -> Samples:
    try:
        return scrape(port)
    except OSError:
        return {}


def test_a_taken_metrics_port_is_one_clear_line(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(["task-worker"], {**env, "METRICS_PORT": str(port)})
    assert result.returncode == 2
    assert result.stderr == (
        f"task-worker: error: METRICS_PORT={port}: cannot listen there ([Errno 98] Address already in use): "
        "pick a free port, or 0 to turn metrics off\n"
    )


def test_run_local_serves_the_autoscalers_metrics_and_its_workers_stay_off_the_port(
    spawn: Callable[..., Proc],
) -> None:
    port = free_port()
    local = spawn(
        "task-producer",
        "run-local",
        "--jobs",
        "5",
        "--scale-down-delay",
        "0",
        "--keep-running",
        extra_env={"METRICS_PORT": str(port)},
    )
    wait_for(lambda: "Workers keep running" in local.output(), timeout=60, what="the demo to finish")
    samples = scrape(port)
    ups = value(samples, "task_processor_scale_decisions_total", pool="default", direction="up", reason="scale-up")
    assert ups is not None
    assert ups >= 1
    assert value(samples, "task_processor_queue_depth", queue="default") == 0
    assert value(samples, "task_processor_autoscaler_state", pool="default", state="active") == 1
    assert "5 finished, 0 failed" in local.output()  # workers that fought over the port would never get there
    local.signal(signal.SIGINT)
    assert local.wait(timeout=60) == 130
