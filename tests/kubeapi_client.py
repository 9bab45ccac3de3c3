"""What the emulator's own tests (tests/test_kubeapi_client.py, tests/test_kubeapi_faults.py,
tests/test_kubeapi_kubectl.py) share: the namespace they work in, the path of the Deployment's Scale, and the
``apps`` fixture, the official client's AppsV1Api on the test's ``kube_api``. A test module that uses the fixture
imports ``apps_fixture``, next to ``kube_api`` (from tests.kubeapi.fixtures)."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.kubeapi import KubeAPI

NS = "default"
SCALE_PATH = r"/apis/apps/v1/namespaces/default/deployments/task-processor/scale$"


@pytest.fixture(name="apps")
def apps_fixture(kube_api: KubeAPI) -> client.AppsV1Api:
    return client.AppsV1Api(kube_api.api_client())
