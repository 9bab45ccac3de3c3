"""The Helm chart's workers, names and settings, read from what helm renders: the grace period covering a task,
the worker Deployment's name whatever the release, the autoscaler owning the replicas, the values reaching the
containers under the README's variable names, TASK_MODULES wherever tasks run, and POD_NAME from the downward API.

The other chart modules are listed in tests/test_chart.py.
"""

from __future__ import annotations

import pytest

from tests.chart import VARIANTS, Helm, component, env_of, find, pod_role, pod_specs, the_container
from tests.chart_checks import readme_table, ticked


def readme_variables() -> set[str]:
    return {ticked(cells[0])[0] for cells in readme_table("| variable | default | meaning |")}


@pytest.mark.parametrize("timeout", [None, 3600])
def test_the_grace_period_covers_a_whole_task(helm: Helm, timeout: int | None) -> None:
    docs = helm.docs(*([f"config.taskTimeout={timeout}"] if timeout else []))
    spec = find(docs, "Deployment", "task-processor")["spec"]["template"]["spec"]
    (worker,) = spec["containers"]
    task_timeout = int(env_of(worker)["TASK_TIMEOUT"]["value"])
    assert task_timeout == (timeout or 180)
    assert spec["terminationGracePeriodSeconds"] >= task_timeout, (
        f"terminationGracePeriodSeconds {spec['terminationGracePeriodSeconds']} < TASK_TIMEOUT {task_timeout}: "
        "SIGTERM would kill a job that is allowed to run longer"
    )
    assert worker["command"] == ["task-worker"]
    assert worker["livenessProbe"]["exec"]["command"] == ["task-worker", "check"]


def test_the_worker_deployment_is_task_processor_whatever_the_release(helm: Helm) -> None:
    docs = helm.docs(release="queue-prod", namespace="jobs")
    worker = find(docs, "Deployment", "task-processor")
    assert component(worker) == "worker"
    producer_env = env_of(the_container(docs, "Deployment", "task-processor-producer"))
    assert producer_env["WORKER_DEPLOYMENT"]["value"] == "task-processor"
    assert producer_env["WORKER_NAMESPACE"]["value"] == "jobs"
    assert find(docs, "RoleBinding")["subjects"][0]["namespace"] == "jobs"


def test_fullname_override_renames_the_workers_and_the_autoscaler_follows(helm: Helm) -> None:
    docs = helm.docs("fullnameOverride=tp-workers")
    assert find(docs, "Deployment", "tp-workers")
    producer_env = env_of(the_container(docs, "Deployment", "tp-workers-producer"))
    assert producer_env["WORKER_DEPLOYMENT"]["value"] == "tp-workers"
    assert not [d for d in docs if d["metadata"]["name"].startswith("task-processor")], "an object kept the old name"


def test_the_autoscaler_owns_the_worker_replicas(helm: Helm) -> None:
    """With the autoscaler on, spec.replicas is absent, so `helm upgrade` and `kubectl apply` never reset it."""
    spec = find(helm.docs(), "Deployment", "task-processor")["spec"]
    assert "replicas" not in spec, "spec.replicas would fight the autoscaler on every upgrade"
    assert find(helm.docs(), "Deployment", "task-processor-producer")["spec"]["replicas"] == 2
    fixed = find(helm.docs("autoscale.enabled=false", "worker.replicas=3"), "Deployment", "task-processor")
    assert fixed["spec"]["replicas"] == 3


def test_settings_reach_the_containers_under_the_readme_names(helm: Helm) -> None:
    docs = helm.docs(
        "config.queues={high,default}",
        "config.serializer=pickle",
        "config.taskModules={myapp.tasks,billing.jobs}",
        "config.logLevel=DEBUG",
        "autoscale.min=1",
        "autoscale.max=20",
        "autoscale.jobsPerWorker=5",
        "autoscale.scaleDownDelay=90",
        "autoscale.manualHold=600",
        "autoscale.targetWait=off",
    )
    worker = env_of(the_container(docs, "Deployment", "task-processor"))
    producer = env_of(the_container(docs, "Deployment", "task-processor-producer"))
    values = {name: e.get("value") for name, e in producer.items()}
    expected = {
        "TASK_QUEUES": "high,default",
        "TASK_SERIALIZER": "pickle",
        "TASK_MODULES": "myapp.tasks,billing.jobs",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "AUTOSCALE_MIN": "1",
        "AUTOSCALE_MAX": "20",
        "AUTOSCALE_JOBS_PER_WORKER": "5",
        "AUTOSCALE_INTERVAL": "0.25",
        "AUTOSCALE_SCALE_DOWN_DELAY": "90",
        "AUTOSCALE_MANUAL_HOLD": "600",
        "AUTOSCALE_TARGET_WAIT": "off",
    }
    wrong = {name: values.get(name) for name, want in expected.items() if values.get(name) != want}
    assert not wrong, f"the autoscaler's environment does not follow the values: {wrong}"
    for name in ("TASK_QUEUES", "TASK_SERIALIZER", "TASK_MODULES", "TASK_TIMEOUT", "LOG_FORMAT", "LOG_LEVEL"):
        assert worker[name] == producer[name], f"{name} differs between workers and autoscaler"
    helper = {"REDIS_PASSWORD"}  # only expanded into REDIS_URL
    unknown = (set(worker) | set(producer)) - readme_variables() - helper
    assert not unknown, f"the chart sets variables the README's configuration table does not list: {unknown}"


@pytest.mark.parametrize("modules", ["{myapp.tasks,billing.jobs}", r"myapp.tasks\, billing.jobs"])
def test_task_modules_reach_workers_autoscalers_and_the_test_pod(helm: Helm, modules: str) -> None:
    """config.taskModules, a list or a comma string, is the same TASK_MODULES wherever tasks run or are enqueued."""
    docs = helm.docs(f"config.taskModules={modules}")
    seen = {}
    for where, spec, owner in pod_specs(docs):
        if pod_role(owner) in ("worker", "producer", "test"):
            (container,) = spec["containers"]
            seen[where] = env_of(container)["TASK_MODULES"].get("value")
    assert len(seen) == 3, seen
    assert set(seen.values()) == {"myapp.tasks,billing.jobs"}, seen
    assert env_of(the_container(helm.docs(), "Deployment", "task-processor"))["TASK_MODULES"]["value"] == (
        "worker.examples"
    ), "the default is the demo module, which the helm test runs"


@pytest.mark.parametrize("variant", VARIANTS)
def test_pod_name_comes_from_the_downward_api(helm: Helm, variant: str) -> None:
    docs = helm.docs(*VARIANTS[variant])
    for where, spec, owner in pod_specs(docs):
        if pod_role(owner) in ("worker", "producer", "test"):
            for c in spec["containers"]:
                pod_name = env_of(c).get("POD_NAME", {})
                assert pod_name.get("valueFrom") == {"fieldRef": {"fieldPath": "metadata.name"}}, f"{where}: {pod_name}"
