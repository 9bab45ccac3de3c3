"""KubeClient against an API server that does not answer: a read time-out is retried, and when every attempt
times out the error names the object."""

from __future__ import annotations

import pytest

from producer.scaling.kube import client as kube
from producer.scaling.kube.client import KubeClient, UnreachableError
from tests.kubeapi import KubeAPI
from tests.kubeapi.fixtures import kube_api  # noqa: F401

DEPLOYMENT = r"/deployments/task-processor$"


@pytest.fixture(autouse=True)
def short_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # The production read time-out is 10 s; a hung request would hold each test that long per attempt.
    monkeypatch.setattr(kube, "REQUEST_TIMEOUT", (5.0, 0.3))


def connect(api: KubeAPI) -> KubeClient:
    """The client as `task-producer autoscale` configures it."""
    return KubeClient.connect("default", str(api.kubeconfig))


def test_a_get_that_hung_once_is_retried(kube_api: KubeAPI) -> None:  # noqa: F811
    kube_api.create_deployment(replicas=2)
    hung = kube_api.hang("GET", DEPLOYMENT)
    assert connect(kube_api).get_deployment("task-processor").replicas == 2
    assert hung.hits == 1
    # The hung request is answered (503) once the server notices the client left: it may not be listed yet.
    statuses = [r.status for r in kube_api.requests("GET", DEPLOYMENT)]
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 503}, statuses


def test_a_get_that_always_hangs_names_the_object(kube_api: KubeAPI) -> None:  # noqa: F811
    kube_api.create_deployment()
    hung = kube_api.hang("GET", DEPLOYMENT, times=100)
    with pytest.raises(UnreachableError, match=r"deployments\.apps default/task-processor"):
        connect(kube_api).get_deployment("task-processor")
    assert hung.hits == kube.ATTEMPTS  # ours only: the HTTP library's own retries would multiply them
