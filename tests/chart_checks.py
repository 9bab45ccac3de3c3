"""What the modules split from tests/test_chart.py share (tests/test_chart.py and tests/test_chart_*.py; what all
chart tests share is in tests/chart.py): the secure-pod check, the README tables the chart must agree with, the
Redis users, and the Kubernetes versions the rendered objects are checked against."""

from __future__ import annotations

import re
from typing import Any

from tests.chart import REPO_ROOT, component, containers, pod_specs

README = REPO_ROOT / "README.md"

APP_UID = 10001

KUBE_VERSIONS = ("1.25.0", "1.37.0")
"""The lowest and highest Kubernetes versions the chart supports (kubernetes-validate bundles 1.25-1.37)."""


# --- reading rendered objects ---------------------------------------------------------------------------------


def security_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Every departure from the secure pod defaults, as readable lines (empty: all good)."""
    problems: list[str] = []
    for where, spec, owner in pod_specs(docs):
        pod = spec.get("securityContext", {})
        for key, want in (
            ("runAsNonRoot", True),
            ("runAsUser", APP_UID),
            ("runAsGroup", APP_UID),
            ("fsGroup", APP_UID),
        ):
            if pod.get(key) != want:
                problems.append(f"{where}: pod securityContext.{key} is {pod.get(key)!r}, want {want!r}")
        if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile is {pod.get('seccompProfile')!r}, want RuntimeDefault")
        calls_api = component(owner) == "producer" and owner["kind"] == "Deployment"
        if not calls_api and spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: does not call the API but automountServiceAccountToken is not false")
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in containers(spec):
            sc = c.get("securityContext", {})
            name = f"{where} container {c['name']}"
            checks = {
                "allowPrivilegeEscalation": (sc.get("allowPrivilegeEscalation"), False),
                "readOnlyRootFilesystem": (sc.get("readOnlyRootFilesystem"), True),
                "runAsNonRoot": (sc.get("runAsNonRoot", pod.get("runAsNonRoot")), True),
                "runAsUser": (sc.get("runAsUser", pod.get("runAsUser")), APP_UID),
                "seccompProfile.type": (
                    sc.get("seccompProfile", pod.get("seccompProfile", {})).get("type"),
                    "RuntimeDefault",
                ),
            }
            for key, (got, wanted) in checks.items():
                if got != wanted:
                    problems.append(f"{name}: securityContext.{key} is {got!r}, want {wanted!r}")
            caps = sc.get("capabilities", {})
            if "ALL" not in caps.get("drop", []) or caps.get("add"):
                problems.append(f"{name}: capabilities are {caps!r}, want drop [ALL] and nothing added")
            if sc.get("privileged"):
                problems.append(f"{name}: privileged")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            if mounts.get("/tmp") not in tmp_volumes:
                problems.append(f"{name}: no emptyDir at /tmp beside the read-only root filesystem")
    return problems


def readme_table(header: str) -> list[list[str]]:
    """The rows of the README table whose header line starts with ``header``, as lists of cells."""
    lines = README.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert starts, f"README.md has no table starting {header!r}: the chart tests read it as the contract"
    rows = []
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


REDIS_USERS = ("admin", "worker", "autoscaler", "producer", "dashboard")
"""Every Redis user; the Secret holds "<user>-password" for each."""
