"""The autoscaler's whole life under the Role the chart renders, over HTTP with the emulator enforcing RBAC:
every request it makes is allowed, every rule of the Role is used, and without any one rule the API answers
403 and the autoscaler names what it was refused. A verb missing from the chart fails here, not on a cluster."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import redis

from producer import Producer, Task
from producer.commands.autoscale import build
from producer.scaling.fleet import Fleet
from producer.scaling.kube.client import PAUSE_ANNOTATION, KubeClient
from producer.scaling.kube.deployment import DELETION_COST, IDLE_COST
from producer.scaling.report import LoopState
from task_processor.observe import list_workers
from task_processor.settings import Settings
from tests.chart import Helm
from tests.conftest import Proc, running, wait_for
from tests.kubeapi import requestinfo
from tests.kubeapi.fixtures import kube_api  # noqa: F401
from tests.kubeapi.server import HELM, KubeAPI, RecordedRequest
from tests.kubelet import Kubelet, kubelet  # noqa: F401

DEPLOYMENT = "task-processor"
LEASE = f"{DEPLOYMENT}-autoscaler"
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding")
AUTOSCALE = Settings(autoscale_min=0, autoscale_max=3, jobs_per_worker=4, autoscale_interval=0.1, scale_down_delay=1.0)

Grant = tuple[str, str, str]
"""(API group, resource, verb): one permission, as a Role's rules spell it."""


@pytest.fixture(scope="module")
def chart_rbac(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The ServiceAccount, Role and RoleBinding of the chart with its default values."""
    if not HELM.exists():
        pytest.skip(f"{HELM} missing: run scripts/k8s-tools")
    docs = Helm(tmp_path_factory.mktemp("helm-home")).docs()
    return [doc for doc in docs if doc["kind"] in RBAC_KINDS]


def install(api: KubeAPI, docs: list[dict[str, Any]]) -> str:
    """Create the RBAC objects as the admin; return a token of the chart's ServiceAccount."""
    for doc in docs:
        api.create(doc)
    account = next(doc for doc in docs if doc["kind"] == "ServiceAccount")["metadata"]["name"]
    return api.service_account_token(account, "default")


def role_grants(docs: list[dict[str, Any]]) -> set[Grant]:
    role = next(doc for doc in docs if doc["kind"] == "Role")
    return {grant for rule in role["rules"] for grant in grants(rule)}


def grants(rule: dict[str, Any]) -> set[Grant]:
    return {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def grant_of(request: RecordedRequest) -> Grant:
    info = requestinfo.parse(request.method, request.path, request.query)
    resource = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
    return (info.group, resource, info.verb)


def sent_with(api: KubeAPI, token: str) -> list[RecordedRequest]:
    return [r for r in api.requests() if r.headers.get("Authorization") == f"Bearer {token}"]


def autoscaler_for(api: KubeAPI, token: str, redis_url: str, settings: Settings = AUTOSCALE) -> Fleet:
    """The autoscaler as ``task-producer autoscale`` builds it, Lease included, with the ServiceAccount's token."""
    return build(replace(settings, redis_url=redis_url), KubeClient(api.api_client(token), "default"))


@pytest.mark.timeout(180)
def test_the_whole_life_runs_under_the_charts_role(
    kube_api: KubeAPI,  # noqa: F811
    kubelet: Kubelet,  # noqa: F811
    chart_rbac: list[dict[str, Any]],
    producer: Producer,
    conn: redis.Redis,
    redis_url: str,
) -> None:
    token = install(kube_api, chart_rbac)
    kube_api.clear_requests()
    with running(autoscaler_for(kube_api, token, redis_url)) as autoscaler:
        # Scale up from zero for a burst, then in to zero once it is done: deletion costs first.
        jobs = producer.enqueue_many(Task("worker.examples.record", ("ran", str(i), 0.2)) for i in range(12))
        wait_for(lambda: kube_api.replicas(DEPLOYMENT) == AUTOSCALE.autoscale_max, timeout=30, what="scale-up")
        wait_for(lambda: len(list_workers(conn)) == AUTOSCALE.autoscale_max, timeout=30, what="every worker up")
        producer.wait(jobs, timeout=60)
        wait_for(lambda: kube_api.replicas(DEPLOYMENT) == 0, timeout=30, what="scale-in to zero")
        cost_patches = [r for r in kube_api.requests("PATCH", "/pods/") if r.status == 200]
        assert {r.body["metadata"]["annotations"][DELETION_COST] for r in cost_patches} == {IDLE_COST}

        # Ops pause it: work arrives and nothing is written; unpaused, it scales for that work.
        kube_api.patch("deployments", DEPLOYMENT, {"metadata": {"annotations": {PAUSE_ANNOTATION: "paused"}}})
        wait_for(lambda: autoscaler.mode == LoopState.PAUSED, timeout=15, what="the paused state")
        job = producer.enqueue("worker.examples.noop")
        writes = len(kube_api.requests("PATCH", "/scale$"))
        reads = len(kube_api.requests("GET", f"/deployments/{DEPLOYMENT}$"))
        wait_for(lambda: len(kube_api.requests("GET", f"/deployments/{DEPLOYMENT}$")) > reads + 2, timeout=15)
        assert len(kube_api.requests("PATCH", "/scale$")) == writes
        assert kube_api.replicas(DEPLOYMENT) == 0
        kube_api.patch("deployments", DEPLOYMENT, {"metadata": {"annotations": {PAUSE_ANNOTATION: None}}})
        producer.wait([job], timeout=60)

    lease = kube_api.get("leases", LEASE)
    assert lease is not None
    assert lease["spec"].get("holderIdentity") is None, "the Lease is released on stop"

    sent = sent_with(kube_api, token)
    refused = [(r.method, r.path, r.status) for r in sent if r.status in (401, 403)]
    assert not refused, refused
    assert {grant_of(r) for r in sent} == role_grants(chart_rbac), "every rule used, nothing else asked for"


def rule_ids(rules: list[dict[str, Any]]) -> list[str]:
    return ["{}:{}:{}".format(",".join(r["apiGroups"]), ",".join(r["resources"]), ",".join(r["verbs"])) for r in rules]


CHART_RULES = 6
"""Rules in the chart's Role; test_each_rule_is_needed covers each by index, checked against the render."""


@pytest.mark.parametrize("dropped", range(CHART_RULES))
@pytest.mark.timeout(60)
def test_each_rule_is_needed(
    kube_api: KubeAPI,  # noqa: F811
    chart_rbac: list[dict[str, Any]],
    spawn: Callable[..., Proc],
    dropped: int,
) -> None:
    """A scale-in from two Pods to zero, Lease and all, with one rule of the Role removed: refused, and named."""
    docs = copy.deepcopy(chart_rbac)
    role = next(doc for doc in docs if doc["kind"] == "Role")
    assert len(role["rules"]) == CHART_RULES, rule_ids(role["rules"])
    rule = role["rules"].pop(dropped)
    token = install(kube_api, docs)
    deployment = kube_api.create_deployment(DEPLOYMENT, replicas=2)
    labels = deployment["spec"]["selector"]["matchLabels"]
    for name in ("task-processor-5d8f7c9b6-abcde", "task-processor-5d8f7c9b6-fghij"):
        spec = {"containers": [{"name": "worker", "image": "task-processor"}]}
        kube_api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec})
    kube_api.clear_requests()
    removed = grants(rule)

    # `task-producer autoscale` itself, with the ServiceAccount's kubeconfig: its log is what ops would read.
    env = {
        "WORKER_NAMESPACE": "default",
        "AUTOSCALE_MIN": "0",
        "AUTOSCALE_MAX": str(AUTOSCALE.autoscale_max),
        "AUTOSCALE_INTERVAL": "0.1",
        "AUTOSCALE_SCALE_DOWN_DELAY": "0.2",
        "LOG_FORMAT": "json",
    }
    kubeconfig = str(kube_api.kubeconfig_for(token))
    autoscaler = spawn("task-producer", "autoscale", "--kubeconfig", kubeconfig, extra_env=env)
    refused = wait_for(
        lambda: [grant_of(r) for r in sent_with(kube_api, token) if r.status == 403],
        timeout=30,
        what=f"a 403 without the rule {rule_ids([rule])[0]}",
    )
    assert set(refused) <= removed, (refused, removed)
    _, resource, verb = refused[0]
    named = f"forbidden to {verb} {resource.split('/')[0]}"
    wait_for(lambda: named in autoscaler.output(), timeout=15, what=f"the line {named!r}")
    assert autoscaler.popen.poll() is None, "the autoscaler must keep trying, not exit"
