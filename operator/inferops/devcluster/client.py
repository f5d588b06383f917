"""Any cluster reached through a kubeconfig (the local one, kind, or an existing one), driven with kubectl."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from . import binaries


class ClusterError(RuntimeError):
    pass


class Cluster:
    """Any cluster reached through a kubeconfig: the local one, kind, or an existing one."""

    kubeconfig: Path
    kubectl_path: Path | None = None

    def __init__(self, kubeconfig: Path | str, kubectl_path: Path | None = None):
        self.kubeconfig = Path(kubeconfig)
        self.kubectl_path = kubectl_path

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        if self.kubectl_path is None:
            self.kubectl_path = binaries.ensure_binaries(("kubectl",))["kubectl"]
        result = subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr.strip()}")
        return result

    def with_token(self, token: str, kubeconfig: Path) -> "Cluster":
        """The same cluster seen by the bearer of `token` (and nothing else): for RBAC checks."""
        config = json.loads(self.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json").stdout)
        config["users"] = [{"name": "token-user", "user": {"token": token}}]
        config["contexts"][0]["context"]["user"] = "token-user"
        kubeconfig.write_text(json.dumps(config))
        kubeconfig.chmod(0o600)
        return Cluster(kubeconfig, self.kubectl_path)

    def has_default_service_account(self, namespace: str) -> bool:
        return self.kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0

    def create_namespace(self, name: str, timeout: float = 30) -> None:
        """Create a namespace and wait until it has its default ServiceAccount (pods need it; the
        controller manager adds it, seconds later on a loaded machine). `kubectl wait` cannot do
        this: it fails at once on an object that does not exist yet."""
        self.kubectl("create", "namespace", name)
        deadline = time.monotonic() + timeout
        while not self.has_default_service_account(name):
            if time.monotonic() > deadline:
                raise ClusterError(f"namespace {name} got no default ServiceAccount within {timeout:.0f} s")
            time.sleep(0.2)

    def has_fake_gpu_nodes(self) -> bool:
        out = self.kubectl("get", "nodes", "-l", "nvidia.com/gpu.product,type=kwok", "-o", "name", check=False)
        return out.returncode == 0 and bool(out.stdout.strip())
