"""Tenants kept apart, on the real API server (issue 14, points 1 and 4): a HardwareClass open
only to the namespaces its namespaceSelector picks (refused at admission, and a status condition
when access is lost later: a namespace relabelled, the class edited), and images a tenant names
refused unless the admin allowed them."""

from __future__ import annotations

import json

import pytest
import yaml
from test_operator import condition, get, names, poll

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ACCESS_LABEL = "inferops.dev/gpu-pool-access"
CLASS = {
    "apiVersion": "inferops.dev/v1alpha1",
    "kind": "HardwareClass",
    "metadata": {"name": "tenant-pool"},
    "spec": {
        "instanceKind": "KIND_CPU",
        "nodeSelector": {"inferops.dev/pool": "cpu"},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}},
        "namespaceSelector": {"matchLabels": {ACCESS_LABEL: "granted"}},
    },
}


def manifest(name: str, **spec) -> str:
    body = {
        "apiVersion": "inferops.dev/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": f"s3://models/{name}/model.onnx", "inputs": [{"name": "input", "datatype": "FP32", "dims": [64]}],
                      "outputs": [{"name": "probabilities", "datatype": "FP32", "dims": [10]}]},
            "optimization": {"recipe": "none"},
            "hardware": {"class": "tenant-pool"},
            "serving": {"replicas": 1, "dynamicBatching": {"mode": "disabled"}},
        },
    }
    for section, values in spec.items():
        body["spec"][section] = {**body["spec"].get(section, {}), **values}
    return json.dumps(body)


@pytest.fixture(autouse=True)
def tenant_class(cluster, operator):
    cluster.kubectl("apply", "-f", "-", input=json.dumps(CLASS))
    yield
    cluster.kubectl("delete", "hardwareclass", "tenant-pool", "--ignore-not-found")


def _resolved(cluster, namespace: str, name: str) -> dict:
    conditions = (get(cluster, namespace, "inferencemodel", name).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "HardwareClassResolved"), {})


def test_webhook_refuses_a_class_the_namespace_may_not_use(cluster, namespace):
    refused = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("outsider"), check=False)
    assert refused.returncode != 0, "a namespace the class does not select may not use it"
    assert f"namespace '{namespace}' may not use HardwareClass 'tenant-pool'" in refused.stderr, refused.stderr

    cluster.kubectl("label", "namespace", namespace, f"{ACCESS_LABEL}=granted")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("insider"))
    poll("the class resolved", lambda: _resolved(cluster, namespace, "insider").get("status") == "True")
    assert poll("its optimization Job", lambda: names(cluster, namespace, "job", "insider"))


def test_access_lost_later_is_a_status_condition(cluster, namespace):
    """The webhook sees only applies: a namespace relabelled or a class edited afterwards is
    caught by the reconcile (namespaces are watched), which says why and starts nothing new."""
    cluster.kubectl("label", "namespace", namespace, f"{ACCESS_LABEL}=granted")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("tenant"))
    poll("the class resolved", lambda: _resolved(cluster, namespace, "tenant").get("status") == "True")

    cluster.kubectl("label", "namespace", namespace, f"{ACCESS_LABEL}-")
    forbidden = poll("HardwareClassForbidden after the label went", lambda: (c := _resolved(cluster, namespace, "tenant")).get("reason") == "HardwareClassForbidden" and c)
    assert forbidden["status"] == "False" and f"namespace '{namespace}' may not use HardwareClass 'tenant-pool'" in forbidden["message"]
    model = get(cluster, namespace, "inferencemodel", "tenant")
    assert model["status"]["phase"] == "Failed" and condition(model, "Ready")["reason"] == "HardwareClassForbidden"

    cluster.kubectl("label", "namespace", namespace, f"{ACCESS_LABEL}=granted")
    poll("access back with the label", lambda: _resolved(cluster, namespace, "tenant").get("status") == "True")

    # The admin narrows the class to other namespaces: the models here lose it.
    narrowed = {**CLASS, "spec": {**CLASS["spec"], "namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["someone-else"]}]}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(narrowed))
    poll("HardwareClassForbidden after the class changed", lambda: _resolved(cluster, namespace, "tenant").get("reason") == "HardwareClassForbidden")


@pytest.mark.parametrize(
    "images",
    [{"optimization": {"recipe": "none", "image": "attacker.example/exfiltrate:1"}}, {"serving": {"replicas": 1, "tritonImage": "attacker.example/triton:1"}}],
    ids=["optimizer", "triton"],
)
def test_webhook_refuses_images_the_admin_did_not_allow(cluster, namespace, images):
    cluster.kubectl("label", "namespace", namespace, f"{ACCESS_LABEL}=granted")
    refused = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("own-image", **images), check=False)
    assert refused.returncode != 0 and "attacker.example" in refused.stderr and "not an allowed image" in refused.stderr, refused.stderr
    assert cluster.kubectl("get", "inferencemodel", "own-image", "-n", namespace, check=False).returncode != 0


def test_class_selector_is_in_the_crd_schema(cluster):
    bad = {**CLASS, "metadata": {"name": "bad-selector"}, "spec": {**CLASS["spec"], "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Near"}]}}}
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(bad), check=False)
    assert result.returncode != 0 and "Near" in result.stderr, result.stderr
