"""Everything that talks to the Kubernetes API: the only module that imports ``kubernetes``.

It maps the client's exceptions to our own error types (one line each, naming the object and the verb),
retries passing faults (429, 5xx, time-outs) with backoff in one place, honouring ``Retry-After``, and
hands the rest of the producer plain dataclasses, so nothing else depends on the client's models.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from task_processor.errors import TaskProcessorError
from task_processor.logs import get_logger

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""Where a Pod finds its own namespace (the default for WORKER_NAMESPACE in the cluster)."""

REQUEST_TIMEOUT = (5.0, 10.0)
"""Connect and read time-outs, in seconds, of one API request."""

ATTEMPTS = 3
"""Tries per API call for faults that may pass (429, 5xx, time-outs) before the error reaches the loop."""

BACKOFF_FIRST, BACKOFF_MAX = 0.2, 5.0
"""Seconds before the second try, doubling (with jitter) up to the max; a Retry-After header wins."""

PAUSE_ANNOTATION = "task-processor.io/autoscale"
"""On the worker Deployment, the value ``paused`` hands replicas to ops until the annotation is removed."""

log = get_logger("task_processor.kube")
T = TypeVar("T")


class KubeError(TaskProcessorError):
    """An API call failed; ``status`` is the HTTP status (0 when no answer came)."""

    status = 0

    def __init__(self, message: str, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ForbiddenError(KubeError):
    """403: the ServiceAccount lacks a permission (RBAC)."""


class NotFoundError(KubeError):
    """404: the object (or its namespace) does not exist."""


class ConflictError(KubeError):
    """409: someone else wrote the object since we read it (optimistic concurrency)."""


class TooManyRequestsError(KubeError):
    """429: the API server asks us to slow down."""


class ServerError(KubeError):
    """5xx: the API server failed; worth another try."""


class UnreachableError(KubeError):
    """No answer: connection refused, reset or timed out."""


RETRIABLE = (TooManyRequestsError, ServerError, UnreachableError)


@dataclass(frozen=True)
class DeploymentInfo:
    name: str
    namespace: str
    replicas: int
    annotations: dict[str, str]
    selector: str
    resource_version: str | None = None
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    uid: str | None = None

    @property
    def paused(self) -> bool:
        return self.annotations.get(PAUSE_ANNOTATION, "").strip().lower() == "paused"


@dataclass(frozen=True)
class PodInfo:
    name: str
    annotations: dict[str, str]
    deleting: bool


@dataclass(frozen=True)
class Lease:
    """A ``coordination.k8s.io/v1`` Lease as leader election uses it."""

    name: str
    holder: str | None
    duration: int
    renewed_at: datetime.datetime | None
    transitions: int
    resource_version: str | None = None
    acquired_at: datetime.datetime | None = None
    """When the holder acquired the Lease: set on creation and takeover, carried unchanged on renewals."""


def _error(exc: ApiException, verb: str, what: str) -> KubeError:
    status = int(exc.status or 0)
    retry_after = None
    if exc.headers and exc.headers.get("Retry-After", "").isdigit():
        retry_after = float(exc.headers["Retry-After"])
    if status == 403:
        return ForbiddenError(
            f"forbidden to {verb} {what}: grant the verb '{verb}' to the autoscaler's ServiceAccount "
            "(see README, Running on Kubernetes)",
            status,
        )
    if status == 404:
        return NotFoundError(
            f"{what} not found (on {verb}): create it, or set WORKER_DEPLOYMENT/WORKER_NAMESPACE", status
        )
    if status == 409:
        return ConflictError(f"conflict on {verb} {what}: it changed since it was read", status)
    if status == 429:
        return TooManyRequestsError(f"API server throttled {verb} {what} (429)", status, retry_after)
    if status >= 500:
        return ServerError(f"API server failed {verb} {what} ({status} {exc.reason})", status, retry_after)
    return KubeError(f"API server refused {verb} {what} ({status} {exc.reason})", status)


def _label_selector(selector: client.V1LabelSelector | None) -> str:
    """A Deployment's selector (matchLabels and matchExpressions) in the API's query syntax."""
    if selector is None:
        return ""
    terms = [f"{key}={value}" for key, value in sorted((selector.match_labels or {}).items())]
    for expression in selector.match_expressions or []:
        values = ",".join(expression.values or [])
        terms.append(
            {
                "In": f"{expression.key} in ({values})",
                "NotIn": f"{expression.key} notin ({values})",
                "Exists": expression.key,
                "DoesNotExist": f"!{expression.key}",
            }[expression.operator]
        )
    return ",".join(terms)


def _configure(configuration: client.Configuration, kubeconfig: str | None) -> str | None:
    """Load credentials into ``configuration``; return the namespace they imply, if any."""
    if kubeconfig is None:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException:
            pass  # not in a Pod: fall back to a kubeconfig
        else:
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() if SERVICE_ACCOUNT_NAMESPACE.exists() else None
    try:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, OSError) as exc:
        raise KubeError(
            f"no Kubernetes configuration: not in a cluster and no usable kubeconfig ({exc}); "
            "run in a Pod with a ServiceAccount, or set KUBECONFIG"
        ) from None
    namespace = (active or {}).get("context", {}).get("namespace")
    return str(namespace) if namespace else None


class MicroTime(datetime.datetime):
    """A Lease time as the API server's MicroTime wants it: always six fractional digits. The client serializes
    times with ``isoformat()``, which drops the fraction when it is zero, and the server refuses that (400)."""

    def isoformat(self, sep: str = "T", timespec: str = "microseconds") -> str:
        return super().isoformat(sep, timespec)


def micro_time(moment: datetime.datetime) -> MicroTime:
    utc = moment.astimezone(datetime.UTC)
    return MicroTime.combine(utc.date(), utc.timetz())


class KubeClient:
    """The few API calls the autoscaler makes, each with our errors and bounded retries."""

    def __init__(self, api_client: client.ApiClient, namespace: str, attempts: int = ATTEMPTS) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.attempts = attempts
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)

    @classmethod
    def connect(cls, namespace: str | None = None, kubeconfig: str | None = None) -> KubeClient:
        """In-cluster configuration when running in a Pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
        configuration = client.Configuration()
        context_namespace = _configure(configuration, kubeconfig)
        configuration.retries = False  # ``call`` retries; urllib3's own 3 would multiply each hung attempt by 4
        api_client = client.ApiClient(configuration)
        return cls(api_client, namespace or context_namespace or "default")

    def call(self, verb: str, what: str, request: Callable[[], T]) -> T:
        """Run one API request: our error types, and retries with backoff for faults that may pass."""
        pause = BACKOFF_FIRST
        for attempt in range(1, self.attempts + 1):
            try:
                return request()
            except ApiException as exc:
                error = _error(exc, verb, what)
                cause: BaseException = exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                error = UnreachableError(f"API server unreachable on {verb} {what} ({type(exc).__name__})")
                cause = exc
            if not isinstance(error, RETRIABLE) or attempt == self.attempts:
                raise error from cause
            wait = error.retry_after if error.retry_after is not None else pause * random.uniform(0.8, 1.2)
            log.debug("retrying API call", verb=verb, object=what, status=error.status, wait=wait)
            time.sleep(wait)
            pause = min(pause * 2, BACKOFF_MAX)
        raise AssertionError("unreachable")

    def _where(self, kind: str, name: str) -> str:
        return f"{kind} {self.namespace}/{name}"

    def get_deployment(self, name: str) -> DeploymentInfo:
        deployment = self.call(
            "get",
            self._where("deployments.apps", name),
            lambda: self.apps.read_namespaced_deployment(name, self.namespace, _request_timeout=REQUEST_TIMEOUT),
        )
        return self._deployment_info(deployment)

    def list_deployments(self, label_selector: str) -> list[DeploymentInfo]:
        """The namespace's Deployments matching ``label_selector`` (one request, however many there are)."""
        found = self.call(
            "list",
            f"deployments.apps in {self.namespace} ({label_selector})",
            lambda: self.apps.list_namespaced_deployment(
                self.namespace, label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT
            ),
        )
        return [self._deployment_info(deployment) for deployment in found.items]

    def _deployment_info(self, deployment: Any) -> DeploymentInfo:
        spec, meta = deployment.spec, _meta(deployment)
        return DeploymentInfo(
            name=str(meta.name),
            namespace=self.namespace,
            replicas=int(spec.replicas if spec and spec.replicas is not None else 1),
            annotations=dict(meta.annotations or {}),
            selector=_label_selector(spec.selector if spec else None),
            resource_version=meta.resource_version,
            labels=dict(meta.labels or {}),
            uid=meta.uid,
        )

    def scale(self, name: str, replicas: int, resource_version: str | None = None) -> None:
        """Set ``spec.replicas`` through the ``scale`` subresource: what ``kubectl scale`` does too.

        With ``resource_version`` the write is conditional: the API answers 409 (ConflictError) when the
        Deployment changed since that version was read.
        """
        patch: dict[str, Any] = {"spec": {"replicas": replicas}}
        if resource_version is not None:
            patch["metadata"] = {"resourceVersion": resource_version}
        self.call(
            "patch",
            self._where("deployments.apps/scale", name),
            lambda: self.apps.patch_namespaced_deployment_scale(
                name,
                self.namespace,
                patch,
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            ),
        )

    def list_pods(self, label_selector: str) -> list[PodInfo]:
        pods = self.call(
            "list",
            f"pods in {self.namespace} ({label_selector})",
            lambda: self.core.list_namespaced_pod(
                self.namespace, label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT
            ),
        )
        return [
            PodInfo(
                name=str(_meta(pod).name),
                annotations=dict(_meta(pod).annotations or {}),
                deleting=_meta(pod).deletion_timestamp is not None,
            )
            for pod in pods.items
        ]

    def annotate_pod(self, name: str, annotations: dict[str, str]) -> None:
        self.call(
            "patch",
            self._where("pods", name),
            lambda: self.core.patch_namespaced_pod(
                name,
                self.namespace,
                {"metadata": {"annotations": annotations}},
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            ),
        )

    def get_lease(self, name: str) -> Lease | None:
        try:
            lease = self.call(
                "get",
                self._where("leases.coordination.k8s.io", name),
                lambda: self.coordination.read_namespaced_lease(name, self.namespace, _request_timeout=REQUEST_TIMEOUT),
            )
        except NotFoundError:
            return None
        spec = lease.spec
        return Lease(
            name=name,
            holder=spec.holder_identity if spec else None,
            duration=int(spec.lease_duration_seconds or 0) if spec else 0,
            renewed_at=spec.renew_time if spec else None,
            transitions=int(spec.lease_transitions or 0) if spec else 0,
            resource_version=_meta(lease).resource_version,
            acquired_at=spec.acquire_time if spec else None,
        )

    def write_lease(self, lease: Lease) -> Lease:
        """Create the Lease, or replace it if ``lease.resource_version`` is set (409 when someone wrote first)."""
        now = datetime.datetime.now(datetime.UTC)
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=lease.name, resource_version=lease.resource_version),
            spec=client.V1LeaseSpec(
                holder_identity=lease.holder,
                lease_duration_seconds=lease.duration,
                renew_time=micro_time(lease.renewed_at or now),
                acquire_time=None if lease.acquired_at is None else micro_time(lease.acquired_at),
                lease_transitions=lease.transitions,
            ),
        )
        where = self._where("leases.coordination.k8s.io", lease.name)
        if lease.resource_version is None:
            written = self.call(
                "create",
                where,
                lambda: self.coordination.create_namespaced_lease(
                    self.namespace, body, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        else:
            written = self.call(
                "update",
                where,
                lambda: self.coordination.replace_namespaced_lease(
                    lease.name, self.namespace, body, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        return dataclasses.replace(lease, resource_version=_meta(written).resource_version)


def _meta(obj: Any) -> client.V1ObjectMeta:
    """An object's metadata: the API server always sends it; the client's types allow None."""
    meta = obj.metadata
    if meta is None:
        raise KubeError(f"the API returned a {type(obj).__name__} without metadata")
    return meta  # type: ignore[no-any-return]
