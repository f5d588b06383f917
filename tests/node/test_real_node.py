"""Containers really run on the real node: a pod becomes Ready, a Job completes and its logs
come back through the API server, and a ClusterIP Service reaches a pod through
kube-proxy."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from inferops.devcluster.node import LABELS, POD_CIDR

pytestmark = [pytest.mark.node, pytest.mark.slow]
SELECTOR = {"inferops.dev/node": LABELS["inferops.dev/node"]}


def pod(name: str, image: str, args: list[str], labels: dict | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "nodeSelector": SELECTOR,
            "containers": [{"name": "main", "image": image, "args": args, "imagePullPolicy": "Never"}],
            "terminationGracePeriodSeconds": 1,
        },
    }


def apply(cluster, namespace: str, obj: dict) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def wait_ready(cluster, namespace: str, name: str, timeout: float = 60) -> None:
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", f"pod/{name}", f"--timeout={timeout:.0f}s", timeout=timeout + 10)


def test_pause_pod_becomes_ready_on_the_real_node(real_cluster, real_namespace, node_images):
    started = time.monotonic()
    apply(real_cluster, real_namespace, pod("pause", node_images["inferops-pause"], []))
    wait_ready(real_cluster, real_namespace, "pause")
    elapsed = time.monotonic() - started
    got = json.loads(real_cluster.kubectl("get", "pod", "pause", "-n", real_namespace, "-o", "json").stdout)
    assert got["spec"]["nodeName"] == real_cluster.nodes[0].name
    assert got["status"]["podIP"].startswith(POD_CIDR.rsplit(".", 1)[0] + ".")
    print(f"pause pod apply-to-Ready: {elapsed:.2f} s")


def test_job_completes_and_its_logs_come_back(real_cluster, real_namespace, node_images):
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "hello"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "nodeSelector": SELECTOR,
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": node_images["inferops-ok"], "args": ["echo", "hello", "from", "inferops"], "imagePullPolicy": "Never"}],
                }
            },
        },
    }
    apply(real_cluster, real_namespace, job)
    real_cluster.kubectl("wait", "-n", real_namespace, "--for=condition=Complete", "job/hello", "--timeout=60s", timeout=70)
    logs = real_cluster.kubectl("logs", "-n", real_namespace, "job/hello").stdout
    assert logs.strip() == "hello from inferops"


def test_cluster_ip_service_reaches_a_pod(real_cluster, real_namespace, node_images):
    apply(real_cluster, real_namespace, pod("web", node_images["inferops-ok"], ["serve", "8080"], {"app": "web"}))
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    apply(real_cluster, real_namespace, service)
    wait_ready(real_cluster, real_namespace, "web")
    cluster_ip = real_cluster.kubectl("get", "service", "web", "-n", real_namespace, "-o", "jsonpath={.spec.clusterIP}").stdout
    assert cluster_ip.startswith("10.0.")
    # kube-proxy writes the rules a moment after the endpoints appear: retry, bounded.
    deadline, last = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{cluster_ip}/", timeout=2) as resp:
                assert resp.read() == b"ok"
                return
        except OSError as exc:
            last = exc
            time.sleep(0.5)
    pytest.fail(f"ClusterIP {cluster_ip} did not answer within 30 s: {last}")
