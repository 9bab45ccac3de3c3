"""An in-memory Kubernetes API server: kmock's emulator with the semantics this project relies on.

kmock 0.8 gives the HTTP server, request parsing and logging, its DSL and a versioned object store. Its own
CRUD misses what clients check (list `kind`, `resourceVersion`/`uid`, PUT, the `autoscaling/v1` Scale,
label selectors, optimistic concurrency, faults that do not apply the change), so `KubeEmulator` serves
every request for a declared resource itself, and leaves only other paths to kmock.

Everything here runs on the server's event loop thread and never awaits while it changes the store, so
each request is atomic without a lock. `KubeAPI` (server.py) is the thread-safe front for tests.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp.web
import attrs
import kmock
from kmock._internal import parsing as kmock_parsing

from tests.kubeapi import patching, resources, tables
from tests.kubeapi.resources import ResourceType

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

_SCALE_METADATA = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
_BINARY_TYPES = ("application/vnd.kubernetes.protobuf", "application/cbor")

_RESOURCE_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$"
)


class ApiError(Exception):
    """An error the API server answers with a `Status` object."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.details, self.retry_after = code, message, details or {}, retry_after
        self.reason = reason or _REASONS.get(code, "Unknown")

    def response(self) -> aiohttp.web.Response:
        details = dict(self.details)
        headers = {}
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
            headers["Retry-After"] = str(self.retry_after)
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": details,
            "code": self.code,
        }
        return aiohttp.web.json_response(body, status=self.code, headers=headers)


def _not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        404,
        f'{rt.group_resource} "{name}" not found',
        details={"name": name, "group": rt.group, "kind": rt.plural},
    )


def _conflict(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {rt.group_resource} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        details={"name": name, "group": rt.group, "kind": rt.plural},
    )


@dataclass
class Fault:
    """Answer the next `times` requests matching `method` and `path` (a regex, searched) with `status`."""

    method: str | None
    path: re.Pattern[str]
    status: int
    times: int = 1
    retry_after: int | None = None
    message: str | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method in (None, method) and self.path.search(path) is not None


@dataclass
class Hook:
    """Run `callback()` before the next `times` matching requests are served (e.g. to race them)."""

    method: str | None
    path: re.Pattern[str]
    callback: Callable[[], None]
    times: int = 1

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method in (None, method) and self.path.search(path) is not None


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it, and the status it answered."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any  # parsed JSON when the body was JSON, else its text ("" when empty)
    status: int
    headers: dict[str, str] = field(repr=False, default_factory=dict)


def _res(rt: ResourceType) -> kmock.resource:
    """The key kmock's object store files objects of this type under."""
    return kmock.resource(group=rt.group, version=rt.version, plural=rt.plural)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """The aiohttp handler; `KubeAPI` runs it on a loop thread behind a kmock `Server`."""

    host: str = "127.0.0.1"  # advertised in /api discovery; set by KubeAPI once the port is known
    _resource_version: int = attrs.field(default=0, init=False)
    _faults: list[Fault] = attrs.field(factory=list, init=False)
    _hooks: list[Hook] = attrs.field(factory=list, init=False)
    _rules_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _log: list[RecordedRequest] = attrs.field(factory=list, init=False)
    _watchers: list[asyncio.Queue[tuple[ResourceType, str, dict[str, Any]] | None]] = attrs.field(
        factory=list, init=False
    )

    # --- faults, hooks and the request log (safe to call from any thread) ------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        with self._rules_lock:
            self._faults.append(fault)
        return fault

    def add_hook(self, hook: Hook) -> Hook:
        with self._rules_lock:
            self._hooks.append(hook)
        return hook

    @property
    def log(self) -> list[RecordedRequest]:
        return list(self._log)

    def clear_log(self) -> None:
        self._log.clear()

    def close_watches(self) -> None:
        """End every open watch stream, so that the server can shut down at once."""
        for queue in self._watchers:
            queue.put_nowait(None)

    # --- request entry point ------------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await raw_request.read()  # aiohttp keeps it: kmock reads it again
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        response = await self._answer(raw_request, body, data)
        self._log.append(
            RecordedRequest(
                method=raw_request.method,
                path=raw_request.path,
                query=dict(raw_request.query),
                content_type=raw_request.headers.get("Content-Type", ""),
                body=data if data is not None else body.decode(errors="replace"),
                status=response.status,
                headers=dict(raw_request.headers),
            )
        )
        return response

    async def _answer(
        self,
        raw_request: aiohttp.web.BaseRequest,
        body: bytes,
        data: Any,
    ) -> aiohttp.web.StreamResponse:
        if raw_request.content_type in _BINARY_TYPES:  # kubectl's typed clients send protobuf first
            return ApiError(415, f"the emulator speaks JSON only, not {raw_request.content_type}").response()
        try:
            kmock_parsing.parse_path(raw_request.path)
        except ValueError:  # kmock 0.8 cannot parse e.g. /api/v1/namespaces; serve it without its K8s guesses
            request = kmock.Request(
                id=len(self._requests),
                raw_request=raw_request,
                url=raw_request.url,
                method=raw_request.method,
                params=dict(raw_request.query),
                headers=dict(raw_request.headers),
                body=body,
                text=body.decode(errors="replace"),
                data=data,
            )
            self._requests.append(request)
            return await self._handle(request)
        return await super().__call__(raw_request)  # kmock parses, keeps the request, renders its errors

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """kmock calls this for every parsed request: faults first, then hooks, discovery and resources."""
        method, path = request.method.value, request.url.path
        with self._rules_lock:
            fault = next((f for f in self._faults if f.matches(method, path)), None)
            if fault is not None:
                fault.times -= 1
                fault.hits += 1
            hooks = [h for h in self._hooks if h.matches(method, path)]
            for hook in hooks:
                hook.times -= 1
        if fault is not None:  # answered before anything is applied, like a real rejection
            message = fault.message or f"injected {fault.status} for {method} {path}"
            return ApiError(fault.status, message, retry_after=fault.retry_after).response()
        for hook in hooks:
            hook.callback()

        try:
            if method == "GET" and (doc := self._discovery(path)) is not None:
                return aiohttp.web.json_response(doc)
            if (match := _RESOURCE_PATH.match(path)) is None:
                return await super(kmock.KubernetesEmulator, self)._handle(request)  # kmock: DSL or 404
            return await self._serve(request, match)
        except ApiError as exc:
            return exc.response()

    def _discovery(self, path: str) -> dict[str, Any] | None:
        parts = path.strip("/").split("/")
        doc: dict[str, Any] | None = None
        if path == "/version":
            doc = dict(resources.SERVER_VERSION)
        elif path == "/api":
            doc = resources.api_versions(self.host)
        elif path == "/apis":
            doc = resources.api_group_list()
        elif parts == ["api", "v1"]:
            doc = resources.api_resource_list("", "v1")
        elif len(parts) == 2 and parts[0] == "apis":
            doc = resources.api_group(parts[1]) or self._raise(404, f"the server could not find {path}")
        elif len(parts) == 3 and parts[0] == "apis":
            doc = resources.api_resource_list(parts[1], parts[2]) or self._raise(404, f"no {path}")
        elif path == "/openapi/v3":
            doc = resources.openapi_v3_root()
        elif path.startswith("/openapi/v3/"):
            gv = path.removeprefix("/openapi/v3/")
            doc = resources.openapi_v3_group_version(gv) or self._raise(404, f"no {path}")
        return doc

    @staticmethod
    def _raise(code: int, message: str) -> dict[str, Any]:
        raise ApiError(code, message)

    # --- routing ------------------------------------------------------------------------------------------

    async def _serve(self, request: kmock.Request, match: re.Match[str]) -> aiohttp.web.StreamResponse:
        group = "" if match["core"] else match["group"]
        version = match["core"] or match["version"]
        ns, plural, name, sub = match["ns"], match["plural"], match["name"], match["sub"]
        if ns and name is None and plural in ("status", "finalize"):  # /api/v1/namespaces/<ns>/status
            ns, plural, name, sub = None, "namespaces", ns, plural
        rt = resources.find(group, version, plural)
        if rt is None:
            raise ApiError(404, f"the server could not find the requested resource ({request.url.path})")
        listing_all_namespaces = ns is None and name is None and request.method == "GET"
        if (ns is not None) != rt.namespaced and not listing_all_namespaces:
            raise ApiError(404, f"the server could not find the requested resource ({request.url.path})")
        if sub is not None and sub not in rt.subresources:
            raise ApiError(404, f"{rt.group_resource} has no subresource {sub!r}")

        method, params, body = request.method.value, request.params, request.data
        dry_run = "dryRun" in params
        content_type = request.headers.get("Content-Type", "application/json")
        if name is None:
            if method == "GET" and params.get("watch", "").lower() in ("true", "1"):
                return await self._watch(request, rt, ns)
            if method == "GET":
                found = self.list_objects(rt, ns, params.get("labelSelector"), params.get("fieldSelector"))
                return self._json(self._maybe_table(request, rt, found["items"]) or found)
            if method == "POST":
                return self._json(self.create_object(rt, ns, body, dry_run=dry_run), 201)
            if method == "DELETE":
                return self._json(self.delete_collection(rt, ns, params.get("labelSelector")))
        elif sub == "scale":
            if method == "GET":
                return self._json(self._scale(rt, self.get_object(rt, ns, name)))
            if method in ("PUT", "PATCH"):
                return self._json(self.write_scale(rt, ns, name, method, content_type, body, dry_run=dry_run))
        elif method == "GET":
            obj = self.get_object(rt, ns, name)
            table = self._maybe_table(request, rt, [obj]) if sub is None else None
            return self._json(table or obj)
        elif method in ("PUT", "PATCH"):
            obj = self.update_object(
                rt, ns, name, method, content_type, body, part="status" if sub else "main", dry_run=dry_run
            )
            return self._json(obj)
        elif method == "DELETE":
            return self._json(self.delete_object(rt, ns, name, body if isinstance(body, dict) else None))
        raise ApiError(405, f"{method} is not supported on {request.url.path}")

    def _maybe_table(
        self,
        request: kmock.Request,
        rt: ResourceType,
        objs: list[dict[str, Any]],
    ) -> dict[str, Any] | None:
        """What `kubectl get` asks for (Accept: ...;as=Table) when it prints columns."""
        if not tables.wants_table(request.headers.get("Accept", "")):
            return None
        return tables.table(
            rt.kind,
            objs,
            str(self._resource_version),
            request.params.get("includeObject", ""),
        )

    @staticmethod
    def _json(obj: dict[str, Any], status: int = 200) -> aiohttp.web.Response:
        return aiohttp.web.json_response(obj, status=status)

    # --- the store (loop thread only) ----------------------------------------------------------------------

    def _key(self, rt: ResourceType, ns: str | None, name: str) -> tuple[kmock.resource, str | None, str]:
        return (_res(rt), ns if rt.namespaced else None, name)

    def find_object(self, rt: ResourceType, ns: str | None, name: str) -> dict[str, Any] | None:
        key = self._key(rt, ns, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(self._objects[key].raw)

    def get_object(self, rt: ResourceType, ns: str | None, name: str) -> dict[str, Any]:
        obj = self.find_object(rt, ns, name)
        if obj is None:
            raise _not_found(rt, name)
        return obj

    def _store(self, rt: ResourceType, obj: dict[str, Any], event: str) -> dict[str, Any]:
        """Persist a new version under a fresh resourceVersion and tell the watchers."""
        self._resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self._resource_version)
        meta = obj["metadata"]
        key = self._key(rt, meta.get("namespace"), meta["name"])
        if key not in self._objects:
            self._objects[key] = copy.deepcopy(obj)
        elif event == "DELETED":
            self._objects[key].delete()
        else:
            self._objects[key].history.append(copy.deepcopy(obj))
        for queue in self._watchers:
            queue.put_nowait((rt, event, copy.deepcopy(obj)))
        return obj

    def list_objects(
        self,
        rt: ResourceType,
        ns: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        items = []
        try:
            for (res, obj_ns, _name), obj in self._objects.items():
                if res != _res(rt) or obj.deleted or (ns is not None and obj_ns != ns):
                    continue
                raw = obj.raw
                labels_match = patching.match_labels(label_selector, raw.get("metadata", {}).get("labels"))
                if labels_match and patching.match_fields(field_selector, raw):
                    items.append(copy.deepcopy(raw))
        except patching.PatchError as exc:
            raise ApiError(400, str(exc)) from exc
        items.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(self._resource_version)},
            "items": items,
        }

    def create_object(
        self, rt: ResourceType, ns: str | None, body: Any, *, dry_run: bool = False, keep_status: bool = False
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        obj = copy.deepcopy(body)
        obj.setdefault("apiVersion", rt.api_version)
        obj.setdefault("kind", rt.kind)
        if (obj["apiVersion"], obj["kind"]) != (rt.api_version, rt.kind):
            raise ApiError(400, f"the body is a {obj['kind']} ({obj['apiVersion']}), not a {rt.kind}")
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(
                    422,
                    f"{rt.kind} is invalid: metadata.name: Required value: name or generateName is required",
                )
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise ApiError(
                    400,
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = ns
        if self.find_object(rt, ns, meta["name"]) is not None:
            raise ApiError(
                409,
                f'{rt.group_resource} "{meta["name"]}" already exists',
                reason="AlreadyExists",
                details={"name": meta["name"], "group": rt.group, "kind": rt.plural},
            )
        for transient in ("resourceVersion", "deletionTimestamp", "managedFields"):
            meta.pop(transient, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        self._defaults(rt, obj, keep_status=keep_status)
        if dry_run:
            return obj
        return self._store(rt, obj, "ADDED")

    @staticmethod
    def _defaults(rt: ResourceType, obj: dict[str, Any], *, keep_status: bool) -> None:
        """The few server-side defaults clients here read back."""
        if rt.kind == "Deployment":
            obj.setdefault("spec", {}).setdefault("replicas", 1)
        if "status" in rt.subresources and not keep_status:
            obj["status"] = {"Pod": {"phase": "Pending"}, "Namespace": {"phase": "Active"}}.get(rt.kind, {})

    def update_object(
        self,
        rt: ResourceType,
        ns: str | None,
        name: str,
        method: str,
        content_type: str,
        body: Any,
        *,
        part: Literal["main", "status", "all"] = "main",
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """PUT or PATCH an object with the API server's optimistic concurrency. Like a real server, a write to
        the object ignores `status` and a write to /status changes nothing else; `part="all"` (the in-process
        helpers) takes both."""
        current = self.get_object(rt, ns, name)
        wanted = self._changed(current, method, content_type, body)
        new = self._checked(rt, current, wanted)
        if part == "status":
            new = {**current, "status": wanted.get("status", {})}
        elif part == "main" and "status" in rt.subresources:
            new.pop("status", None)
            if "status" in current:
                new["status"] = current["status"]
        if new.get("spec") != current.get("spec"):
            new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if dry_run or new == current:  # a no-op write keeps its resourceVersion, as on a real server
            return new
        return self._store(rt, new, "MODIFIED")

    @staticmethod
    def _changed(current: dict[str, Any], method: str, content_type: str, body: Any) -> dict[str, Any]:
        if method == "PUT":
            if not isinstance(body, dict):
                raise ApiError(400, "the request body must be a JSON object")
            return copy.deepcopy(body)
        try:
            return patching.apply_patch(content_type, copy.deepcopy(current), body)
        except LookupError as exc:
            raise ApiError(415, f"the emulator does not support patches of type {exc}") from exc
        except patching.PatchError as exc:
            raise ApiError(422, str(exc)) from exc

    @staticmethod
    def _checked(rt: ResourceType, current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
        """Refuse a stale resourceVersion (409) and keep what a client may not change."""
        old_meta, meta = current["metadata"], wanted.setdefault("metadata", {})
        if meta.get("name", old_meta["name"]) != old_meta["name"]:
            raise ApiError(
                400,
                f"the name {meta['name']!r} in the body does not match {old_meta['name']!r} in the URL",
            )
        if meta.get("resourceVersion") and meta["resourceVersion"] != old_meta["resourceVersion"]:
            raise _conflict(rt, old_meta["name"])
        for kept in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            if kept in old_meta:
                meta[kept] = old_meta[kept]
        wanted["apiVersion"], wanted["kind"] = rt.api_version, rt.kind
        return wanted

    def _scale(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        meta, spec = obj["metadata"], obj.get("spec", {})
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in _SCALE_METADATA if k in meta},
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {
                "replicas": obj.get("status", {}).get("replicas", 0),
                "selector": patching.selector_string(spec.get("selector", {}).get("matchLabels")),
            },
        }

    def write_scale(
        self,
        rt: ResourceType,
        ns: str | None,
        name: str,
        method: str,
        content_type: str,
        body: Any,
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """PUT or PATCH /scale: only `spec.replicas` moves; a stale resourceVersion answers 409."""
        current = self.get_object(rt, ns, name)
        scale = self._changed(self._scale(rt, current), method, content_type, body)
        if scale.get("metadata", {}).get("resourceVersion") not in (
            None,
            "",
            current["metadata"]["resourceVersion"],
        ):
            raise _conflict(rt, name)
        replicas = scale.get("spec", {}).get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(
                422,
                f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                f"{json.dumps(replicas)}: must be greater than or equal to 0",
            )
        if replicas == current.get("spec", {}).get("replicas"):
            return self._scale(rt, current)
        new = copy.deepcopy(current)
        new.setdefault("spec", {})["replicas"] = replicas
        new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        return self._scale(rt, new if dry_run else self._store(rt, new, "MODIFIED"))

    def delete_object(
        self, rt: ResourceType, ns: str | None, name: str, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        current = self.get_object(rt, ns, name)
        wanted_rv = ((options or {}).get("preconditions") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise _conflict(rt, name)
        deleted = self._store(rt, current, "DELETED")
        if rt.returns_deleted:
            return deleted
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": name,
                "group": rt.group,
                "kind": rt.plural,
                "uid": current["metadata"]["uid"],
            },
        }

    def delete_collection(
        self,
        rt: ResourceType,
        ns: str | None,
        label_selector: str | None,
    ) -> dict[str, Any]:
        doomed = self.list_objects(rt, ns, label_selector)
        for obj in doomed["items"]:
            self._store(rt, obj, "DELETED")
        return doomed

    # --- watch ---------------------------------------------------------------------------------------------

    async def _watch(
        self,
        request: kmock.Request,
        rt: ResourceType,
        ns: str | None,
    ) -> aiohttp.web.StreamResponse:
        """Stream ADDED/MODIFIED/DELETED lines until `timeoutSeconds`, a disconnect, or the server stops."""
        params = request.params
        labels, fields = params.get("labelSelector"), params.get("fieldSelector")
        timeout = float(params.get("timeoutSeconds") or 0) or None
        queue: asyncio.Queue[tuple[ResourceType, str, dict[str, Any]] | None] = asyncio.Queue()
        if params.get("resourceVersion", "0") in ("", "0"):  # no resume point: replay the current state
            for obj in self.list_objects(rt, ns, labels, fields)["items"]:
                queue.put_nowait((rt, "ADDED", obj))
        self._watchers.append(queue)
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        assert request._raw_request is not None
        await response.prepare(request._raw_request)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while True:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                if item is None:
                    break
                item_rt, event, obj = item
                meta = obj["metadata"]
                if item_rt != rt or (ns is not None and meta.get("namespace") != ns):
                    continue
                if patching.match_labels(labels, meta.get("labels")) and patching.match_fields(fields, obj):
                    await response.write(json.dumps({"type": event, "object": obj}).encode() + b"\n")
            await response.write_eof()
        except (ConnectionResetError, patching.PatchError):
            pass
        finally:
            self._watchers.remove(queue)
        return response
