"""Pytest fixtures for the emulator; import them into a test module or a conftest.py explicitly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kubeapi.server import HELM, KUBECTL, KubeAPI

requires_kubectl = pytest.mark.skipif(
    not KUBECTL.exists(),
    reason=f"{KUBECTL} missing: run scripts/k8s-tools",
)
requires_helm = pytest.mark.skipif(not HELM.exists(), reason=f"{HELM} missing: run scripts/k8s-tools")


@pytest.fixture
def kube_api(tmp_path: Path) -> Iterator[KubeAPI]:
    """A fresh, empty API server (namespace `default` exists) for one test; stopped afterwards."""
    with KubeAPI.start(tmp_path / "kubeapi") as api:
        yield api
