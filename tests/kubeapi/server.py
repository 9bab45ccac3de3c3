"""`KubeAPI`: run the emulator on its own loop thread so that synchronous tests, the official client and
`kubectl`/`helm` subprocesses can all talk to it over real HTTP while the test thread blocks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import kmock

from tests.kubeapi import resources
from tests.kubeapi.emulator import ApiError, Fault, Hook, KubeEmulator, RecordedRequest
from tests.kubeapi.resources import ResourceType

if TYPE_CHECKING:
    import kubernetes.client

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
KUBECTL = TOOLS_BIN / "kubectl"  # installed by scripts/k8s-tools
HELM = TOOLS_BIN / "helm"
FAKE_TOKEN = "kubeapi-emulator-token"  # sent by clients, never checked


def resource_type(name: str) -> ResourceType:
    """What a person would type: `deployment`, `deploy`, `Deployment`, `apps/v1/deployments`..."""
    wanted = name.lower()
    for rt in resources.RESOURCES:
        if wanted in (rt.plural, rt.kind.lower(), rt.key, rt.group_resource, *rt.short_names):
            return rt
    raise KeyError(f"the emulator serves no resource called {name!r}")


class KubeAPI:
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

    # --- lifecycle -----------------------------------------------------------------------------------------

    @classmethod
    def start(cls, workdir: Path | None = None, *, namespace: str = "default") -> Self:
        """Start serving on 127.0.0.1 on a free port; the result is also a context manager that stops it."""
        api = cls(workdir, namespace=namespace)
        api._thread = threading.Thread(target=api._run, name="kubeapi-emulator", daemon=True)
        api._thread.start()
        if not api._ready.wait(timeout=10) or api._error is not None:
            api.stop()
            raise RuntimeError("the Kubernetes API emulator did not start") from api._error
        api._write_kubeconfig()
        for ns in dict.fromkeys(("default", namespace)):
            api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
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
        async with self.emulator, kmock.Server(self.emulator, host=self.host) as server:
            self.port = server.port
            self.emulator.host = f"{self.host}:{self.port}"
            self._ready.set()
            await self._stopping.wait()
            self.emulator.close_watches()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _write_kubeconfig(self) -> None:
        # JSON is YAML: both kubectl and kubernetes.config.load_kube_config read this file.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "kubeapi",
            "preferences": {},
            "clusters": [{"name": "kubeapi", "cluster": {"server": self.url}}],
            "users": [{"name": "kubeapi", "user": {"token": FAKE_TOKEN}}],
            "contexts": [
                {
                    "name": "kubeapi",
                    "context": {"cluster": "kubeapi", "user": "kubeapi", "namespace": self.namespace},
                }
            ],
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.write_text(json.dumps(config, indent=2))

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
        return self.call(lambda em: em.create_object(rt, ns, obj, keep_status=True))

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        rt = resource_type(resource)
        return self.call(lambda em: em.find_object(rt, self._ns(rt, namespace), name))

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        rt = resource_type(resource)
        items: list[dict[str, Any]] = self.call(
            lambda em: em.list_objects(rt, self._ns(rt, namespace), label_selector)["items"]
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
            lambda em: em.update_object(
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
        self.call(lambda em: em.delete_object(rt, self._ns(rt, namespace), name))

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

    def before(self, method: str | None, path: str, callback: Callable[[], None], *, times: int = 1) -> Hook:
        """Run `callback()` on the server just before the next `times` matching requests are served. It may
        use this object's store helpers, e.g. `api.patch(...)` to make a concurrent write win a race."""
        return self.emulator.add_hook(Hook(method and method.upper(), re.compile(path), callback, times))

    def requests(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Requests served so far (oldest first), optionally filtered by method and path regex (searched)."""
        return [
            r
            for r in self.emulator.log
            if (method is None or r.method == method.upper()) and (path is None or re.search(path, r.path))
        ]

    def clear_requests(self) -> None:
        self.emulator.clear_log()

    # --- clients -------------------------------------------------------------------------------------------

    def api_client(self) -> kubernetes.client.ApiClient:
        """An official-client `ApiClient` configured from the kubeconfig, leaving the global default alone."""
        import kubernetes.client  # only tests that use the official client need it
        import kubernetes.config

        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=str(self.kubeconfig),
            client_configuration=configuration,
        )
        return kubernetes.client.ApiClient(configuration)

    def tool_env(self) -> dict[str, str]:
        """Environment for kubectl/helm: a private HOME and caches under the workdir, our kubeconfig."""
        home = self.workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            "HOME": str(home),
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(home / ".cache" / "helm"),
            "HELM_CONFIG_HOME": str(home / ".config" / "helm"),
            "HELM_DATA_HOME": str(home / ".local" / "share" / "helm"),
        }

    def kubectl(
        self, *args: str, check: bool = False, input: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this server; `check=True` raises on a non-zero exit."""
        if not KUBECTL.exists():
            raise FileNotFoundError(f"{KUBECTL} is missing: run scripts/k8s-tools")
        cmd = [
            str(KUBECTL),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.workdir / 'kubectl-cache'}",
            *args,
        ]
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            env=self.tool_env(),
            check=check,
        )

    def helm(self, *args: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        if not HELM.exists():
            raise FileNotFoundError(f"{HELM} is missing: run scripts/k8s-tools")
        cmd = [str(HELM), f"--kubeconfig={self.kubeconfig}", *args]
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.tool_env(),
            check=check,
        )


__all__ = ["HELM", "KUBECTL", "ApiError", "Fault", "Hook", "KubeAPI", "RecordedRequest", "resource_type"]
