"""The emulator authenticates and authorizes like a real API server: the chart's producer Role, applied with
kubectl, grants the autoscaler's ServiceAccount exactly its verbs, and everything else answers 403."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.kubeapi import KubeAPI
from tests.kubeapi.fixtures import kube_api, requires_helm, requires_kubectl  # noqa: F401
from tests.kubeapi.tools import REPO_ROOT

NS = "default"
SA = "task-processor-producer"
USER = f"system:serviceaccount:{NS}:{SA}"
WORKER = "task-processor"
LEASE = "task-processor-autoscaler"
CHART = REPO_ROOT / "charts" / "task-processor"


def _refusal(call: Callable[[], Any]) -> dict[str, Any]:
    """The Status of the ApiException `call` raises."""
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.body is not None
    return {**json.loads(caught.value.body), "http": caught.value.status}


class _Object(Protocol):
    """What the official client's models of objects have in common."""

    @property
    def metadata(self) -> client.V1ObjectMeta | None: ...


def _name(obj: _Object) -> str:
    assert obj.metadata is not None
    assert obj.metadata.name is not None
    return obj.metadata.name


def _replicas(scale: client.V1Scale) -> int | None:
    assert scale.spec is not None
    return scale.spec.replicas


def _holder(lease: client.V1Lease) -> str | None:
    assert lease.spec is not None
    return lease.spec.holder_identity


def _forbidden(verb: str, resource: str, group: str, name: str | None = None, kind: str | None = None) -> str:
    plural = kind or resource.split("/")[0]
    qualified = f"{plural}.{group}" if group else plural
    subject = f'{qualified} "{name}"' if name else qualified
    return (
        f'{subject} is forbidden: User "{USER}" cannot {verb} resource "{resource}" in API group "{group}" '
        f'in the namespace "{NS}"'
    )


@pytest.fixture
def producer_token(kube_api: KubeAPI) -> str:  # noqa: F811
    """The chart's producer ServiceAccount, Role and RoleBinding, rendered by helm and applied by kubectl, and
    the worker Deployment, another Deployment, a worker Pod, the Lease and a Secret; the account's token."""
    rendered = kube_api.helm("template", "task-processor", str(CHART), "--namespace", NS, check=True).stdout
    wanted = {"ServiceAccount", "Role", "RoleBinding"}
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in wanted]
    assert sorted(d["kind"] for d in docs) == sorted(wanted)
    kube_api.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs), check=True)
    kube_api.create_deployment(WORKER)
    kube_api.create_deployment("other")
    kube_api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w1", "labels": {"app": "w"}}})
    kube_api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis"}})
    kube_api.create(
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "someone-elses"}, "spec": {}}
    )
    return kube_api.service_account_token(SA, NS)


@requires_helm
@requires_kubectl
def test_the_producer_role_grants_its_verbs(kube_api: KubeAPI, producer_token: str) -> None:  # noqa: F811
    api = kube_api.api_client(producer_token)
    apps, core, leases = client.AppsV1Api(api), client.CoreV1Api(api), client.CoordinationV1Api(api)

    assert _name(apps.read_namespaced_deployment(WORKER, NS)) == WORKER
    scaled = apps.patch_namespaced_deployment_scale(WORKER, NS, {"spec": {"replicas": 3}})
    assert _replicas(scaled) == 3
    # Pools: any Deployment of the namespace may be a pool (ops label it with kubectl), found by a list.
    assert sorted(_name(d) for d in apps.list_namespaced_deployment(NS).items) == ["other", WORKER]
    assert _replicas(apps.patch_namespaced_deployment_scale("other", NS, {"spec": {"replicas": 2}})) == 2
    assert [_name(p) for p in core.list_namespaced_pod(NS, label_selector="app=w").items] == ["w1"]
    cost = {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-1000"}}}
    patched = core.patch_namespaced_pod("w1", NS, cost)
    assert patched.metadata is not None
    assert patched.metadata.annotations == cost["metadata"]["annotations"]
    body = client.V1Lease(metadata=client.V1ObjectMeta(name=LEASE), spec=client.V1LeaseSpec(holder_identity="a"))
    created = leases.create_namespaced_lease(NS, body)
    assert created.spec is not None
    created.spec.holder_identity = "b"
    assert _holder(leases.replace_namespaced_lease(LEASE, NS, created)) == "b"
    assert _holder(leases.read_namespaced_lease(LEASE, NS)) == "b"
    assert kube_api.replicas(WORKER) == 3


@requires_helm
@requires_kubectl
def test_the_producer_role_refuses_everything_else(kube_api: KubeAPI, producer_token: str) -> None:  # noqa: F811
    api = kube_api.api_client(producer_token)
    apps, core, leases = client.AppsV1Api(api), client.CoreV1Api(api), client.CoordinationV1Api(api)
    lease_body = client.V1Lease(metadata=client.V1ObjectMeta(name="someone-elses"))

    cases: list[tuple[Callable[[], Any], str, dict[str, str]]] = [
        (
            lambda: apps.delete_namespaced_deployment("other", NS),
            _forbidden("delete", "deployments", "apps", "other"),
            {"name": "other", "group": "apps", "kind": "deployments"},
        ),
        (
            lambda: apps.replace_namespaced_deployment_scale(
                WORKER,
                NS,
                {"metadata": {"name": WORKER}, "spec": {"replicas": 2}},  # type: ignore[arg-type]  # dict body
            ),
            _forbidden("update", "deployments/scale", "apps", WORKER, "deployments"),
            {"name": WORKER, "group": "apps", "kind": "deployments"},
        ),
        (
            lambda: apps.list_deployment_for_all_namespaces(),
            _forbidden("list", "deployments", "apps").replace(f' in the namespace "{NS}"', " at the cluster scope"),
            {"group": "apps", "kind": "deployments"},
        ),
        (
            lambda: apps.patch_namespaced_deployment(WORKER, NS, {"spec": {"replicas": 9}}),
            _forbidden("patch", "deployments", "apps", WORKER),
            {"name": WORKER, "group": "apps", "kind": "deployments"},
        ),
        (
            lambda: core.delete_namespaced_pod("w1", NS),
            _forbidden("delete", "pods", "", "w1"),
            {"name": "w1", "group": "", "kind": "pods"},
        ),
        (
            lambda: core.read_namespaced_secret("redis", NS),
            _forbidden("get", "secrets", "", "redis"),
            {"name": "redis", "group": "", "kind": "secrets"},
        ),
        (
            lambda: leases.replace_namespaced_lease("someone-elses", NS, lease_body),
            _forbidden("update", "leases", "coordination.k8s.io", "someone-elses"),
            {"name": "someone-elses", "group": "coordination.k8s.io", "kind": "leases"},
        ),
        (
            lambda: leases.list_namespaced_lease(NS),
            _forbidden("list", "leases", "coordination.k8s.io"),
            {"group": "coordination.k8s.io", "kind": "leases"},
        ),
        (
            lambda: core.list_namespaced_pod("kube-system"),
            _forbidden("list", "pods", "").replace(f'namespace "{NS}"', 'namespace "kube-system"'),
            {"group": "", "kind": "pods"},
        ),
    ]
    for call, message, details in cases:
        refused = _refusal(call)
        assert (refused["http"], refused["code"], refused["reason"]) == (403, 403, "Forbidden"), message
        assert refused["message"] == message
        assert refused["details"] == details

    # Nothing refused changed anything.
    assert kube_api.replicas("other") == 1
    assert kube_api.replicas(WORKER) == 1
    assert kube_api.get("pod", "w1") is not None
    untouched = kube_api.get("lease", "someone-elses")
    assert untouched is not None
    assert untouched["spec"] == {}


@requires_helm
@requires_kubectl
def test_kubectl_with_the_producer_token(kube_api: KubeAPI, producer_token: str) -> None:  # noqa: F811
    kubeconfig = kube_api.kubeconfig_for(producer_token)
    allowed = kube_api.kubectl(f"--kubeconfig={kubeconfig}", "get", "pods", "-o", "name")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.split() == ["pod/w1"]
    refused = kube_api.kubectl(f"--kubeconfig={kubeconfig}", "get", "secrets")
    assert refused.returncode != 0
    assert _forbidden("list", "secrets", "") in refused.stderr
    # The admin kubeconfig (system:masters) may do what the Role does not grant.
    assert kube_api.kubectl("get", "secrets", "-o", "name", check=True).stdout.split() == ["secret/redis"]
    kube_api.kubectl("delete", "pod", "w1", check=True)
    assert kube_api.get("pod", "w1") is None


def test_a_missing_or_unknown_token_is_unauthorized(kube_api: KubeAPI) -> None:  # noqa: F811
    kube_api.create_deployment(WORKER)
    for token in ("not-a-token", ""):
        apps = client.AppsV1Api(kube_api.api_client(token))
        refused = _refusal(partial(apps.read_namespaced_deployment, WORKER, NS))
        assert (refused["http"], refused["reason"], refused["message"]) == (401, "Unauthorized", "Unauthorized")

    # A ServiceAccount's token is good only while the ServiceAccount exists.
    token = kube_api.service_account_token("gone", NS)
    version = client.VersionApi(kube_api.api_client(token))
    assert _refusal(version.get_code)["http"] == 401
    kube_api.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "gone"}})
    assert version.get_code().git_version == "v1.37.1"  # discovery: system:discovery, bound to everyone
    refused = _refusal(lambda: client.AppsV1Api(kube_api.api_client(token)).read_namespaced_deployment(WORKER, NS))
    assert refused["http"] == 403
    assert refused["message"].endswith(
        'User "system:serviceaccount:default:gone" cannot get resource "deployments" in API group "apps" '
        'in the namespace "default"'
    )


def _rbac(kind: str, name: str, body: dict[str, Any], namespace: str | None = NS) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta, **body}


def test_cluster_roles_wildcards_groups_users_and_resource_names(kube_api: KubeAPI) -> None:  # noqa: F811
    """A RoleBinding may grant a ClusterRole in its own namespace only; `*` and `*/scale` match; Group and
    User subjects count; `resourceNames` limits requests that name an object, and a list by name."""
    kube_api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "elsewhere"}})
    for ns in (NS, "elsewhere"):
        kube_api.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}, namespace=ns)
        kube_api.create_deployment(WORKER, namespace=ns)
    scale_reader = {"rules": [{"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["get"]}]}
    kube_api.create(_rbac("ClusterRole", "scale-reader", scale_reader, None))
    binding = {
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "scale-reader"},
        "subjects": [{"kind": "Group", "name": "system:serviceaccounts:default"}],
    }
    kube_api.create(_rbac("RoleBinding", "read-scales", binding))
    lease_by_name = {
        "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["*"], "resourceNames": ["x"], "verbs": ["*"]}]
    }
    kube_api.create(_rbac("Role", "lease-x", lease_by_name))
    user_binding = {
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lease-x"},
        "subjects": [{"kind": "User", "name": "system:serviceaccount:default:reader"}],
    }
    kube_api.create(_rbac("RoleBinding", "lease-x", user_binding))

    apps = client.AppsV1Api(kube_api.api_client(kube_api.service_account_token("reader", NS)))
    assert _replicas(apps.read_namespaced_deployment_scale(WORKER, NS)) == 1
    assert _refusal(lambda: apps.read_namespaced_deployment_scale(WORKER, "elsewhere"))["http"] == 403
    assert _refusal(lambda: apps.read_namespaced_deployment(WORKER, NS))["http"] == 403
    other = client.AppsV1Api(kube_api.api_client(kube_api.service_account_token("reader", "elsewhere")))
    assert _refusal(lambda: other.read_namespaced_deployment_scale(WORKER, "elsewhere"))["http"] == 403

    leases = client.CoordinationV1Api(apps.api_client)
    x = client.V1Lease(metadata=client.V1ObjectMeta(name="x"), spec=client.V1LeaseSpec())
    refused = _refusal(lambda: leases.create_namespaced_lease(NS, x))  # a create names no object in its URL
    assert refused["message"] == (
        'leases.coordination.k8s.io is forbidden: User "system:serviceaccount:default:reader" cannot create '
        'resource "leases" in API group "coordination.k8s.io" in the namespace "default"'
    )
    kube_api.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "x"}, "spec": {}})
    assert _name(leases.read_namespaced_lease("x", NS)) == "x"
    assert [_name(i) for i in leases.list_namespaced_lease(NS, field_selector="metadata.name=x").items] == ["x"]
    assert _refusal(lambda: leases.list_namespaced_lease(NS))["http"] == 403
    assert _refusal(lambda: leases.delete_collection_namespaced_lease(NS))["http"] == 403
    leases.delete_namespaced_lease("x", NS)
    assert kube_api.get("lease", "x") is None
