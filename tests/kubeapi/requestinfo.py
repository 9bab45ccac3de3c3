"""What a request is about, as the API server's `RequestInfoFactory` reads it from the method, path and query:
the attributes both routing and authorization decide on."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_RESOURCE_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$"
)
_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "GET": "get", "HEAD": "get"}


@dataclass(frozen=True)
class RequestInfo:
    """A resource request (`resource` set) or a non-resource one (`path` only, e.g. /version)."""

    verb: str
    path: str
    group: str = ""
    version: str = ""
    namespace: str | None = None
    resource: str = ""
    subresource: str | None = None
    name: str | None = None
    selected_name: str | None = None  # a list or watch's `metadata.name=` field selector

    @property
    def is_resource(self) -> bool:
        return bool(self.resource)

    @property
    def rbac_name(self) -> str | None:
        """The name `resourceNames` are matched against: a list or watch of one object by its name counts."""
        return self.name if self.name is not None else self.selected_name

    @property
    def rbac_namespace(self) -> str | None:
        """A Namespace (and its subresources) is in its own namespace, for RBAC."""
        return self.name if self.resource == "namespaces" and self.name else self.namespace


def _is_true(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _name_from_field_selector(selector: str | None) -> str | None:
    """A list or watch of one object by `metadata.name=x` is authorized as if it named `x`."""
    for term in (selector or "").split(","):
        for op in ("==", "="):
            key, sep, value = term.partition(op)
            if sep and key.strip() == "metadata.name" and not key.endswith("!"):
                return value.strip()
    return None


def parse(method: str, path: str, params: Mapping[str, str]) -> RequestInfo:
    verb = _VERBS.get(method, method.lower())
    match = _RESOURCE_PATH.match(path)
    if match is None:  # a non-resource URL: its verb is the method's name
        return RequestInfo(verb=method.lower(), path=path)
    group = "" if match["core"] else match["group"]
    version = match["core"] or match["version"]
    ns, plural, name, sub = match["ns"], match["plural"], match["name"], match["sub"]
    if ns and name is None and plural in _NAMESPACE_SUBRESOURCES:  # /api/v1/namespaces/<ns>/status
        ns, plural, name, sub = None, "namespaces", ns, plural
    if name is None and verb == "get":
        verb = "watch" if _is_true(params.get("watch")) else "list"
    elif name is None and verb == "delete":
        verb = "deletecollection"
    elif verb == "get" and _is_true(params.get("watch")):
        verb = "watch"
    selected = _name_from_field_selector(params.get("fieldSelector")) if verb in ("list", "watch") else None
    return RequestInfo(
        verb=verb,
        path=path,
        group=group,
        version=version,
        namespace=ns,
        resource=plural,
        subresource=sub,
        name=name,
        selected_name=selected,
    )
