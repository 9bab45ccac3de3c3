"""Which store operation a resource request is, and the discovery documents; the answers as responses."""

from __future__ import annotations

from typing import Any, Literal

import aiohttp.web

from tests.kubeapi import resources, scale, tables, watch
from tests.kubeapi.requestinfo import RequestInfo
from tests.kubeapi.resources import ResourceType
from tests.kubeapi.status import ApiError
from tests.kubeapi.store import ObjectStore

_BINARY_TYPES = ("application/vnd.kubernetes.protobuf", "application/cbor")


def is_binary(content_type: str) -> bool:
    """kubectl's typed clients send protobuf first; the emulator speaks JSON only (415)."""
    return content_type in _BINARY_TYPES


def _not_served(path: str) -> ApiError:
    return ApiError(404, f"the server could not find the requested resource ({path})")


def discovery(path: str, host: str) -> dict[str, Any] | None:
    """The document a GET of `path` answers when it is a discovery path (None when it is not)."""
    parts = path.strip("/").split("/")
    doc: dict[str, Any] | None = None
    if path in ("/version", "/version/"):
        doc = dict(resources.SERVER_VERSION)
    elif path == "/api":
        doc = resources.api_versions(host)
    elif path == "/apis":
        doc = resources.api_group_list()
    elif parts == ["api", "v1"]:
        doc = resources.api_resource_list("", "v1")
    elif len(parts) == 2 and parts[0] == "apis":
        doc = resources.api_group(parts[1])
        if doc is None:
            raise ApiError(404, f"the server could not find {path}")
    elif len(parts) == 3 and parts[0] == "apis":
        doc = resources.api_resource_list(parts[1], parts[2])
        if doc is None:
            raise ApiError(404, f"no {path}")
    elif path == "/openapi/v3":
        doc = resources.openapi_v3_root()
    elif path.startswith("/openapi/v3/"):
        doc = resources.openapi_v3_group_version(path.removeprefix("/openapi/v3/"))
        if doc is None:
            raise ApiError(404, f"no {path}")
    return doc


def _json(obj: dict[str, Any], status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.json_response(obj, status=status)


def _maybe_table(
    raw_request: aiohttp.web.BaseRequest, store: ObjectStore, rt: ResourceType, objs: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """What `kubectl get` asks for (Accept: ...;as=Table) when it prints columns."""
    if not tables.wants_table(raw_request.headers.get("Accept", "")):
        return None
    return tables.table(rt.kind, objs, str(store.resource_version), raw_request.query.get("includeObject", ""))


def resource_type(info: RequestInfo) -> ResourceType:
    """The served type a resource request is about; 404 as a server without it answers."""
    rt = resources.find(info.group, info.version, info.resource)
    if rt is None:
        raise _not_served(info.path)
    listing_all_namespaces = info.namespace is None and info.name is None and info.verb in ("list", "watch")
    if (info.namespace is not None) != rt.namespaced and not listing_all_namespaces:
        raise _not_served(info.path)
    if info.subresource is not None and info.subresource not in rt.subresources:
        raise ApiError(404, f"{rt.group_resource} has no subresource {info.subresource!r}")
    return rt


async def serve(
    store: ObjectStore, raw_request: aiohttp.web.BaseRequest, info: RequestInfo, data: Any
) -> aiohttp.web.StreamResponse:
    """Answer a resource request from the store."""
    rt = resource_type(info)
    ns, name, sub, verb = info.namespace, info.name, info.subresource, info.verb
    params, method = raw_request.query, raw_request.method
    dry_run = "dryRun" in params
    content_type = raw_request.headers.get("Content-Type", "application/json")
    if verb == "watch" and name is None:
        return await watch.stream(store, raw_request, rt, ns)
    if verb == "list":
        found = store.list(rt, ns, params.get("labelSelector"), params.get("fieldSelector"))
        return _json(_maybe_table(raw_request, store, rt, found["items"]) or found)
    if verb == "create" and name is None:
        return _json(store.create(rt, ns, data, dry_run=dry_run), 201)
    if verb == "deletecollection":
        return _json(store.delete_collection(rt, ns, params.get("labelSelector")))
    if name is not None and sub == "scale":
        if verb == "get":
            return _json(scale.scale_of(store.get(rt, ns, name)))
        if verb in ("update", "patch"):
            return _json(scale.write_scale(store, rt, ns, name, method, content_type, data, dry_run=dry_run))
    elif name is not None and verb == "get":
        obj = store.get(rt, ns, name)
        return _json((_maybe_table(raw_request, store, rt, [obj]) if sub is None else None) or obj)
    elif name is not None and verb in ("update", "patch"):
        part: Literal["main", "status"] = "status" if sub else "main"
        return _json(store.update(rt, ns, name, method, content_type, data, part=part, dry_run=dry_run))
    elif name is not None and verb == "delete":
        return _json(store.delete(rt, ns, name, data if isinstance(data, dict) else None))
    raise ApiError(405, f"{method} is not supported on {info.path}")
