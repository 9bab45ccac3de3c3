"""The resource types the emulator serves, and the discovery documents kubectl needs to find them.

Only what this project touches is declared; anything else answers 404 like an API server without
that resource. Add a line to `RESOURCES` to serve another namespaced or cluster-wide type generically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SERVER_VERSION = {
    "major": "1",
    "minor": "37",
    "emulationMajor": "1",
    "emulationMinor": "37",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "36",
    "gitVersion": "v1.37.1",
    "gitCommit": "f78e7222d4c0e4b1a5a2c3e8a0c2c1d8f6a1b2c3",
    "gitTreeState": "clean",
    "buildDate": "2026-11-12T00:00:00Z",
    "goVersion": "go1.25.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}
"""What `/version` answers: the same minor as the pinned kubectl, so kubectl prints no skew warning."""

_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourceType:
    """One served resource: its URL coordinates and the names discovery advertises."""

    group: str  # "" for the core group (served under /api/v1)
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = field(default=())
    returns_deleted: bool = False  # DELETE answers the object itself (pods...) rather than a Status

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """How API errors name the type, e.g. `deployments.apps`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def key(self) -> str:
        """The resource key kmock's `ObjectsArray` understands, e.g. `apps/v1/deployments`."""
        return f"{self.group}/{self.version}/{self.plural}" if self.group else f"{self.version}/{self.plural}"


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType(
        "",
        "v1",
        "namespaces",
        "Namespace",
        namespaced=False,
        short_names=("ns",),
        subresources=("status",),
    ),
    ResourceType(
        "",
        "v1",
        "pods",
        "Pod",
        short_names=("po",),
        subresources=("status",),
        categories=("all",),
        returns_deleted=True,
    ),
    ResourceType("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    ResourceType("", "v1", "secrets", "Secret"),
    ResourceType(
        "",
        "v1",
        "services",
        "Service",
        short_names=("svc",),
        subresources=("status",),
        categories=("all",),
    ),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    ResourceType("", "v1", "events", "Event", short_names=("ev",)),
    ResourceType(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        short_names=("deploy",),
        subresources=("scale", "status"),
        categories=("all",),
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
)


def find(group: str | None, version: str | None, plural: str | None) -> ResourceType | None:
    for rt in RESOURCES:
        if (rt.group, rt.version, rt.plural) == (group, version, plural):
            return rt
    return None


def by_kind(api_version: str, kind: str) -> ResourceType:
    for rt in RESOURCES:
        if (rt.api_version, rt.kind) == (api_version, kind):
            return rt
    raise KeyError(f"the emulator serves no {kind} in {api_version}")


def groups() -> dict[str, list[str]]:
    """Named API groups (the core group excluded) and their versions."""
    result: dict[str, list[str]] = {}
    for rt in RESOURCES:
        if rt.group and rt.version not in result.setdefault(rt.group, []):
            result[rt.group].append(rt.version)
    return result


def api_versions(host: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
    }


def _group_doc(name: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list() -> dict[str, Any]:
    docs = [_group_doc(name, versions) for name, versions in groups().items()]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": docs}


def api_group(name: str) -> dict[str, Any] | None:
    versions = groups().get(name)
    if versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(name, versions)}


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """Legacy (non-aggregated) discovery, which kubectl falls back to; `scale` is an autoscaling/v1 Scale."""
    entries: list[dict[str, Any]] = []
    for rt in RESOURCES:
        if (rt.group, rt.version) != (group, version):
            continue
        entries.append(
            {
                "name": rt.plural,
                "singularName": rt.kind.lower(),
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": _VERBS,
                "shortNames": list(rt.short_names),
                "categories": list(rt.categories),
            }
        )
        for sub in rt.subresources:
            entry = {
                "name": f"{rt.plural}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "scale":
                entry.update(group="autoscaling", version="v1", kind="Scale")
            entries.append(entry)
    if not entries:
        return None
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_v3_root() -> dict[str, Any]:
    """The OpenAPI v3 index: enough for kubectl to see that the server validates fields itself, so that
    `kubectl apply/create/replace` need no `--validate=false` and no client-side schema."""
    gvs = dict.fromkeys(_gv_path(rt.group, rt.version) for rt in RESOURCES)
    return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash=kubeapi"} for gv in gvs}}


def openapi_v3_group_version(gv_path: str) -> dict[str, Any] | None:
    """Operations (no schemas) carrying the GVK extension and the query parameters kubectl looks for."""
    params = [
        {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        for name in ("dryRun", "fieldManager", "fieldValidation")
    ]
    paths: dict[str, Any] = {}
    for rt in RESOURCES:
        if _gv_path(rt.group, rt.version) != gv_path:
            continue
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        base = f"/{gv_path}{'/namespaces/{namespace}' if rt.namespaced else ''}/{rt.plural}"

        def op(verb: str, gvk: dict[str, str] = gvk, kind: str = rt.kind) -> dict[str, Any]:
            return {
                "operationId": f"{verb}{kind}",
                "parameters": params,
                "responses": {},
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": gvk,
            }

        paths[base] = {"post": op("post")}
        paths[base + "/{name}"] = {"put": op("put"), "patch": op("patch")}
    if not paths:
        return None
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kubeapi emulator)", "version": "v1.37.1"},
        "paths": paths,
        "components": {"schemas": {}},
    }
