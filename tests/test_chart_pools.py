"""Worker pools in the chart (`pools:` in values): one worker Deployment and PodDisruptionBudget per pool.

What is checked here, on what helm renders: pool "default" is the worker Deployment from before pools with exactly
its old selector (Kubernetes never changes a selector, so that is what lets `helm upgrade` and `kubectl apply`
change it in place); every other pool's selector and budget take its own Pods and no other pool's; the objects
meant for all workers (metrics Service, NetworkPolicy) reach every pool's Pods; a pool's settings reach its Pods;
the Role pools need; NOTES; and the values the chart refuses. Lint, the Kubernetes schemas and the Pod security
checks run on the "pools" variant (VARIANTS in tests/chart.py) in tests/test_chart.py and
tests/test_chart_security.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.chart import (
    ALL_ON,
    CHART,
    POOL_LABEL,
    POOLS,
    VARIANTS,
    WORKER_LABEL,
    Helm,
    env_of,
    find,
    pod_labels,
    pod_specs,
    selects,
    the_container,
    workers,
)

COMPONENT = "app.kubernetes.io/component"


def release_selector(component: str, release: str = "task-processor") -> dict[str, Any]:
    return {
        "matchLabels": {
            "app.kubernetes.io/name": "task-processor",
            "app.kubernetes.io/instance": release,
            COMPONENT: component,
        }
    }


OLD_WORKER_SELECTOR = release_selector("worker")
"""The worker Deployment's and its budget's selector before pools (chart 0.1.0, deploy/task-processor.yaml)."""

POOL_DEPLOYMENTS = {"default": "task-processor", "bulk": "task-processor-bulk", "gpu": "task-processor-gpu"}
POOL_COMPONENTS = {"default": "worker", "bulk": "worker-bulk", "gpu": "worker-gpu"}
WORKER_POOL_FROM_LABEL = {"fieldRef": {"fieldPath": "metadata.labels['task-processor.io/pool']"}}


def pool_annotations(deployment: dict[str, Any]) -> dict[str, Any]:
    """The task-processor.io/ annotations, without the prefix (values as parsed: strings, or the test fails)."""
    prefix = "task-processor.io/"
    notes = deployment["metadata"].get("annotations", {})
    return {key.removeprefix(prefix): value for key, value in notes.items() if key.startswith(prefix)}


def pool_labels(pool: str) -> dict[str, str]:
    """The labels every object of a pool (Deployment, budget, Pods) carries, whatever else it has."""
    return {COMPONENT: POOL_COMPONENTS[pool], POOL_LABEL: pool, WORKER_LABEL: "true"}


# --- upgrades in place: pool "default" ------------------------------------------------------------------------------


@pytest.mark.parametrize("queues", [None, "{high,default}"])
def test_the_default_render_is_the_worker_deployment_from_before_pools(helm: Helm, queues: str | None) -> None:
    """The one worker Deployment keeps its name and, exactly, its selector (immutable: an upgrade changes it in
    place), and becomes pool "default": labelled and annotated for the autoscaler, serving config.queues, its
    workers learning the pool from their own label."""
    docs = helm.docs(*([f"config.queues={queues}"] if queues else []))
    (deployment,) = workers(docs).values()
    assert deployment["metadata"]["name"] == "task-processor"
    assert deployment["spec"]["selector"] == OLD_WORKER_SELECTOR
    assert pool_labels("default").items() <= deployment["metadata"]["labels"].items()
    assert pool_labels("default").items() <= pod_labels(deployment).items()
    joined = "high,default" if queues else "default"
    assert pool_annotations(deployment) == {
        "queues": joined,
        "min-replicas": "0",
        "max-replicas": "10",
        "jobs-per-worker": "10",
        "scale-down-delay": "30",
        "target-wait": "30",
    }
    env = env_of(the_container(docs, "Deployment", "task-processor"))
    assert env["TASK_QUEUES"]["value"] == joined
    assert env["WORKER_POOL"] == {"name": "WORKER_POOL", "valueFrom": WORKER_POOL_FROM_LABEL}
    (budget,) = workers(docs, "PodDisruptionBudget").values()
    assert budget["metadata"]["name"] == "task-processor"
    assert budget["spec"]["selector"] == OLD_WORKER_SELECTOR
    producer = env_of(the_container(docs, "Deployment", "task-processor-producer"))
    assert (producer["WORKER_DEPLOYMENT"]["value"], producer["TASK_QUEUES"]["value"]) == ("task-processor", joined)


@pytest.mark.parametrize("sets", [(), POOLS], ids=["alone", "with-pools"])
def test_adding_pools_never_changes_the_default_pools_selector(helm: Helm, sets: tuple[str, ...]) -> None:
    """Whatever the release is called and whatever pools are added later, pool "default" keeps the selector the
    release's worker Deployment was created with."""
    docs = helm.docs(*sets, release="queue-prod", namespace="jobs")
    selector = release_selector("worker", release="queue-prod")
    assert find(docs, "Deployment", "task-processor")["spec"]["selector"] == selector
    assert find(docs, "PodDisruptionBudget", "task-processor")["spec"]["selector"] == selector


# --- several pools ------------------------------------------------------------------------------------------------


def test_each_pool_is_a_deployment_and_a_budget_of_its_own(helm: Helm) -> None:
    docs = helm.docs(*POOLS)
    deployments, budgets = workers(docs), workers(docs, "PodDisruptionBudget")
    assert set(deployments) == set(budgets) == set(POOL_DEPLOYMENTS.values())
    keys = ("queues", "min-replicas", "max-replicas", "jobs-per-worker", "scale-down-delay", "target-wait")
    expected = {  # what a pool leaves out comes from autoscale.*
        "default": dict(zip(keys, ("default", "0", "10", "10", "30", "30"), strict=True)),
        "bulk": dict(zip(keys, ("bulk,default", "0", "40", "50", "300", "30"), strict=True)),
        "gpu": dict(zip(keys, ("render", "1", "4", "10", "30", "off"), strict=True)),
    }
    for pool, name in POOL_DEPLOYMENTS.items():
        deployment, budget = deployments[name], budgets[name]
        for labels in (deployment["metadata"]["labels"], pod_labels(deployment), budget["metadata"]["labels"]):
            assert pool_labels(pool).items() <= labels.items(), name
        assert deployment["spec"]["selector"] == release_selector(POOL_COMPONENTS[pool]), name
        assert budget["spec"]["selector"] == deployment["spec"]["selector"], name
        assert pool_annotations(deployment) == expected[pool], name
        env = env_of(the_container(docs, "Deployment", name))
        assert env["TASK_QUEUES"]["value"] == expected[pool]["queues"]
        assert env["WORKER_POOL"]["valueFrom"] == WORKER_POOL_FROM_LABEL
    pods = {name: d["spec"]["template"]["spec"] for name, d in deployments.items()}
    bulk, gpu, default = (pods[POOL_DEPLOYMENTS[p]] for p in ("bulk", "gpu", "default"))
    assert bulk["containers"][0]["resources"] == {"requests": {"cpu": 2, "memory": "4Gi"}}
    assert bulk["nodeSelector"] == {"pool": "batch"}
    assert bulk["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}]
    for spec in (gpu, default):
        assert spec["containers"][0]["resources"] == default["containers"][0]["resources"], "worker.resources"
        assert not {"nodeSelector", "tolerations", "affinity"} & spec.keys()
    assert gpu["containers"][0]["image"] == "registry.example.com/gpu-worker:2.0"
    assert {bulk["containers"][0]["image"], default["containers"][0]["image"]} == {"task-processor-worker:0.1.0"}
    assert "replicas" not in {key for d in deployments.values() for key in d["spec"]}, "the autoscaler owns them"
    producer = env_of(the_container(docs, "Deployment", "task-processor-producer"))
    assert producer["WORKER_DEPLOYMENT"]["value"] == "task-processor", "the single-Deployment fallback stays"


def test_no_pools_selector_takes_another_pools_pods(helm: Helm) -> None:
    """Each pool's Deployment and budget select exactly its own Pods among every Pod the release runs: a Pod
    under two budgets cannot be evicted at all, and the autoscaler, which finds a pool's Pods by its Deployment's
    selector, would count and mark another pool's workers as its own."""
    docs = helm.docs(*ALL_ON, *POOLS)
    running = {where: pod_labels(owner) for where, _, owner in pod_specs(docs)}
    assert len(running) == 7, sorted(running)  # three pools, autoscaler, Redis, dashboard, helm test
    for kind in ("Deployment", "PodDisruptionBudget"):
        for name, selecting in workers(docs, kind).items():
            taken = sorted(where for where, labels in running.items() if selects(selecting["spec"]["selector"], labels))
            assert taken == [f"Deployment/{name}"], f"{kind}/{name} selects {taken}"


def test_a_pool_key_replaces_the_chart_wide_one_even_when_zero_or_empty(helm: Helm) -> None:
    """A pool's min 0 or nodeSelector {} is a choice, not a gap; image is merged key by key; replicas count only
    without the autoscaler."""
    docs = helm.docs(
        "autoscale.min=1",
        "autoscale.enabled=false",
        "worker.replicas=2",
        "worker.nodeSelector.disk=ssd",
        "worker.image.pullPolicy=Always",
        "pools.bulk.queues={bulk}",
        "pools.bulk.min=0",
        "pools.bulk.replicas=0",
        "pools.bulk.image.tag=9.9",
        extra=("--set-json", "pools.bulk.nodeSelector={}"),
    )
    default, bulk = (workers(docs)[name] for name in ("task-processor", "task-processor-bulk"))
    assert (pool_annotations(default)["min-replicas"], pool_annotations(bulk)["min-replicas"]) == ("1", "0")
    assert (default["spec"]["replicas"], bulk["spec"]["replicas"]) == (2, 0)
    assert default["spec"]["template"]["spec"]["nodeSelector"] == {"disk": "ssd"}
    assert "nodeSelector" not in bulk["spec"]["template"]["spec"]
    (container,) = bulk["spec"]["template"]["spec"]["containers"]
    assert (container["image"], container["imagePullPolicy"]) == ("task-processor-worker:9.9", "Always")


# --- what is meant for every worker -------------------------------------------------------------------------------


def test_every_pool_is_scraped_and_reaches_redis(helm: Helm) -> None:
    """The metrics Service selects workers by the label every pool's Pods carry, and nothing else; the ServiceMonitor
    still finds that Service by its own labels; the NetworkPolicy admits every pool's Pods, and also workers
    labelled as before pools, which must finish their jobs while an upgrade replaces them."""
    docs = helm.docs(*ALL_ON, *POOLS)
    service = find(docs, "Service", "task-processor-metrics")
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "task-processor",
        "app.kubernetes.io/instance": "task-processor",
        WORKER_LABEL: "true",
    }
    by_service = {"matchLabels": service["spec"]["selector"]}
    (policy_from,) = find(docs, "NetworkPolicy")["spec"]["ingress"][0]["from"]
    pools = workers(docs)
    assert len(pools) == 3
    for name, deployment in pools.items():
        assert selects(by_service, pod_labels(deployment)), f"{name} is not scraped"
        assert selects(policy_from["podSelector"], pod_labels(deployment)), f"{name} cannot reach Redis"
    others = [where for where, _, owner in pod_specs(docs) if selects(by_service, pod_labels(owner))]
    assert sorted(others) == sorted(f"Deployment/{name}" for name in pools), "the Service takes non-worker Pods"
    labels = pod_labels(pools["task-processor"])
    before_pools = {key: value for key, value in labels.items() if key not in (POOL_LABEL, WORKER_LABEL)}
    assert selects(policy_from["podSelector"], before_pools), "workers from before pools would lose Redis mid-upgrade"
    monitor = find(docs, "ServiceMonitor")
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])


def hand_made(deployment: dict[str, Any], pool: str, component: str, queues: str) -> dict[str, Any]:
    """A pool added with kubectl as README and NOTES say: a copy of a pool's Deployment, renamed, with its
    component in the selector and Pod labels, the pool label, the queues annotation and TASK_QUEUES."""
    made = copy.deepcopy(deployment)
    made["metadata"] = {
        "name": f"my-{pool}-workers",
        "labels": {POOL_LABEL: pool},
        "annotations": {"task-processor.io/queues": queues},
    }
    made["spec"]["selector"]["matchLabels"][COMPONENT] = component
    made["spec"]["template"]["metadata"]["labels"].update({COMPONENT: component, POOL_LABEL: pool})
    (container,) = made["spec"]["template"]["spec"]["containers"]
    env_of(container)["TASK_QUEUES"]["value"] = queues
    return made


def test_a_pool_added_by_hand_as_the_readme_says_stays_apart_and_is_covered(helm: Helm) -> None:
    """Component worker-<pool> keeps a hand-made pool's Pods from every chart pool's selector and budget (and its
    selector from theirs), while the metrics Service and the NetworkPolicy cover it; a copy that kept component
    "worker" would have its Pods taken by pool "default"'s selector: README and NOTES warn against that."""
    docs = helm.docs(*ALL_ON, *POOLS)
    chart = [*workers(docs).values(), *workers(docs, "PodDisruptionBudget").values()]
    reports = hand_made(find(docs, "Deployment", "task-processor"), "reports", "worker-reports", "reports,default")
    assert selects(reports["spec"]["selector"], pod_labels(reports))
    assert not [d["metadata"]["name"] for d in chart if selects(d["spec"]["selector"], pod_labels(reports))]
    assert not [name for name, d in workers(docs).items() if selects(reports["spec"]["selector"], pod_labels(d))]
    service = find(docs, "Service", "task-processor-metrics")
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(reports))
    (policy_from,) = find(docs, "NetworkPolicy")["spec"]["ingress"][0]["from"]
    assert selects(policy_from["podSelector"], pod_labels(reports))
    assert env_of(the_container([reports], "Deployment", "my-reports-workers"))["WORKER_POOL"]["valueFrom"] == (
        WORKER_POOL_FROM_LABEL
    ), "the copy's workers learn their pool from the relabelled Pods"
    careless = hand_made(find(docs, "Deployment", "task-processor"), "reports", "worker", "reports")
    default = find(docs, "Deployment", "task-processor")
    assert selects(default["spec"]["selector"], pod_labels(careless))


# --- RBAC and NOTES -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["defaults", "pools"])
def test_the_role_is_exactly_the_rules_pools_need(helm: Helm, variant: str) -> None:
    """Namespace-wide on Deployments (find, read and scale any pool) and nothing broader: no write to a
    Deployment but its scale subresource, no watch, no delete; the Lease still by name. Pools do not change it."""
    role = find(helm.docs(*VARIANTS[variant]), "Role")
    assert role["rules"] == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["task-processor-autoscaler"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]


def test_notes_list_the_pools_and_how_to_pause_or_add_one(helm: Helm) -> None:
    result = helm.run("install", "tp", str(CHART), "--dry-run=client", *(f"--set={s}" for s in POOLS))
    assert result.returncode == 0, result.stderr
    notes = " ".join(result.stdout.partition("\nNOTES:\n")[2].split())  # wrapped lines joined
    for line in (
        "pool bulk: deployment/task-processor-bulk, queues bulk,default, 0..40 workers",
        "pool default: deployment/task-processor, queues default, 0..10 workers",
        "pool gpu: deployment/task-processor-gpu, queues render, 1..4 workers",
        "kubectl -n default annotate deployment task-processor task-processor.io/autoscale=paused",
        "kubectl -n default label deployment my-workers task-processor.io/pool=reports",
        "kubectl -n default annotate deployment my-workers task-processor.io/queues=reports,default",
        "app.kubernetes.io/component=worker-reports in its selector and Pod labels",
        "task-processor.io/worker=true",
    ):
        assert line in notes, f"NOTES lack {line!r}:\n{notes}"


# --- values the chart refuses -------------------------------------------------------------------------------------


def test_pool_names_fit_the_deployment_name(helm: Helm) -> None:
    """`<fullname>-<pool>` may have 63 characters, the most Kubernetes allows; one more is refused by name."""
    longest = "p" * (63 - len("task-processor-"))
    docs = helm.docs(f"pools.{longest}.queues={{a}}")
    assert f"task-processor-{longest}" in workers(docs).keys() & workers(docs, "PodDisruptionBudget").keys()
    result = helm.run("template", "x", str(CHART), f"--set=pools.{longest}p.queues={{a}}")
    assert result.returncode != 0
    assert f"pools.{longest}p: its Deployment would be named" in result.stderr, result.stderr
    assert "a pool name may have at most 48 characters" in result.stderr, result.stderr


def test_pool_names_fit_the_component_label(helm: Helm) -> None:
    """With a short fullname the label value `worker-<pool>` is the limit: 63 characters, so 56 for the name."""
    longest = "q" * 56
    docs = helm.docs("fullnameOverride=tp", f"pools.{longest}.queues={{a}}")
    assert pod_labels(find(docs, "Deployment", f"tp-{longest}"))[COMPONENT] == f"worker-{longest}"
    result = helm.run("template", "x", str(CHART), "--set=fullnameOverride=tp", f"--set=pools.{longest}q.queues={{a}}")
    assert result.returncode != 0
    assert "maxLength: got 57, want 56" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "setting",
    ["pools.bulk.max=3", "pools.bulk.queues=[]", "pools.default.queues=[]", "pools.bulk.queues=null"],
)
def test_a_pool_needs_queues(helm: Helm, setting: str) -> None:
    """Every pool but "default" (which takes config.queues) must list its queues, and none may list none."""
    result = helm.run("template", "x", str(CHART), f"--set-json={setting}")
    assert result.returncode != 0, f"helm accepted {setting}"
    pool = setting.split(".")[1]
    assert f"/pools/{pool}" in result.stderr, result.stderr
    assert "queues" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("pools.bulk.max=3", "missing property 'queues'"),
        ("pools.Bulk.queues={a}", "'Bulk' does not match pattern"),
        ("pools.bulk_2.queues={a}", "'bulk_2' does not match pattern"),
        ("pools.bulk.queues={bad:name}", "/pools/bulk/queues/0"),
        ("pools.bulk.queues={a},pools.bulk.targetWait=0", "/pools/bulk/targetWait"),
        ("pools.bulk.queues={a},pools.bulk.targetWait=never", "/pools/bulk/targetWait"),
        ("pools.default.targetWait=-5", "/pools/default/targetWait"),
        ("pools.bulk.queues={a},pools.bulk.max=0", "/pools/bulk/max"),
        ("pools.bulk.queues={a},pools.bulk.min=-1", "/pools/bulk/min"),
        ("pools.bulk.queues={a},pools.bulk.jobsPerWorker=0", "/pools/bulk/jobsPerWorker"),
        ("pools.bulk.queues={a},pools.bulk.replicas=two", "/pools/bulk/replicas"),
        ("pools.bulk.queues={a},pools.bulk.colour=red", "colour"),
        ("pools.gpu.queues={a},pools.gpu.image.registry=x", "registry"),
    ],
)
def test_the_schema_refuses_a_bad_pool_value(helm: Helm, setting: str, complaint: str) -> None:
    result = helm.run("template", "x", str(CHART), f"--set={setting}")
    assert result.returncode != 0, f"helm accepted {setting}"
    assert complaint in result.stderr, f"the error does not name {complaint!r}:\n{result.stderr}"


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        (("pools.default=null",), "pools is empty"),
        (("pools.bulk.queues={a}", "pools.bulk.min=5", "pools.bulk.max=2"), "pools.bulk: min (5) is above max (2)"),
        (("pools.bulk.queues={a}", "autoscale.min=3", "pools.bulk.max=2"), "pools.bulk: min (3) is above max (2)"),
        (("pools.producer.queues={a}",), 'pools.producer: its Deployment would be named "task-processor-producer"'),
        (("pools.dashboard.queues={a}",), "which is the dashboard's Deployment"),
        (("fullnameOverride=" + "w" * 60, "pools.abc.queues={a}"), "a pool name may have at most 2 characters"),
    ],
)
def test_the_chart_refuses_inconsistent_pool_values(helm: Helm, settings: tuple[str, ...], complaint: str) -> None:
    """One `fail` line per inconsistency, naming the value and the fix."""
    result = helm.run("template", "x", str(CHART), *(f"--set={s}" for s in settings))
    assert result.returncode != 0, f"helm accepted {settings}"
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert complaint in error, result.stderr
