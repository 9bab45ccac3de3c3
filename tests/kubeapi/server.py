"""`KubeAPI`: run the emulator on its own loop thread so that synchronous tests, the official client and
`kubectl`/`helm` subprocesses can all talk to it over real HTTP while the test thread blocks.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import concurrent.futures
import hashlib
import json
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import kmock

from tests.kubeapi import rbac, resources, tls
from tests.kubeapi.auth import FAKE_TOKEN, service_account_user
from tests.kubeapi.emulator import KubeEmulator
from tests.kubeapi.resources import ResourceType
from tests.kubeapi.rules import Delay, Fault, Hook, RecordedRequest
from tests.kubeapi.status import ApiError
from tests.kubeapi.tools import HELM, KUBECTL, Tools

if TYPE_CHECKING:
    import kubernetes.client

T = TypeVar("T")


def resource_type(name: str) -> ResourceType:
    """What a person would type: `deployment`, `deploy`, `Deployment`, `apps/v1/deployments`..."""
    wanted = name.lower()
    for rt in resources.RESOURCES:
        if wanted in (rt.plural, rt.kind.lower(), rt.key, rt.group_resource, *rt.short_names):
            return rt
    raise KeyError(f"the emulator serves no resource called {name!r}")


class KubeAPI(Tools):
    """A running emulator: its URL, a kubeconfig for kubectl and the official client, and its store.

    Usage::

        with KubeAPI.start() as api:
            api.create_deployment("task-processor", replicas=1)
            api.kubectl("scale", "deployment", "task-processor", "--replicas=3", check=True)
            assert api.replicas("task-processor") == 3

    Store helpers (`create`, `get`, `patch`, ...) go through the same code as HTTP requests, on the loop
    thread, so they bump `resourceVersion` and notify watchers exactly as a client's write would.
    """

    def __init__(self, workdir: Path | None = None, *, namespace: str = "default") -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="kubeapi-")) if workdir is None else Path(workdir)
        self.namespace = namespace
        self.kubeconfig = self.workdir / "kubeconfig"
        self.emulator = KubeEmulator()
        self.host = "127.0.0.1"
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._cert: tuple[Path, Path] | None = None  # certificate and key, made by start()

    # --- lifecycle -----------------------------------------------------------------------------------------

    @classmethod
    def start(cls, workdir: Path | None = None, *, namespace: str = "default") -> Self:
        """Start serving on 127.0.0.1 on a free port; the result is also a context manager that stops it."""
        api = cls(workdir, namespace=namespace)
        api._cert = tls.self_signed(api.workdir / "tls", api.host)
        api._thread = threading.Thread(target=api._run, name="kubeapi-emulator", daemon=True)
        api._thread.start()
        if not api._ready.wait(timeout=10) or api._error is not None:
            api.stop()
            raise RuntimeError("the Kubernetes API emulator did not start") from api._error
        api._write_kubeconfig(FAKE_TOKEN, api.kubeconfig)
        for ns in dict.fromkeys(("default", namespace)):
            api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for obj in rbac.BOOTSTRAP_POLICY:
            api.create(obj)
        return api

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(); nothing else can see this thread
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        assert self._cert is not None
        server_cls = tls.server_class(*self._cert)
        async with self.emulator, kmock.Server(self.emulator, host=self.host, server_cls=server_cls) as server:
            self.port = server.port
            self.emulator.host = f"{self.host}:{self.port}"
            self._ready.set()
            await self._stopping.wait()
            self.emulator.close_watches()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def _write_kubeconfig(self, token: str, path: Path) -> None:
        # JSON is YAML: both kubectl and kubernetes.config.load_kube_config read this file.
        assert self._cert is not None
        ca = base64.b64encode(self._cert[0].read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "kubeapi",
            "preferences": {},
            "clusters": [{"name": "kubeapi", "cluster": {"server": self.url, "certificate-authority-data": ca}}],
            "users": [{"name": "kubeapi", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "kubeapi",
                    "context": {"cluster": "kubeapi", "user": "kubeapi", "namespace": self.namespace},
                }
            ],
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2))

    def call(self, fn: Callable[[KubeEmulator], T]) -> T:
        """Run `fn(emulator)` on the loop thread (or inline when already there) and return its result."""
        if self._loop is None:
            raise RuntimeError("the emulator is not running")
        if threading.current_thread() is self._thread:
            return fn(self.emulator)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(self.emulator))
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout=10)

    # --- the store -----------------------------------------------------------------------------------------

    @property
    def objects(self) -> kmock.ObjectsArray:
        """kmock's versioned store, to read, e.g. `api.objects['apps/v1/deployments', ns, name].history`."""
        return self.emulator.objects

    def _ns(self, rt: ResourceType, namespace: str | None) -> str | None:
        return (namespace or self.namespace) if rt.namespaced else None

    def create(self, obj: dict[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """Create an object as given, `status` included (no HTTP request; no request-log entry)."""
        rt = resources.by_kind(obj["apiVersion"], obj["kind"])
        ns = self._ns(rt, namespace or obj.get("metadata", {}).get("namespace"))
        return self.call(lambda em: em.store.create(rt, ns, obj, keep_status=True))

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        rt = resource_type(resource)
        return self.call(lambda em: em.store.find(rt, self._ns(rt, namespace), name))

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        rt = resource_type(resource)
        items: list[dict[str, Any]] = self.call(
            lambda em: em.store.list(rt, self._ns(rt, namespace), label_selector)["items"]
        )
        return items

    def patch(
        self,
        resource: str,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """JSON-merge-patch an object, `status` included, bumping its resourceVersion like any write."""
        rt = resource_type(resource)
        ns = self._ns(rt, namespace)

        return self.call(
            lambda em: em.store.update(
                rt,
                ns,
                name,
                "PATCH",
                "application/merge-patch+json",
                patch,
                part="all",
            )
        )

    def delete(self, resource: str, name: str, namespace: str | None = None) -> None:
        rt = resource_type(resource)
        self.call(lambda em: em.store.delete(rt, self._ns(rt, namespace), name))

    def create_deployment(
        self,
        name: str = "task-processor",
        *,
        replicas: int = 1,
        namespace: str | None = None,
        labels: dict[str, str] | None = None,
        image: str = "task-processor:test",
    ) -> dict[str, Any]:
        """A minimal valid apps/v1 Deployment whose selector matches its pod template."""
        labels = labels or {"app.kubernetes.io/name": name}
        return self.create(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "labels": dict(labels)},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": dict(labels)},
                    "template": {
                        "metadata": {"labels": dict(labels)},
                        "spec": {"containers": [{"name": "worker", "image": image}]},
                    },
                },
            },
            namespace=namespace,
        )

    def replicas(self, name: str = "task-processor", namespace: str | None = None) -> int:
        """The Deployment's `spec.replicas`; raises KeyError when it does not exist."""
        obj = self.get("deployments", name, namespace)
        if obj is None:
            raise KeyError(f"no deployment {name!r}")
        return int(obj["spec"]["replicas"])

    # --- faults, hooks and the request log -----------------------------------------------------------------

    def fail(
        self,
        method: str | None,
        path: str,
        status: int,
        *,
        times: int = 1,
        retry_after: int | None = None,
        message: str | None = None,
    ) -> Fault:
        """Answer the next `times` requests whose method is `method` (None: any) and whose path matches the
        regex `path` (searched, e.g. r"/deployments/task-processor/scale$") with a `Status` of `status`,
        changing nothing. `retry_after` adds the `Retry-After` header (use it with 429)."""
        return self.emulator.add_fault(
            Fault(method and method.upper(), re.compile(path), status, times, retry_after, message)
        )

    def before(self, method: str | None, path: str, callback: Callable[[], object], *, times: int = 1) -> Hook:
        """Run `callback()` on the server just before the next `times` matching requests are served. It may
        use this object's store helpers, e.g. `api.patch(...)` to make a concurrent write win a race."""
        return self.emulator.add_hook(Hook(method and method.upper(), re.compile(path), callback, times))

    def slow(self, method: str | None, path: str, seconds: float, *, times: int = 1) -> Delay:
        """Answer the next `times` matching requests `seconds` late (without holding up other requests). The
        request is applied after the delay, whether or not its client waited for the answer: a client that
        timed out and retries meets its own earlier write."""
        return self.emulator.add_delay(Delay(method and method.upper(), re.compile(path), seconds, times))

    def hang(self, method: str | None, path: str, *, times: int = 1) -> Delay:
        """Never answer the next `times` matching requests: each waits until its client closes the connection
        (a read time-out) or the server stops, and is never applied. Other requests are served meanwhile."""
        return self.emulator.add_delay(Delay(method and method.upper(), re.compile(path), None, times))

    def requests(self, method: str | None = None, path: str | None = None) -> builtins.list[RecordedRequest]:
        """Requests served so far (oldest first), optionally filtered by method and path regex (searched)."""
        return [
            r
            for r in self.emulator.log
            if (method is None or r.method == method.upper()) and (path is None or re.search(path, r.path))
        ]

    def clear_requests(self) -> None:
        self.emulator.clear_log()

    # --- clients -------------------------------------------------------------------------------------------

    def service_account_token(self, name: str, namespace: str | None = None) -> str:
        """A bearer token for the ServiceAccount `name` (user `system:serviceaccount:<ns>:<name>`), whose
        requests RBAC authorizes against the Roles and bindings in the store. Like a real bound token it is
        accepted only while the ServiceAccount exists (else 401)."""
        return self.emulator.auth.add(service_account_user(name, namespace or self.namespace))

    def kubeconfig_for(self, token: str) -> Path:
        """A kubeconfig like `kubeconfig` (same server and namespace) that sends `token`."""
        path = self.workdir / f"kubeconfig-{hashlib.sha256(token.encode()).hexdigest()[:12]}"
        self._write_kubeconfig(token, path)
        return path

    def api_client(self, token: str | None = None) -> kubernetes.client.ApiClient:
        """An official-client `ApiClient` configured from the kubeconfig (of `token`, else the admin's),
        leaving the global default alone."""
        import kubernetes.client  # only tests that use the official client need it
        import kubernetes.config

        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=str(self.kubeconfig if token is None else self.kubeconfig_for(token)),
            client_configuration=configuration,
        )
        return kubernetes.client.ApiClient(configuration)


__all__ = [
    "FAKE_TOKEN",
    "HELM",
    "KUBECTL",
    "ApiError",
    "Delay",
    "Fault",
    "Hook",
    "KubeAPI",
    "RecordedRequest",
    "resource_type",
]
