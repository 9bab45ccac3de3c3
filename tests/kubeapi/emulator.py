"""An in-memory Kubernetes API server: kmock's emulator with the semantics this project relies on.

kmock 0.8 gives the HTTP server, request parsing and logging, its DSL and a versioned object store. Its own
CRUD misses what clients check (list `kind`, `resourceVersion`/`uid`, PUT, the `autoscaling/v1` Scale,
label selectors, optimistic concurrency, faults that do not apply the change), so `KubeEmulator` serves
every request for a declared resource itself, and leaves only other paths to kmock.

A request goes: authentication (401) → the test's rules (delay or hang, fault, hooks) → authorization (403)
→ discovery or the store (routing.py). Everything runs on the server's event loop thread; only delays
await before the store is touched, so each store operation is atomic without a lock. `KubeAPI`
(server.py) is the thread-safe front for tests.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import parsing as kmock_parsing

from tests.kubeapi import rbac, requestinfo, routing, watch
from tests.kubeapi.auth import Authenticator, User
from tests.kubeapi.requestinfo import RequestInfo
from tests.kubeapi.rules import Delay, Fault, Hook, RecordedRequest, Rules, Taken
from tests.kubeapi.status import ApiError
from tests.kubeapi.store import ObjectStore

_POLL = 0.01
"""Seconds between looks at whether a hung request's client has gone or the server is stopping."""


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """The aiohttp handler; `KubeAPI` runs it on a loop thread behind a kmock `Server`."""

    host: str = "127.0.0.1"  # advertised in /api discovery; set by KubeAPI once the port is known
    rules: Rules = attrs.field(factory=Rules, init=False)
    auth: Authenticator = attrs.field(factory=Authenticator, init=False)
    store: ObjectStore = attrs.field(init=False)
    _closing: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.store = ObjectStore(self._objects)

    # --- what tests arrange (safe to call from any thread) -----------------------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        return self.rules.add_fault(fault)

    def add_hook(self, hook: Hook) -> Hook:
        return self.rules.add_hook(hook)

    def add_delay(self, delay: Delay) -> Delay:
        return self.rules.add_delay(delay)

    @property
    def log(self) -> list[RecordedRequest]:
        return list(self.rules.log)

    def clear_log(self) -> None:
        self.rules.log.clear()

    def close_watches(self) -> None:
        """End every open watch stream and hung request, so that the server can shut down at once."""
        self._closing = True
        watch.close_all(self.store)

    # --- request entry point ------------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await raw_request.read()  # aiohttp keeps it: kmock reads it again
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        response = await self._answer(raw_request, body, data)
        self.rules.log.append(
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

    async def _answer(self, raw_request: aiohttp.web.BaseRequest, body: bytes, data: Any) -> aiohttp.web.StreamResponse:
        if routing.is_binary(raw_request.content_type):
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
        """kmock calls this for every parsed request."""
        raw_request = request._raw_request
        assert raw_request is not None
        method, path = request.method.value, request.url.path
        info = requestinfo.parse(method, path, raw_request.query)
        try:
            user = self.auth.authenticate(raw_request.headers, self.store)
        except ApiError as exc:
            return exc.response()
        taken = self.rules.take(method, path)
        if taken.delay is None:
            return await self._serve(request, user, info, taken)
        if taken.delay.seconds is None:
            await self._hang(raw_request)
            return ApiError(503, f"the server gave up on a hung {method} {path}").response()
        # A slow request is served after its delay even when its client stops waiting meanwhile (aiohttp
        # cancels the handler on a disconnect): the write lands, as on a slow real server.
        return await asyncio.shield(self._late(taken.delay.seconds, request, user, info, taken))

    async def _late(
        self, seconds: float, request: kmock.Request, user: User, info: RequestInfo, taken: Taken
    ) -> aiohttp.web.StreamResponse:
        await asyncio.sleep(seconds)
        return await self._serve(request, user, info, taken)

    async def _hang(self, raw_request: aiohttp.web.BaseRequest) -> None:
        """Wait until the client closes the connection or the server stops; the request is never served."""
        while not self._closing and raw_request.transport is not None and not raw_request.transport.is_closing():
            await asyncio.sleep(_POLL)

    async def _serve(
        self, request: kmock.Request, user: User, info: RequestInfo, taken: Taken
    ) -> aiohttp.web.StreamResponse:
        """The test's fault or hooks, then authorization, then discovery, the store or kmock."""
        path = info.path
        if taken.fault is not None:  # answered before anything is applied, like a real rejection
            fault = taken.fault
            message = fault.message or f"injected {fault.status} for {request.method.value} {path}"
            return ApiError(fault.status, message, retry_after=fault.retry_after).response()
        for hook in taken.hooks:
            hook.callback()
        try:
            rbac.authorize(user, info, self.store)
            if request.method.value == "GET" and (doc := routing.discovery(path, self.host)) is not None:
                return aiohttp.web.json_response(doc)
            if not info.is_resource:
                return await super(kmock.KubernetesEmulator, self)._handle(request)  # kmock: DSL or 404
            assert request._raw_request is not None
            return await routing.serve(self.store, request._raw_request, info, request.data)
        except ApiError as exc:
            return exc.response()
