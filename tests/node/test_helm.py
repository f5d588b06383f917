"""The operator runs in the cluster: what an in-cluster client needs (the API server through the
`kubernetes` Service with a ServiceAccount token, cluster DNS), then the Helm chart installed
with the locally built images, the operator pod running as its ServiceAccount on the real node
and reconciling a model to Ready."""

from __future__ import annotations

import json
import time

import pytest

from inferops.devcluster import local_images
from inferops.devcluster.chart_install import TENANT_SECRET, install_operator, tenant_storage_secret
from inferops.devcluster.node import LABELS
from inferops.devcluster.podaccess import API_SERVICE_IP

# The model store, the digits model and a tenant namespace with the model's and the platform's
# Secrets: the same fixtures as the host-process end-to-end test.
from .test_e2e import CLASS, digits_in_s3, inference_model, node_s3, tenant, wait_for  # noqa: F401

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


@pytest.fixture(scope="module")
def in_cluster_operator(real_cluster, node_s3, built_images):
    """The chart installed with the images built here, the operator's imported like the others."""
    operator = local_images.build_image("operator")
    real_cluster.nodes[0].import_archive(operator.archive)
    images = {**built_images, "operator": operator.reference}
    installed = install_operator(real_cluster, images, node_s3)
    print(f"\nhelm install to operator pod Ready: {installed.seconds:.1f} s")
    hardware_class = {
        "apiVersion": "inferops.dev/v1alpha1", "kind": "HardwareClass", "metadata": {"name": CLASS},
        "spec": {"instanceKind": "KIND_CPU", "nodeSelector": SELECTOR, "onnxBackend": "python",
                 "tritonImage": images["triton-cpu"], "optimizerImage": images["optimizer"]},
    }
    real_cluster.kubectl("apply", "-f", "-", input=json.dumps(hardware_class))
    return installed, images


class PodLogs:
    """wait_for's failure message shows the operator's log: here its pod's."""

    def __init__(self, cluster, namespace: str):
        self.cluster, self.namespace = cluster, namespace

    def tail(self, lines: int = 40) -> str:
        return self.cluster.kubectl("logs", "-n", self.namespace, "deployment/inferops", f"--tail={lines}", check=False).stdout


def test_the_chart_runs_the_operator_in_the_cluster_and_it_serves_a_model(real_cluster, in_cluster_operator, tenant, digits_in_s3, node_s3):
    installed, images = in_cluster_operator
    # The namespace's own artifact keys (operator.tenantStorageSecret): they reach s3://artifacts/<tenant>/ only.
    tenant_storage_secret(real_cluster, node_s3, tenant)
    (pod,) = json.loads(real_cluster.kubectl("get", "pods", "-n", installed.namespace, "-l", "app.kubernetes.io/name=inferops", "-o", "json").stdout)["items"]
    assert pod["spec"]["serviceAccountName"] == installed.service_account
    assert pod["spec"]["nodeName"] == real_cluster.nodes[0].name and pod["status"]["phase"] == "Running"
    assert pod["spec"]["containers"][0]["image"] == images["operator"]

    spec = inference_model("digits", digits_in_s3, "quantize-int8-dynamic", 0.02, dynamicBatching={"mode": "explicit", "maxBatchSize": 8})
    started = time.monotonic()
    real_cluster.kubectl("apply", "-n", tenant, "-f", "-", input=json.dumps(spec))
    model = wait_for(real_cluster, tenant, "digits", lambda s: s.get("phase") in ("Ready", "Failed"), 900, PodLogs(real_cluster, installed.namespace))
    status = model["status"]
    assert status["phase"] == "Ready", json.dumps(status, indent=1)
    print(f"\napply to Ready, operator in the cluster: {time.monotonic() - started:.0f} s")
    assert status["report"]["steps"][-1] == "quantize-int8-dynamic" and status["report"]["accuracy"]["passed"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "smoke inference" in ready["message"], ready  # sent by the operator pod through the Service

    # The pull step is pinned to what the Job says it published (its termination message).
    pods = json.loads(real_cluster.kubectl("get", "pods", "-n", tenant, "-l", f"batch.kubernetes.io/job-name={status['jobName']}", "-o", "json").stdout)["items"]
    said = {s["state"]["terminated"].get("message", "") for p in pods for s in p["status"].get("containerStatuses", []) if s["name"] == "optimize" and "terminated" in s["state"]}
    deployment = json.loads(real_cluster.kubectl("get", "deployment", "digits-triton", "-n", tenant, "-o", "json").stdout)
    (pull,) = deployment["spec"]["template"]["spec"]["initContainers"]
    digest = pull["args"][pull["args"].index("--digest") + 1]
    assert digest.startswith("sha256:") and said == {f"published {digest}"}, (said, pull["args"])
    # Both ran with the namespace's keys, never the platform's, and published under its prefix.
    job = json.loads(real_cluster.kubectl("get", "job", status["jobName"], "-n", tenant, "-o", "json").stdout)
    (optimize,) = job["spec"]["template"]["spec"]["containers"]
    assert optimize["envFrom"][0] == {"secretRef": {"name": TENANT_SECRET}} and pull["envFrom"] == [{"secretRef": {"name": TENANT_SECRET}}]
    assert not any(e.get("secretRef", {}).get("name") == installed.storage_secret for e in optimize["envFrom"])
    assert status["artifactUri"].startswith(f"s3://artifacts/{tenant}/digits/"), status["artifactUri"]

    # Every status write came from the operator pod's ServiceAccount token.
    user = f"system:serviceaccount:{installed.namespace}:{installed.service_account}"
    writes = [e for e in real_cluster.audit_writes(user) if e.get("objectRef", {}).get("namespace") == tenant]
    assert any(e["objectRef"].get("subresource") == "status" for e in writes), writes[:5]
    assert all(e["sourceIPs"][0].startswith("10.200.0.") for e in writes), {e["sourceIPs"][0] for e in writes}
