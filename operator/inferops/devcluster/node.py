"""A real CPU node beside kwok's fake ones: containerd, kubelet and kube-proxy on this host.

Everything the node needs lives under the cluster's workdir, except what the upstream
programs hard-code (see hoststate.PATHS) and a short state directory under /run (unix
socket paths are limited to 108 bytes). The host is snapshotted before the node starts and
everything that appeared since is undone when it stops (hoststate.undo).

Network: the node's address is the gateway of its own bridge (10.200.0.1 on `inferops0`),
so the API server, the kubelet and the pods talk over addresses of this host only. The
Service CIDR is routed to that bridge (not to the default gateway), pods get routes to the
pod and Service CIDRs only, and a mangle-table rule drops anything forwarded from the pod
CIDR out of any other interface: nothing leaves the machine.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from . import binaries, hoststate, images, podaccess
from .cluster import free_port
from .pki import LocalPKI

if TYPE_CHECKING:
    from .cluster import LocalCluster

POD_CIDR = "10.200.0.0/24"  # kwok's pods use 10.1.2.0/24, Services 10.0.0.0/16
NODE_IP = "10.200.0.1"  # the bridge's address: the node's InternalIP and the pods' gateway
SERVICE_CIDR = "10.0.0.0/16"
BRIDGE = "inferops0"  # our own name, so no other CNI setup's cni0 is touched
CNI_BIN = "/usr/lib/cni"  # Debian's containernetworking-plugins
LABELS = {"inferops.dev/node": "real", "node.kubernetes.io/instance-type": "real-cpu"}
LOCK_WAIT = 600  # seconds a second session waits for the host's real node beyond its start timeout
APT_HINT = "apt-get install -y runc containernetworking-plugins iptables"
DROP_RULE = ["FORWARD", "-s", POD_CIDR, "!", "-o", BRIDGE, "-m", "comment", "--comment", "inferops: pods never leave this host", "-j", "DROP"]


class NodeError(RuntimeError):
    """The host cannot run a real node (callers may fall back to kwok-only)."""


def check_host() -> None:
    """Raise NodeError with one line when this host cannot run containers."""
    if os.geteuid() != 0:
        raise NodeError("a real node needs root (containerd, runc, iptables and mounts)")
    missing = [n for n in ("runc", "iptables", "iptables-save", "ip") if not shutil.which(n, path="/usr/sbin:/usr/bin:/sbin:/bin")]
    missing += [f"{CNI_BIN}/{p}" for p in ("bridge", "host-local", "portmap", "loopback") if not os.path.exists(f"{CNI_BIN}/{p}")]
    if missing:
        raise NodeError(f"a real node needs {', '.join(missing)}: {APT_HINT}")


def _yaml(data: dict) -> str:
    return json.dumps(data, indent=2)  # JSON is YAML: the kubelet and kube-proxy read both


class RealNode:
    def __init__(self, cluster: "LocalCluster", name: str = "real-node-0"):
        self.cluster = cluster
        self.name = name
        self.dir = cluster.workdir / "nodes" / name
        # Short and unique per workdir: containerd's socket lives here.
        self.run_dir = Path("/run/inferops") / hashlib.sha256(str(self.dir).encode()).hexdigest()[:10]
        self.sock = self.run_dir / "containerd.sock"
        # The kubelet puts unix sockets in its root dir (pod-resources/NNNNNNNN, plugins): with
        # a deep workdir (pytest's tmp_path) they pass the 108-byte limit, so then it lives on
        # disk at a short path of its own.
        self.kubelet_root = self.dir / "kubelet"
        if len(str(self.kubelet_root)) > 60:
            self.kubelet_root = Path("/var/lib/inferops") / self.run_dir.name / "kubelet"
        self.before: hoststate.HostState | None = None
        self._lock = None  # the host lock's file, held while the node runs
        self._bins: dict[str, Path] = {}
        self.images: dict[str, str] = {}  # binary name -> image reference, imported into containerd

    # -- start ----------------------------------------------------------------------------

    def start(self, pki: LocalPKI, deadline: float) -> None:
        """Start the node, or raise NodeError with one line (the logs say more)."""
        try:
            self._start(pki, deadline)
        except NodeError:
            raise
        except Exception as exc:  # a failed start: the host cannot run the node as configured
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NodeError(f"real node {self.name} did not start: {first} (logs: {self.cluster.workdir / 'logs'})") from exc

    def _start(self, pki: LocalPKI, deadline: float) -> None:
        check_host()
        self._bins = binaries.ensure_binaries(binaries.NODE_BINARIES)
        self._take_host_lock(deadline + LOCK_WAIT)
        if Path(f"/sys/class/net/{BRIDGE}").exists():  # left by a process killed with SIGKILL
            raise NodeError(f"{BRIDGE} exists but no real node holds the host lock: a killed run left it (ip link delete {BRIDGE})")
        self.before = hoststate.snapshot()
        for sub in ("containerd", "pod-logs", "cni/net.d", "cni/ipam", "volume-plugins", "pki"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.kubelet_root.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._network()
        podaccess.route_api_server(podaccess.api_port(self.cluster))
        podaccess.start_coredns(self, pki, deadline)
        self._containerd(deadline)
        for binary in ("inferops-pause", "inferops-ok"):
            self.images[binary] = self.import_image(self._bins[binary])
        self._kubelet(pki)
        self.cluster._wait(self.ready, deadline, f"real node {self.name} to become Ready")
        self._kube_proxy(pki)
        self.cluster._wait(self._proxy_synced, deadline, f"kube-proxy on {self.name}")

    def _take_host_lock(self, deadline: float) -> None:
        """One real node per host (they would share /kubepods, iptables, the bridge): a second
        test session waits for the first to stop its node, bounded."""
        self._lock = open(binaries.cache_root() / "real-node.lock", "w")
        waited = False
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._lock.close()
                    raise NodeError("another real node kept this host busy; one per host for now") from None
                if not waited:
                    print(f"[inferops node] another real node runs on this host; waiting up to {deadline - time.monotonic():.0f}s", file=sys.stderr, flush=True)
                    waited = True
                time.sleep(1)

    def _network(self) -> None:
        def ip(*args: str) -> None:
            out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
            if out.returncode != 0:
                raise NodeError(f"ip {' '.join(args)} failed: {out.stderr.strip()}")

        # Made here (not by the CNI plugin on the first pod) so the node IP exists before the
        # kubelet binds to it and the Service route never falls back to the default gateway.
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")
        ip("route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP)
        # mangle FORWARD runs before kube-proxy's filter rules can accept anything.
        out = subprocess.run(["iptables", "-w", "-t", "mangle", "-I", *DROP_RULE], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise NodeError(f"could not add the pod egress drop rule: {out.stderr.strip()}")
        conflist = {
            "cniVersion": "1.0.0",
            "name": "inferops",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,  # the bridge address is the pods' gateway...
                    "isDefaultGateway": False,  # ...for the routes below only: no default route
                    "ipMasq": False,  # nothing is NATed towards the outside
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                        "routes": [{"dst": SERVICE_CIDR}, {"dst": POD_CIDR}],
                        "dataDir": str(self.dir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (self.dir / "cni" / "net.d" / "10-inferops.conflist").write_text(json.dumps(conflist, indent=2))

    def _containerd(self, deadline: float) -> None:
        config = f"""version = 3
root = "{self.dir / 'containerd'}"
state = "{self.run_dir / 'state'}"
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[debug]
  level = "warn"
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "{self.pause_image}"
[plugins.'io.containerd.cri.v1.runtime']
  # This VM lacks CAP_SYS_RESOURCE in its bounding set: without this runc cannot lower
  # a container's oom_score_adj and fails every container.
  restrict_oom_score_adj = true
  enable_selinux = false
[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["{CNI_BIN}"]
  conf_dir = "{self.dir / 'cni' / 'net.d'}"
  max_conf_num = 1
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = "{shutil.which('runc', path='/usr/sbin:/usr/bin:/sbin:/bin')}"
  SystemdCgroup = false
"""
        (self.dir / "containerd.toml").write_text(config)
        self._spawn("containerd", "--config", str(self.dir / "containerd.toml"))
        self.cluster._wait(lambda: self.ctr("version", check=False).returncode == 0, deadline, "containerd")

    @property
    def pause_image(self) -> str:
        return self._image_ref(self._bins["inferops-pause"])

    @staticmethod
    def _image_ref(binary: Path) -> str:
        return f"inferops.dev/{binary.name}:{binary.parent.name.rsplit('-', 1)[-1]}"

    def import_image(self, binary: Path) -> str:
        """Pack a static binary as a one-file image, import it; returns its reference."""
        name, tag = self._image_ref(binary).rsplit(":", 1)
        ref, archive = images.static_binary_image(name, tag, binary)
        self.import_archive(archive)
        return ref

    def import_archive(self, archive: Path) -> None:
        self.ctr("images", "import", str(archive), timeout=120)

    def ctr(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        out = subprocess.run([str(self._bins["ctr"]), "--address", str(self.sock), "-n", "k8s.io", *args], capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)} failed: {out.stderr.strip()}")
        return out

    def _kubelet(self, pki: LocalPKI) -> None:
        client = pki.issue(f"node-{self.name}", f"system:node:{self.name}", organization="system:nodes", client=True)
        serving = pki.issue(f"kubelet-{self.name}", self.name, server=True, sans=[NODE_IP, self.name])
        self.kubelet_port, healthz = free_port(), free_port()
        kubeconfig = self.dir / "kubelet.kubeconfig"
        self.cluster.write_kubeconfig(kubeconfig, client.cert, client.key)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "tlsCertFile": str(serving.cert),
            "tlsPrivateKeyFile": str(serving.key),
            # The API server presents a client cert of the cluster CA; everything else is refused.
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True}, "x509": {"clientCAFile": str(pki.ca.cert)}},
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,  # this VM boots hybrid cgroup v1
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.sock}",
            "podLogsDir": str(self.dir / "pod-logs"),
            "volumePluginDir": str(self.dir / "volume-plugins"),
            "resolvConf": "",  # pods get no upstream DNS server: nothing to ask off the host
            "clusterDNS": [NODE_IP],  # CoreDNS (podaccess.py), cluster names only
            "clusterDomain": podaccess.CLUSTER_DOMAIN,
            "registerNode": True,
            "serializeImagePulls": False,
            # Images are imported, never pulled: never garbage-collect them on a full test disk.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "nodeStatusReportFrequency": "10s",
        }
        (self.dir / "kubelet.yaml").write_text(_yaml(config))
        self._spawn(
            "kubelet",
            f"--config={self.dir / 'kubelet.yaml'}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={self.kubelet_root}",
            f"--cert-dir={self.dir / 'pki'}",
            f"--hostname-override={self.name}",
            f"--node-ip={NODE_IP}",
            f"--node-labels={','.join(f'{k}={v}' for k, v in LABELS.items())}",
            "--v=1",
        )

    def _kube_proxy(self, pki: LocalPKI) -> None:
        client = pki.issue("kube-proxy", "system:kube-proxy", client=True)
        kubeconfig = self.dir / "kube-proxy.kubeconfig"
        self.cluster.write_kubeconfig(kubeconfig, client.cert, client.key)
        self.proxy_healthz = free_port()
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables",
            "hostnameOverride": self.name,
            "clusterCIDR": POD_CIDR,
            "bindAddress": "127.0.0.1",
            "healthzBindAddress": f"127.0.0.1:{self.proxy_healthz}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # Zeros leave the host's conntrack sysctls alone; no localhost NodePorts keeps
            # route_localnet off.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
            "nodePortAddresses": [f"{NODE_IP}/32"],
        }
        (self.dir / "kube-proxy.yaml").write_text(_yaml(config))
        self._spawn("kube-proxy", f"--config={self.dir / 'kube-proxy.yaml'}", "--v=1")

    def _spawn(self, name: str, *args: str) -> None:
        env = {"PATH": f"{self._bins['containerd'].parent}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
        self.cluster.spawn(f"{self.name}-{name}", self._bins[name], *args, env=env)

    # -- state ----------------------------------------------------------------------------

    def ready(self) -> bool:
        out = self.cluster.kubectl("get", "node", self.name, "-o", "json", check=False)
        if out.returncode != 0:
            return False
        node = json.loads(out.stdout)
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))
        # The node controller lifts its not-ready taint a few seconds after the kubelet reports
        # Ready: a pod created in between can stay Pending past a test's 300 s wait.
        tainted = any(t.get("key", "").startswith("node.kubernetes.io/") and t.get("effect") == "NoSchedule" for t in node.get("spec", {}).get("taints") or [])
        return ready and not tainted and not node.get("spec", {}).get("unschedulable")

    def _proxy_synced(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.proxy_healthz}/healthz", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    # -- stop -----------------------------------------------------------------------------

    def drain(self, timeout: float = 30) -> None:
        """Stop the node's pods through the kubelet, so it tears down their sandboxes (CNI DEL,
        mounts) while it still runs; bounded: what is left is forced off by stop()."""
        kubectl = self.cluster.kubectl
        if kubectl("cordon", self.name, check=False, timeout=15).returncode != 0:
            return  # API server gone: stop() cleans up without it
        selector = f"spec.nodeName={self.name}"
        kubectl("delete", "pods", "-A", f"--field-selector={selector}", "--grace-period=1", "--wait=false", check=False, timeout=15)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = kubectl("get", "pods", "-A", f"--field-selector={selector}", "-o", "name", check=False, timeout=15)
            if out.returncode == 0 and not out.stdout.strip():
                break
            time.sleep(0.5)

    def stop(self) -> list[str]:
        """Stop everything and undo every host change; returns the errors met."""
        errors: list[str] = []
        if self.before is None:
            if self._lock is not None:
                self._lock.close()
            return errors
        procs = {p.name: p for p in self.cluster.node_procs(self.name)}
        try:
            if f"{self.name}-kubelet" in procs:
                try:
                    self.drain()
                except Exception as exc:  # keep tearing down
                    errors.append(f"drain: {exc}")
            for name in ("kube-proxy", "kubelet"):
                self.cluster.stop_proc(procs.get(f"{self.name}-{name}"))
            if f"{self.name}-containerd" in procs and self.sock.exists():
                errors += self._remove_containers()
        finally:  # an interrupt (Ctrl-C) during the polite part still gets the host undone
            self._force_stop(procs, errors)
        return errors

    def _force_stop(self, procs: dict, errors: list[str]) -> None:
        for name in ("kube-proxy", "kubelet", "coredns", "containerd"):
            self.cluster.stop_proc(procs.get(f"{self.name}-{name}"))
        hoststate.kill_shims(self.sock)
        # The drop rule goes with the other new rules, in undo(), and only if it is new.
        errors += hoststate.undo(self.before, extra_mounts=[self.dir, self.run_dir, self.kubelet_root])
        # The image store and its unpacked snapshots (GBs): every start imports the images again.
        store = self.dir / "containerd"
        if not hoststate.mounts([store]):
            shutil.rmtree(store, ignore_errors=True)
        for own in (self.run_dir, self.kubelet_root.parent if self.kubelet_root.parent.parent.name == "inferops" else None):
            if own is not None:
                shutil.rmtree(own, ignore_errors=True)
                if own.parent.exists() and not any(own.parent.iterdir()):
                    own.parent.rmdir()
        self.before = None
        self._lock.close()  # releases the host lock

    def _remove_containers(self) -> list[str]:
        """Kill what the kubelet left running (sandboxes included), so every shim exits."""
        errors = []
        try:
            for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
                self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
                self.ctr("tasks", "delete", "-f", task, check=False)
            for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
                self.ctr("containers", "rm", container, check=False)
        except Exception as exc:
            errors.append(f"containers: {exc}")
        return errors
