"""kubectl and helm, the pinned binaries from scripts/k8s-tools, run against a running emulator."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
KUBECTL = TOOLS_BIN / "kubectl"  # installed by scripts/k8s-tools
HELM = TOOLS_BIN / "helm"


class Tools:
    """Mixed into `KubeAPI`: runs the tools with its kubeconfig and a private HOME under its workdir."""

    workdir: Path
    kubeconfig: Path

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
