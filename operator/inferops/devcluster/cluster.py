"""A real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC on),
kube-controller-manager, kube-scheduler and kwok for fake CPU and GPU nodes, and optionally
a real CPU node (node.py).

Every process is started in its own process group with a parent-death signal, so nothing
outlives the Python process that owns the cluster, even when a test run is killed.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..ports import free_port  # noqa: F401 - re-exported: callers import it from here
from . import binaries
from .client import Cluster, ClusterError  # noqa: F401 - re-exported: callers import them from here
from .pki import LocalPKI

PROFILES = Path(__file__).parent / "profiles"
_PR_SET_PDEATHSIG = 1


# Every write request, by whom: lets tests count what a reconcile really wrote. Reads are
# recorded too, but only those of ServiceAccounts in the operator's namespace (request-rate
# benchmarks); audit_writes() keeps to writes.
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
OPERATOR_SERVICE_ACCOUNTS = "system:serviceaccounts:inferops-system"
AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [{", ".join(WRITE_VERBS)}]
- level: Metadata
  userGroups: ["{OPERATOR_SERVICE_ACCOUNTS}"]
  verbs: [get, list, watch]
- level: None
"""


def die_with_parent() -> None:  # runs in the child between fork and exec
    os.setpgrp()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class LocalCluster(Cluster):
    """The control plane, with its state (certificates, etcd data, logs) under `workdir`."""

    def __init__(self, workdir: Path | str, real_nodes: int = 0):
        if real_nodes not in (0, 1):
            # Two kubelets on one host would share /kubepods, iptables and device-plugin paths.
            raise ClusterError(f"real_nodes={real_nodes}: one real node per host is supported for now")
        self.workdir = Path(workdir)
        self.real_nodes = real_nodes
        self.nodes: list = []  # RealNode, started after the control plane
        super().__init__(self.workdir / "kubeconfig")
        self.server = ""
        self._procs: list[_Proc] = []
        self._bins: dict[str, Path] = {}
        self._stopped: dict[str, list[str]] = {}

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 90) -> "LocalCluster":
        """Build what is missing (no time limit: a cold build takes many minutes), then give
        the processes `timeout` seconds to become ready."""
        if self.real_nodes:
            from .node import check_host

            check_host()  # one clear line before anything starts
        wanted = binaries.CONTROL_PLANE_BINARIES + (binaries.NODE_BINARIES if self.real_nodes else ())
        self._bins = binaries.ensure_binaries(wanted)
        self.kubectl_path = self._bins["kubectl"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        try:
            self._start_all(time.monotonic() + timeout)
        except BaseException as exc:
            try:
                self.stop()
            except ClusterError as cleanup:  # keep the start failure as the error raised
                exc.add_note(str(cleanup))
            raise
        return self

    def _start_all(self, deadline: float) -> None:
        pki = LocalPKI(self.workdir / "pki")
        serving = pki.issue("apiserver", "kube-apiserver", server=True)
        admin = pki.issue("admin", "inferops-admin", organization="system:masters", client=True)
        sa = pki.service_account_keys()
        api_port, etcd_port, peer_port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        self._ca = pki.ca.cert
        self.write_kubeconfig(self.kubeconfig, admin.cert, admin.key)

        self.audit_log = self.workdir / "logs" / "audit.jsonl"
        audit_policy = self.workdir / "audit-policy.yaml"
        audit_policy.write_text(AUDIT_POLICY)
        etcd_data = self.workdir / "etcd"
        self._spawn(
            "etcd",
            "--name=inferops-dev",
            f"--data-dir={etcd_data}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=inferops-dev=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync",  # a throwaway test cluster: speed over durability
            "--log-level=warn",
        )
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={pki.ca.cert}",
            f"--service-account-key-file={sa.cert}",
            f"--service-account-signing-key-file={sa.key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.0.0.0/16",  # room for a Service per model at 1,000+ models
            # With a real node, the Node authorizer gives kubelets exactly their own node's objects.
            "--authorization-mode=" + ("Node,RBAC" if self.real_nodes else "RBAC"),
            "--allow-privileged=true",
            "--profiling=false",
            "--endpoint-reconciler-type=none",
            f"--audit-policy-file={audit_policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
            "--audit-log-maxsize=10240",  # MB; the default rotates at 100 MB and audit_requests() reads one file
            "--v=1",
            *self._real_node_apiserver_flags(pki),
        )
        self._wait_http(f"{self.server}/readyz", deadline, pki, admin)
        common = [
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--v=1",
        ]
        self._spawn(
            "kube-controller-manager",
            *common,
            f"--secure-port={free_port()}",
            f"--service-account-private-key-file={sa.key}",
            f"--root-ca-file={pki.ca.cert}",
            "--use-service-account-credentials=false",
            "--concurrent-gc-syncs=10",
        )
        self._spawn("kube-scheduler", *common, f"--secure-port={free_port()}")
        self._spawn(
            "kwok",
            f"--kubeconfig={self.kubeconfig}",
            f"--config={PROFILES / 'kwok-stages.yaml'}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-ip=10.1.1.1",
            "--node-lease-duration-seconds=40",  # kwok renews node Leases: the heartbeat that keeps nodes Ready
            "--cidr=10.1.2.0/24",
            f"--node-port={free_port()}",
            f"--server-address=127.0.0.1:{free_port()}",
        )
        self.kubectl("apply", "-f", str(PROFILES / "nodes.yaml"))
        self._wait(lambda: self._all_nodes_ready(), deadline, "fake nodes to become Ready")
        self._wait(lambda: self.has_default_service_account("default"), deadline, "the default ServiceAccount")
        if self.real_nodes:
            from .node import RealNode

            node = RealNode(self)
            self.nodes.append(node)
            node.start(pki, deadline)

    def _real_node_apiserver_flags(self, pki: LocalPKI) -> list[str]:
        if not self.real_nodes:
            return []
        from .podaccess import apiserver_flags

        return apiserver_flags(pki)

    def stop(self) -> None:
        node_errors = []
        for node in self.nodes:  # first: draining needs the API server
            node_errors += node.stop()
        self.nodes.clear()
        for proc in reversed(self._procs):
            if proc.popen.poll() is None:
                try:
                    os.killpg(proc.popen.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in reversed(self._procs):
            try:
                proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(timeout=5)
        self._procs.clear()
        if node_errors:
            raise ClusterError("real node teardown left host state behind: " + "; ".join(node_errors))

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        return [p.popen.pid for p in self._procs]

    # -- helpers -----------------------------------------------------------------------

    def audit_writes(self, user: str | None = None) -> list[dict]:
        """Write requests the API server completed, oldest first (optionally only those of `user`)."""
        return [e for e in self.audit_requests(user) if e.get("verb") in WRITE_VERBS]

    def audit_requests(self, user: str | None = None) -> list[dict]:
        """Audited requests, once each (a watch logs when it starts and ends), oldest first.

        Reads are audited only for the ServiceAccounts of the inferops-system namespace."""
        events, seen = [], set()
        if self.audit_log.exists():
            for line in self.audit_log.read_text().splitlines():
                event = json.loads(line)
                if event.get("auditID") in seen:
                    continue
                seen.add(event.get("auditID"))
                if user is None or event.get("user", {}).get("username") == user:
                    events.append(event)
        return events

    def restart_process(self, name: str) -> None:
        """Stop and start one control-plane process with the same arguments (fault tests)."""
        self.stop_process(name)
        self.start_process(name)

    def stop_process(self, name: str) -> None:
        """SIGTERM one control-plane process and wait for it; start_process() brings it back."""
        proc = next(p for p in self._procs if p.name == name)
        self._stopped[name] = list(proc.popen.args[1:])
        os.killpg(proc.popen.pid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(timeout=5)
        self._procs.remove(proc)

    def start_process(self, name: str, timeout: float = 120) -> None:
        """Start a process stopped by stop_process() and wait until the API server answers ready
        again (for etcd too: the API server is ready only with its storage back)."""
        self._spawn(name, *self._stopped.pop(name))
        if name in ("etcd", "kube-apiserver"):
            deadline = time.monotonic() + timeout
            self._wait(lambda: self.kubectl("get", "--raw", "/readyz", check=False, timeout=10).stdout.strip() == "ok", deadline, f"{name} to come back (API server /readyz)")
            self._wait_controllers(deadline)

    def _wait_controllers(self, deadline: float) -> None:
        """The controllers' watches reconnect with a backoff after an outage: wait until the
        controller manager acts again (a new namespace gets its default ServiceAccount)."""
        probe = f"probe-{int(time.time() * 1000) % 10**9}"
        self.kubectl("create", "namespace", probe)
        try:
            self._wait(lambda: self.has_default_service_account(probe), deadline, "the controller manager after a restart")
        finally:
            self.kubectl("delete", "namespace", probe, "--wait=false", check=False)

    def node_procs(self, node: str) -> list[_Proc]:
        return [p for p in self._procs if p.name.startswith(f"{node}-")]

    def stop_proc(self, proc: _Proc | None, timeout: float = 15) -> None:
        if proc is None or proc not in self._procs:
            return
        try:
            os.killpg(proc.popen.pid, signal.SIGTERM)
            proc.popen.wait(timeout=timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(timeout=5)
        self._procs.remove(proc)

    def _spawn(self, name: str, *args: str) -> None:
        self.spawn(name, self._bins[name], *args)

    def spawn(self, name: str, binary: Path, *args: str, env: dict[str, str] | None = None) -> None:
        log = self.workdir / "logs" / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                [str(binary), *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                cwd=self.workdir,
            )
        self._procs.append(_Proc(name, popen, log))

    def _check_alive(self) -> None:
        for proc in self._procs:
            if proc.popen.poll() is not None:
                raise ClusterError(f"{proc.name} exited with {proc.popen.returncode}; last lines of {proc.log}:\n{proc.tail()}")

    def _wait(self, ready, deadline: float, what: str) -> None:
        while True:
            self._check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n{p.tail(10)}" for p in self._procs)
                raise ClusterError(f"timed out waiting for {what}\n{logs}")
            time.sleep(0.2)

    def _wait_http(self, url: str, deadline: float, pki: LocalPKI, client) -> None:
        ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
        ctx.load_cert_chain(str(client.cert), str(client.key))

        def ok() -> bool:
            try:
                with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False

        self._wait(ok, deadline, f"{url}")

    def _all_nodes_ready(self) -> bool:
        out = self.kubectl("get", "nodes", "-o", "json", check=False)
        if out.returncode != 0:
            return False
        nodes = json.loads(out.stdout)["items"]
        return bool(nodes) and all(
            any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", [])) for n in nodes
        )

    def write_kubeconfig(self, path: Path, cert: Path, key: Path) -> None:
        ca = self._ca
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "inferops-dev", "cluster": {"server": self.server, "certificate-authority": str(ca)}}],
            "users": [{"name": "inferops-admin", "user": {"client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": "inferops-dev", "context": {"cluster": "inferops-dev", "user": "inferops-admin"}}],
            "current-context": "inferops-dev",
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
