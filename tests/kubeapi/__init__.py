"""An in-memory Kubernetes API server for tests, reached over real HTTP (see README.md)."""

from __future__ import annotations

from tests.kubeapi.emulator import ApiError, Fault, Hook, KubeEmulator, RecordedRequest
from tests.kubeapi.server import HELM, KUBECTL, KubeAPI, resource_type

__all__ = [
    "HELM",
    "KUBECTL",
    "ApiError",
    "Fault",
    "Hook",
    "KubeAPI",
    "KubeEmulator",
    "RecordedRequest",
    "resource_type",
]
