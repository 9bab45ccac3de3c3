"""Authorization with the RBAC authorizer's semantics, against the Role/RoleBinding and ClusterRole/
ClusterRoleBinding objects in the store (k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac).

A request is allowed when some rule of some role bound to the user allows it; `system:masters` is allowed
everything before RBAC is asked. `BOOTSTRAP_POLICY` is what a fresh cluster has: discovery for everyone
authenticated, and `cluster-admin`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tests.kubeapi import resources
from tests.kubeapi.auth import User
from tests.kubeapi.requestinfo import RequestInfo
from tests.kubeapi.status import forbidden
from tests.kubeapi.store import ObjectStore

RBAC = "rbac.authorization.k8s.io"
_DISCOVERY_URLS = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*"]
_PUBLIC_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules}


def _cluster_role_binding(name: str, *groups: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": group} for group in groups],
    }


BOOTSTRAP_POLICY: tuple[dict[str, Any], ...] = (
    _cluster_role(
        "cluster-admin",
        [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}],
    ),
    _cluster_role_binding("cluster-admin", "system:masters"),
    _cluster_role("system:discovery", [{"nonResourceURLs": [*_DISCOVERY_URLS, *_PUBLIC_URLS], "verbs": ["get"]}]),
    _cluster_role_binding("system:discovery", "system:authenticated"),
    _cluster_role("system:public-info-viewer", [{"nonResourceURLs": _PUBLIC_URLS, "verbs": ["get"]}]),
    _cluster_role_binding("system:public-info-viewer", "system:authenticated", "system:unauthenticated"),
    _cluster_role(
        "system:basic-user",
        [
            {
                "apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                "verbs": ["create"],
            }
        ],
    ),
    _cluster_role_binding("system:basic-user", "system:authenticated"),
)


def _rbac_type(plural: str) -> resources.ResourceType:
    rt = resources.find(RBAC, "v1", plural)
    assert rt is not None, f"resources.py must serve {plural}"
    return rt


def _applies_to(subject: dict[str, Any], user: User, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{namespace}:{name}"
    return False


def _bound_rules(user: User, namespace: str | None, store: ObjectStore, errors: list[str]) -> Iterator[dict[str, Any]]:
    """The rules of every role bound to `user`: cluster-wide first, then in the request's namespace.
    A binding to a missing role adds an error (the server appends them to its refusal)."""
    bindings = [("", b) for b in store.list(_rbac_type("clusterrolebindings"), None)["items"]]
    if namespace:
        bindings += [(namespace, b) for b in store.list(_rbac_type("rolebindings"), namespace)["items"]]
    for binding_namespace, binding in bindings:
        if not any(_applies_to(s, user, binding_namespace) for s in binding.get("subjects") or []):
            continue
        ref = binding.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole":
            role, what = store.find(_rbac_type("clusterroles"), None, ref.get("name", "")), "clusterrole"
        else:
            role, what = store.find(_rbac_type("roles"), binding_namespace, ref.get("name", "")), "role"
        if role is None:
            errors.append(f'{what}.{RBAC} "{ref.get("name")}" not found')
            continue
        yield from role.get("rules") or []


def _resource_matches(rules_resources: list[str], resource: str, subresource: str | None) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    return any(r in ("*", combined) or (subresource and r == f"*/{subresource}") for r in rules_resources)


def _url_matches(urls: list[str], path: str) -> bool:
    return any(u == "*" or u == path or (u.endswith("*") and path.startswith(u[:-1])) for u in urls)


def allows(rule: dict[str, Any], info: RequestInfo) -> bool:
    """One PolicyRule against one request (`RuleAllows`)."""
    verbs = rule.get("verbs") or []
    if "*" not in verbs and info.verb not in verbs:
        return False
    if not info.is_resource:
        return _url_matches(rule.get("nonResourceURLs") or [], info.path)
    groups, names = rule.get("apiGroups") or [], rule.get("resourceNames") or []
    return (
        ("*" in groups or info.group in groups)
        and _resource_matches(rule.get("resources") or [], info.resource, info.subresource)
        and (not names or info.rbac_name in names)
    )


def _refusal(user: User, info: RequestInfo) -> str:
    """The authorizer's reason, worded as the API server's `forbiddenMessage`."""
    if not info.is_resource:
        return f'User "{user.name}" cannot {info.verb} path "{info.path}"'
    resource = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
    where = f'in the namespace "{info.rbac_namespace}"' if info.rbac_namespace else "at the cluster scope"
    return f'User "{user.name}" cannot {info.verb} resource "{resource}" in API group "{info.group}" {where}'


def authorize(user: User, info: RequestInfo, store: ObjectStore) -> None:
    """Return when the request is allowed; else raise the 403 the API server answers."""
    if user.is_admin:
        return
    errors: list[str] = []
    if any(allows(rule, info) for rule in _bound_rules(user, info.rbac_namespace, store, errors)):
        return
    reason = _refusal(user, info)
    if errors:
        reason += ": RBAC: " + (errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")
    raise forbidden(info.group, info.resource, info.rbac_name, reason)
