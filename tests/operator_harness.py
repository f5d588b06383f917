"""The operator under test as a process: the real `inferops operator`, run as a ServiceAccount
with the Helm chart's RBAC (shared by the cluster and the real-node tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from inferops.devcluster.binaries import ensure_binaries

REPO = Path(__file__).resolve().parents[1]
OPERATOR_NAMESPACE = "inferops-system"
OPERATOR_SA = "inferops"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SA}"


def chart_rbac(namespace: str, *sets: str) -> list[dict]:
    """The ServiceAccount, ClusterRole(s) and binding(s) exactly as the chart renders them
    (`sets`: more `--set` values, e.g. replicaCount=2 for the peering grants)."""
    helm = ensure_binaries(("helm",))["helm"]
    extra = [a for s in sets for a in ("--set", s)]
    rendered = subprocess.run(
        [str(helm), "template", "inferops", str(REPO / "charts" / "inferops"), "--namespace", namespace, "--set", "webhook.enabled=true", "--set", "webhook.certSecret=inferops-webhook-tls", *extra],
        capture_output=True, text=True, check=True,
    ).stdout
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    return [d for d in yaml.safe_load_all(rendered) if d and d.get("kind") in kinds]


class OperatorProcess:
    def __init__(self, cluster, workdir: Path, env: dict[str, str], args: tuple[str, ...] = (), log_name: str = "operator.log"):
        self.cluster = cluster
        self.workdir = workdir
        # Its temporary files (the webhook's keys, the client's CA file) in the test's own folder:
        # a replica killed with SIGKILL runs no cleanup, and /tmp is shared with later runs.
        tmp = workdir / f"tmp-{log_name.removesuffix('.log')}"
        tmp.mkdir(exist_ok=True)
        self.env = {**env, "TMPDIR": str(tmp)}
        self.args = list(args)  # extra `kopf run` arguments, e.g. --peering=NAME
        self.proc: subprocess.Popen | None = None
        self.log = workdir / log_name
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        out = open(self.log, "a")
        out.write(f"\n===== start #{self.starts}\n")
        out.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inferops.cli", "operator", "--verbose", *self.args],
            env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        marker = f"===== start #{self.starts}\n"  # a restart must not be fooled by an earlier run's lines
        while "Initial authentication has finished" not in self.log.read_text().split(marker)[-1] or not self._webhook_ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"operator did not start:\n{self.tail()}")
            time.sleep(0.2)

    def _webhook_ready(self) -> bool:
        return self.cluster.kubectl("get", "validatingwebhookconfiguration", "validate.inferops.dev", check=False).returncode == 0

    def kill(self) -> None:
        """SIGKILL, as a node failure or OOM would: no cleanup runs."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def operator_kubeconfig(cluster, workdir: Path) -> Path:
    """The CRDs and the chart's RBAC in `cluster`; returns a kubeconfig of the operator's
    ServiceAccount token (the operator under test acts with exactly the chart's rights)."""
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    for crd in ("inferencemodels.inferops.dev", "hardwareclasses.inferops.dev"):
        cluster.kubectl("wait", f"crd/{crd}", "--for=condition=Established", "--timeout=30s")
    cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    for obj in chart_rbac(OPERATOR_NAMESPACE):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    token = cluster.kubectl("create", "token", OPERATOR_SA, "-n", OPERATOR_NAMESPACE, "--duration=24h").stdout.strip()
    kubeconfig = workdir / "operator.kubeconfig"
    cluster.with_token(token, kubeconfig)
    return kubeconfig
