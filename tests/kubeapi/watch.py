"""Watch streams: ADDED/MODIFIED/DELETED lines, one JSON event each, as the store changes."""

from __future__ import annotations

import asyncio
import json

import aiohttp.web

from tests.kubeapi import patching
from tests.kubeapi.resources import ResourceType
from tests.kubeapi.store import Event, ObjectStore


async def stream(
    store: ObjectStore,
    raw_request: aiohttp.web.BaseRequest,
    rt: ResourceType,
    ns: str | None,
) -> aiohttp.web.StreamResponse:
    """Stream events until `timeoutSeconds`, a disconnect, or the server stops (`close_all`)."""
    params = raw_request.query
    labels, fields = params.get("labelSelector"), params.get("fieldSelector")
    timeout = float(params.get("timeoutSeconds") or 0) or None
    queue: asyncio.Queue[Event | None] = asyncio.Queue()
    if params.get("resourceVersion", "0") in ("", "0"):  # no resume point: replay the current state
        for obj in store.list(rt, ns, labels, fields)["items"]:
            queue.put_nowait((rt, "ADDED", obj))
    store.watchers.append(queue)
    response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(raw_request)
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
        store.watchers.remove(queue)
    return response


def close_all(store: ObjectStore) -> None:
    """End every open watch stream, so that the server can shut down at once."""
    for queue in store.watchers:
        queue.put_nowait(None)
