"""The operator runs in the cluster: what an in-cluster client needs (the API server through the
`kubernetes` Service with a ServiceAccount token, cluster DNS), then the Helm chart installed
with the locally built images, the operator pod running as its ServiceAccount on the real node
and reconciling a model to Ready."""

from __future__ import annotations

import json
import time

import pytest

from inferops.devcluster.node import LABELS
from inferops.devcluster.podaccess import API_SERVICE_IP

pytestmark = [pytest.mark.node, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]
SELECTOR = {"inferops.dev/node": LABELS["inferops.dev/node"]}

# Runs in the optimizer image (python3): the API server through the Service, as the pod's
# ServiceAccount, with the mounted CA (so the serving cert's SANs are checked), then DNS.
PROBE = r"""
import json, os, socket, ssl, sys, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(f"{sa}/token").read()
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
def call(url, body=None):
    req = urllib.request.Request(url, data=body, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, context=ctx, timeout=10))
env = f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}"
out = {"versions": {u: call(f"{u}/version")["gitVersion"] for u in (env, "https://kubernetes.default.svc", "https://kubernetes.default.svc.cluster.local")}}
review = call(f"{env}/apis/authentication.k8s.io/v1/selfsubjectreviews", json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode())
out["user"] = review["status"]["userInfo"]["username"]
out["dns"] = {name: socket.gethostbyname(name) for name in sys.argv[1:]}
try:
    out["outside"] = socket.gethostbyname("example.com")
except OSError as exc:
    out["outside"] = f"unresolved: {exc}"
out["resolv"] = open("/etc/resolv.conf").read()
print(json.dumps(out))
"""


def test_a_pod_reaches_the_api_server_as_its_service_account_and_resolves_cluster_names(real_cluster, real_namespace, built_images):
    cluster, ns = real_cluster, real_namespace
    cluster.kubectl("create", "service", "clusterip", "web", "--tcp=80:80", "-n", ns)
    web_ip = cluster.kubectl("get", "service", "web", "-n", ns, "-o", "jsonpath={.spec.clusterIP}").stdout
    names = [f"web.{ns}.svc.cluster.local", "web", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
        "spec": {
            "nodeSelector": SELECTOR, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": built_images["optimizer"], "imagePullPolicy": "Never",
                            "command": ["python3", "-c", PROBE, *names]}],
        },
    }
    started = time.monotonic()
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod))
    phase = ""
    while time.monotonic() - started < 120 and phase not in ("Succeeded", "Failed"):
        time.sleep(1)
        phase = cluster.kubectl("get", "pod", "probe", "-n", ns, "-o", "jsonpath={.status.phase}").stdout
    logs = cluster.kubectl("logs", "probe", "-n", ns, check=False).stdout
    assert phase == "Succeeded", f"probe pod {phase}:\n{logs}"
    out = json.loads(logs.strip().splitlines()[-1])
    print(f"\nprobe pod apply to done: {time.monotonic() - started:.1f} s; {json.dumps(out)}")
    server = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    assert set(out["versions"].values()) == {server}
    assert out["user"] == f"system:serviceaccount:{ns}:default"
    assert out["dns"] == {names[0]: web_ip, "web": web_ip, names[2]: API_SERVICE_IP, names[3]: API_SERVICE_IP}
    assert out["outside"].startswith("unresolved"), out["outside"]  # no upstream: nothing leaves the machine
    assert f"search {ns}.svc.cluster.local svc.cluster.local cluster.local" in out["resolv"], out["resolv"]
