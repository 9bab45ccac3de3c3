"""The object store's operations with the API server's semantics: versioned writes that tell the watchers,
optimistic concurrency (409 on a stale `resourceVersion`), server-set metadata, defaults and validation.

Objects live in kmock's versioned `ObjectsArray`. Everything here runs on the server's event loop thread and
never awaits, so each operation is atomic without a lock.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import secrets
import uuid
from typing import Any, Literal

import kmock

from tests.kubeapi import patching, validation
from tests.kubeapi.resources import ResourceType
from tests.kubeapi.status import ApiError, FieldError, already_exists, conflict, invalid, not_found

Event = tuple[ResourceType, str, dict[str, Any]]
"""What watchers receive: the object's type, ADDED/MODIFIED/DELETED, and the object."""


def _res(rt: ResourceType) -> kmock.resource:
    """The key kmock's object store files objects of this type under."""
    return kmock.resource(group=rt.group, version=rt.version, plural=rt.plural)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return copy.deepcopy(body)


class ObjectStore:
    """CRUD on kmock's store; `watchers` are the queues of the open watch streams."""

    def __init__(self, objects: kmock.ObjectsArray) -> None:
        self.objects = objects
        self.resource_version = 0
        self.watchers: list[asyncio.Queue[Event | None]] = []

    def _key(self, rt: ResourceType, ns: str | None, name: str) -> tuple[kmock.resource, str | None, str]:
        return (_res(rt), ns if rt.namespaced else None, name)

    def find(self, rt: ResourceType, ns: str | None, name: str) -> dict[str, Any] | None:
        key = self._key(rt, ns, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def get(self, rt: ResourceType, ns: str | None, name: str) -> dict[str, Any]:
        obj = self.find(rt, ns, name)
        if obj is None:
            raise not_found(rt, name)
        return obj

    def _put(self, rt: ResourceType, obj: dict[str, Any], event: str) -> dict[str, Any]:
        """Persist a new version under a fresh resourceVersion and tell the watchers."""
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        meta = obj["metadata"]
        key = self._key(rt, meta.get("namespace"), meta["name"])
        if key not in self.objects:
            self.objects[key] = copy.deepcopy(obj)
        elif event == "DELETED":
            self.objects[key].delete()
        else:
            self.objects[key].history.append(copy.deepcopy(obj))
        for queue in self.watchers:
            queue.put_nowait((rt, event, copy.deepcopy(obj)))
        return obj

    def list(
        self,
        rt: ResourceType,
        ns: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        items = []
        try:
            for (res, obj_ns, _name), obj in self.objects.items():
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
            "metadata": {"resourceVersion": str(self.resource_version)},
            "items": items,
        }

    def create(
        self, rt: ResourceType, ns: str | None, body: Any, *, dry_run: bool = False, keep_status: bool = False
    ) -> dict[str, Any]:
        obj = _body(body)
        obj.setdefault("apiVersion", rt.api_version)
        obj.setdefault("kind", rt.kind)
        if (obj["apiVersion"], obj["kind"]) != (rt.api_version, rt.kind):
            raise ApiError(400, f"the body is a {obj['kind']} ({obj['apiVersion']}), not a {rt.kind}")
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                required = FieldError("metadata.name", None, "name or generateName is required", "FieldValueRequired")
                raise invalid(rt.group, rt.kind, "", [required])
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise ApiError(
                    400,
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = ns
        validation.check(rt, obj, creating=True)
        if self.find(rt, ns, meta["name"]) is not None:
            raise already_exists(rt, meta["name"])
        for transient in ("resourceVersion", "deletionTimestamp", "managedFields"):
            meta.pop(transient, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        self._defaults(rt, obj, keep_status=keep_status)
        if dry_run:
            return obj
        return self._put(rt, obj, "ADDED")

    @staticmethod
    def _defaults(rt: ResourceType, obj: dict[str, Any], *, keep_status: bool) -> None:
        """The few server-side defaults clients here read back."""
        if rt.kind == "Deployment":
            obj.setdefault("spec", {}).setdefault("replicas", 1)
        if "status" in rt.subresources and not keep_status:
            obj["status"] = {"Pod": {"phase": "Pending"}, "Namespace": {"phase": "Active"}}.get(rt.kind, {})

    def update(
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
        current = self.get(rt, ns, name)
        wanted = self.changed(current, method, content_type, body)
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
        validation.check(rt, new, creating=False)
        if dry_run or new == current:  # a no-op write keeps its resourceVersion, as on a real server
            return new
        return self._put(rt, new, "MODIFIED")

    @staticmethod
    def changed(current: dict[str, Any], method: str, content_type: str, body: Any) -> dict[str, Any]:
        """What a PUT (the body) or PATCH (the patch applied to `current`) asks the object to become."""
        if method == "PUT":
            return _body(body)
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
        check_version(rt, current, meta.get("resourceVersion"))
        for kept in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            if kept in old_meta:
                meta[kept] = old_meta[kept]
        wanted["apiVersion"], wanted["kind"] = rt.api_version, rt.kind
        return wanted

    def replace_spec_replicas(self, rt: ResourceType, current: dict[str, Any], replicas: int) -> dict[str, Any]:
        """Set `spec.replicas` (a Scale write) as a new version, unless it is unchanged."""
        if replicas == current.get("spec", {}).get("replicas"):
            return current
        new = copy.deepcopy(current)
        new.setdefault("spec", {})["replicas"] = replicas
        new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        return self._put(rt, new, "MODIFIED")

    def delete(
        self, rt: ResourceType, ns: str | None, name: str, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        current = self.get(rt, ns, name)
        check_version(rt, current, ((options or {}).get("preconditions") or {}).get("resourceVersion"))
        deleted = self._put(rt, current, "DELETED")
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

    def delete_collection(self, rt: ResourceType, ns: str | None, label_selector: str | None) -> dict[str, Any]:
        doomed = self.list(rt, ns, label_selector)
        for obj in doomed["items"]:
            self._put(rt, obj, "DELETED")
        return doomed


def check_version(rt: ResourceType, current: dict[str, Any], wanted: str | None) -> None:
    """409 when a write names a resourceVersion other than the current one (an empty one means any)."""
    if wanted and wanted != current["metadata"]["resourceVersion"]:
        raise conflict(rt, current["metadata"]["name"])
