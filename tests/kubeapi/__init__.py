"""An in-memory Kubernetes API server for tests, reached over real HTTP (see README.md)."""

from __future__ import annotations

from tests.kubeapi.emulator import KubeEmulator
from tests.kubeapi.rules import Delay, Fault, Hook, RecordedRequest
from tests.kubeapi.server import FAKE_TOKEN, HELM, KUBECTL, KubeAPI, resource_type
from tests.kubeapi.status import ApiError

__all__ = [
    "FAKE_TOKEN",
    "HELM",
    "KUBECTL",
    "ApiError",
    "Delay",
    "Fault",
    "Hook",
    "KubeAPI",
    "KubeEmulator",
    "RecordedRequest",
    "resource_type",
]
