"""What pods on the real node need from the control plane: the API server through the
`kubernetes` Service, and cluster DNS (CoreDNS as a host process on the node's bridge address).

The API server listens on 127.0.0.1 only (nothing of the cluster is reachable from the host's
other interfaces), so in-cluster clients reach it through a DNAT from the bridge to loopback:
10.0.0.1:443 arriving on our own bridge goes to 127.0.0.1:<port>, which the kernel accepts
because route_localnet is on for that one interface (a sysctl of the bridge, gone with it).
The `kubernetes` Service keeps no endpoints on purpose: an endpoint may not be a loopback
address, and one on the bridge address would make kube-proxy DNAT first (a packet is DNATed
once per hook), to an address nothing listens on. The rule is added after the host snapshot,
so hoststate.undo removes it like kube-proxy's own rules.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from .cluster import free_port
from . import node as _node  # node.py imports this module: names are read at call time

if TYPE_CHECKING:
    from .cluster import LocalCluster
    from .pki import LocalPKI

API_SERVICE_IP = "10.0.0.1"  # the first address of --service-cluster-ip-range
API_SERVICE_PORT = "443"  # the API server always gives the `kubernetes` Service port 443
CLUSTER_DOMAIN = "cluster.local"
DNS_USER = "system:inferops-coredns"
# The reads CoreDNS's kubernetes plugin makes (upstream's system:coredns ClusterRole, without
# pods: `pods disabled` below).
DNS_RBAC = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": DNS_USER},
        "rules": [
            {"apiGroups": [""], "resources": ["endpoints", "services", "namespaces"], "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": DNS_USER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": DNS_USER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": DNS_USER}],
    },
]


def apiserver_flags(pki: "LocalPKI") -> list[str]:
    """kube-apiserver flags that only a cluster with a real node gets (the kwok-only control
    plane stays exactly as it was)."""
    client = pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", organization="system:masters", client=True)
    return [
        "--enable-admission-plugins=NodeRestriction",
        f"--kubelet-client-certificate={client.cert}",
        f"--kubelet-client-key={client.key}",
        # The kubelet serves a cert of the cluster CA naming its InternalIP: verified, not skipped.
        f"--kubelet-certificate-authority={pki.ca.cert}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
    ]


def api_port(cluster: "LocalCluster") -> int:
    return urllib.parse.urlsplit(cluster.server).port


def dnat_rule(port: int) -> list[str]:
    return [
        "PREROUTING", "-i", _node.BRIDGE, "-d", f"{API_SERVICE_IP}/32", "-p", "tcp", "--dport", API_SERVICE_PORT,
        "-m", "comment", "--comment", "inferops: pods reach the API server on loopback",
        "-j", "DNAT", "--to-destination", f"127.0.0.1:{port}",
    ]


def route_api_server(port: int) -> None:
    """Pods' 10.0.0.1:443 -> the API server on 127.0.0.1:`port`; needs the bridge to exist."""
    Path(f"/proc/sys/net/ipv4/conf/{_node.BRIDGE}/route_localnet").write_text("1")
    out = subprocess.run(["iptables", "-w", "-t", "nat", "-I", *dnat_rule(port)], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise _node.NodeError(f"could not route pods to the API server: {out.stderr.strip()}")


def corefile(kubeconfig: Path, ready_port: int) -> str:
    # No `forward`: names outside the cluster's zones get no answer from here, and nothing is
    # asked of a server off this machine. Pod records stay off (nothing here looks pods up).
    return f"""{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {_node.NODE_IP}
    errors
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} inferops-dev
        pods disabled
        ttl 5
    }}
    cache 5
}}
"""


def start_coredns(node, pki: "LocalPKI", deadline: float) -> None:
    """CoreDNS for `node`'s pods on NODE_IP:53, as a process of the cluster (stopped with the
    node); reads Services with a client cert of its own, bound to the reads it makes."""
    cluster = node.cluster
    for obj in DNS_RBAC:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    client = pki.issue("coredns", DNS_USER, client=True)
    kubeconfig = node.dir / "coredns.kubeconfig"
    cluster.write_kubeconfig(kubeconfig, client.cert, client.key)
    ready_port = free_port()
    (node.dir / "Corefile").write_text(corefile(kubeconfig, ready_port))
    node._spawn("coredns", "-conf", str(node.dir / "Corefile"))
    cluster._wait(lambda: _ready(ready_port), deadline, "CoreDNS (its kubernetes plugin synced)")


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False
