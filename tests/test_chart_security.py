"""The Helm chart's security, read from what helm renders: every Pod and container locked down (non-root, read-only
root filesystem, no capabilities, seccomp) and the check seeing a weakened setting; the autoscaler's Role granting
exactly the verbs of the README's RBAC table, bound to the producer's ServiceAccount, and no API access without it.

The other chart modules are listed in tests/test_chart.py.
"""

from __future__ import annotations

import pytest

from tests.chart import VARIANTS, Helm, find, pod_specs
from tests.chart_checks import readme_table, security_problems, ticked


def readme_rbac() -> dict[tuple[str, str], set[str]]:
    rules = {}
    for cells in readme_table("| API group | resource | verbs |"):
        group = ticked(cells[0])[0]
        rules[("" if group == '""' else group, ticked(cells[1])[0])] = set(ticked(cells[2]))
    return rules


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_and_container_is_locked_down(helm: Helm, variant: str) -> None:
    docs = helm.docs(*VARIANTS[variant])
    assert list(pod_specs(docs)), "no Pods rendered"
    problems = security_problems(docs)
    assert not problems, "insecure pod settings:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("worker.securityContext.readOnlyRootFilesystem=false", "Deployment/task-processor container worker"),
        ("producer.securityContext.allowPrivilegeEscalation=true", "Deployment/task-processor-producer"),
        ("redis.podSecurityContext.seccompProfile.type=Unconfined", "StatefulSet/task-processor-redis"),
        ("dashboard.securityContext.capabilities.drop=null", "Deployment/task-processor-dashboard"),
    ],
)
def test_the_security_check_sees_a_dropped_setting(helm: Helm, setting: str, expected: str) -> None:
    """The check reads the rendered values: weakening one through values makes it fail, naming the object."""
    problems = security_problems(helm.docs("dashboard.enabled=true", setting))
    assert any(expected in p for p in problems), f"{setting} went unnoticed: {problems}"


# --- RBAC -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("override", [None, "tp-workers"])
def test_the_role_grants_exactly_the_readme_verbs(helm: Helm, override: str | None) -> None:
    docs = helm.docs(*([f"fullnameOverride={override}"] if override else []))
    worker = override or "task-processor"
    role = find(docs, "Role")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        flat = [*rule["apiGroups"], *rule["resources"], *rule["verbs"], *rule.get("resourceNames", [])]
        assert "*" not in flat, f"wildcard in {rule}"
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, f"unexpected fields in {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    wanted = readme_rbac()
    differences = {
        key: {"granted": sorted(granted.get(key, ())), "README": sorted(wanted.get(key, ()))}
        for key in granted.keys() | wanted.keys()
        if granted.get(key) != wanted.get(key)
    }
    assert not differences, f"the Role differs from the README's RBAC table (Running on Kubernetes): {differences}"

    def names(group: str, resource: str, verb: str) -> list[list[str] | None]:
        return [
            rule.get("resourceNames")
            for rule in role["rules"]
            if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        ]

    # Pools are whichever Deployments carry the pool label, some added with kubectl alone: no name to limit to.
    assert names("apps", "deployments", "list") == [None]
    assert names("apps", "deployments", "get") == [None]
    assert names("apps", "deployments/scale", "patch") == [None]
    assert names("coordination.k8s.io", "leases", "get") == [[f"{worker}-autoscaler"]]
    assert names("coordination.k8s.io", "leases", "update") == [[f"{worker}-autoscaler"]]
    assert names("coordination.k8s.io", "leases", "create") == [None], "create cannot be limited by resourceNames"

    binding = find(docs, "RoleBinding")
    producer = find(docs, "Deployment", f"{worker}-producer")["spec"]["template"]["spec"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": producer["serviceAccountName"], "namespace": "default"}
    ]
    assert find(docs, "ServiceAccount")["metadata"]["name"] == producer["serviceAccountName"]


def test_no_autoscaler_means_no_api_access(helm: Helm) -> None:
    kinds = {d["kind"] for d in helm.docs("autoscale.enabled=false")}
    assert not kinds & {"Role", "RoleBinding", "ServiceAccount"}, kinds
