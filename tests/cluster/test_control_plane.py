"""The control plane is real: scheduling, Jobs, garbage collection, RBAC and CRD validation."""

from __future__ import annotations

import json
import textwrap
import time

import pytest

pytestmark = pytest.mark.cluster


def gpu_deployment(name: str, gpus: int, product: str) -> str:
    return textwrap.dedent(
        f"""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          replicas: 1
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              nodeSelector: {{nvidia.com/gpu.product: {product}}}
              tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
              containers:
              - name: main
                image: registry.example/triton:latest
                resources: {{limits: {{nvidia.com/gpu: "{gpus}"}}}}
        """
    )


def test_gpu_pod_lands_on_matching_gpu_node(cluster, namespace, fake_gpu_nodes):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=gpu_deployment("triton-l4", 1, "NVIDIA-L4"))
    cluster.kubectl("rollout", "status", "deployment/triton-l4", "-n", namespace, "--timeout=60s")
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", "app=triton-l4", "-o", "json").stdout)["items"]
    assert len(pods) == 1
    assert pods[0]["spec"]["nodeName"] == "gpu-l4-node-0"
    ready = {c["type"]: c["status"] for c in pods[0]["status"]["conditions"]}
    assert ready["Ready"] == "True"


def test_too_many_gpus_stays_pending_with_scheduler_reason(cluster, namespace, fake_gpu_nodes):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=gpu_deployment("greedy", 16, "NVIDIA-A100-SXM4-80GB"))
    # `kubectl wait -l` fails at once while no pod matches: wait for the ReplicaSet to make it first.
    deadline = time.monotonic() + 60
    while not cluster.kubectl("get", "pods", "-n", namespace, "-l", "app=greedy", "-o", "name").stdout.strip():
        assert time.monotonic() < deadline, "the Deployment made no pod within 60 s"
        time.sleep(0.5)
    cluster.kubectl(
        "wait", "pod", "-l", "app=greedy", "-n", namespace,
        "--for=jsonpath={.status.conditions[?(@.type=='PodScheduled')].reason}=Unschedulable", "--timeout=60s",
    )
    pod = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", "app=greedy", "-o", "json").stdout)["items"][0]
    assert pod["status"]["phase"] == "Pending"
    scheduled = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert "Insufficient nvidia.com/gpu" in scheduled["message"]


def test_job_completes_and_owner_deletion_collects_dependents(cluster, namespace):
    job = textwrap.dedent(
        """
        apiVersion: batch/v1
        kind: Job
        metadata: {name: optimize}
        spec:
          backoffLimit: 0
          template:
            spec:
              restartPolicy: Never
              containers: [{name: main, image: registry.example/optimizer:latest}]
        """
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=job)
    cluster.kubectl("wait", "job/optimize", "-n", namespace, "--for=condition=Complete", "--timeout=60s")
    assert cluster.kubectl("get", "pods", "-n", namespace, "-l", "job-name=optimize", "-o", "name").stdout.strip()

    cluster.kubectl("delete", "job/optimize", "-n", namespace, "--cascade=background")
    cluster.kubectl("wait", "pods", "-l", "job-name=optimize", "-n", namespace, "--for=delete", "--timeout=60s")
    assert cluster.kubectl("get", "pods", "-n", namespace, "-l", "job-name=optimize", "-o", "name").stdout.strip() == ""


def test_configmap_owned_by_configmap_is_garbage_collected(cluster, namespace):
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = cluster.kubectl("get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}").stdout
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}],
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(dependent))
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    cluster.kubectl("wait", "configmap/dependent", "-n", namespace, "--for=delete", "--timeout=60s")


def test_service_account_without_rights_gets_403(cluster, namespace, tmp_path):
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    nobody = cluster.with_token(token, tmp_path / "nobody.kubeconfig")
    denied = nobody.kubectl("get", "secrets", "-n", namespace, check=False)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr and f"system:serviceaccount:{namespace}:nobody" in denied.stderr
    allowed = cluster.kubectl("auth", "can-i", "get", "secrets", "-n", namespace, f"--as=system:serviceaccount:{namespace}:nobody", check=False)
    assert allowed.stdout.strip() == "no"


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.test.inferops.dev}
spec:
  group: test.inferops.dev
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
"""


def test_crd_schema_violation_is_rejected_with_message(cluster, namespace):
    cluster.kubectl("apply", "-f", "-", input=CRD)
    cluster.kubectl("wait", "crd/widgets.test.inferops.dev", "--for=condition=Established", "--timeout=30s")
    bad = "apiVersion: test.inferops.dev/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: -3}\n"
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=bad, check=False)
    assert result.returncode != 0
    assert "spec.size" in result.stderr and "should be greater than or equal to 1" in result.stderr
    good = bad.replace("-3", "2")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=good)
