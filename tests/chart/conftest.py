"""Helpers for the Helm chart tests: the pinned helm binary and rendering with values."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from inferops.devcluster.binaries import ensure_binaries

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "inferops"
# helm built from source reports Kubernetes v1.20 as its offline default; the chart needs 1.27+.
KUBE_VERSION = "1.31.0"


@pytest.fixture(scope="session")
def helm() -> Path:
    return ensure_binaries(("helm",))["helm"]


def run_helm(helm: Path, *args: str, kubeconfig: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env_args = [f"--kubeconfig={kubeconfig}"] if kubeconfig else []
    return subprocess.run([str(helm), *env_args, *args], capture_output=True, text=True, timeout=timeout)


def set_args(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def render(helm: Path, values: dict[str, str] | None = None, namespace: str = "inferops-system", release: str = "inferops") -> list[dict]:
    result = run_helm(helm, "template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION, *set_args(values or {}))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def apply_crds(cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/inferencemodels.inferops.dev", "crd/hardwareclasses.inferops.dev")
