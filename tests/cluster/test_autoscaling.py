"""Scaling on the real control plane: the InferenceModel scale subresource, the HPA the operator
owns (accepted by the real API server, acted on by the real HPA controller), and the operator's
metrics endpoint scraped over HTTP."""

from __future__ import annotations

import functools
import json
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_operator import poll as _poll

poll = functools.partial(_poll, timeout=30)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CLASS = """
apiVersion: inferops.dev/v1alpha1
kind: HardwareClass
metadata: {name: scaling-cpu}
spec:
  instanceKind: KIND_CPU
  nodeSelector: {inferops.dev/pool: cpu}
  resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 128Mi}}
"""


def manifest(name: str, serving: str) -> str:
    return f"""
apiVersion: inferops.dev/v1alpha1
kind: InferenceModel
metadata: {{name: {name}}}
spec:
  model:
    uri: s3://models/{name}/model.onnx
    inputs: [{{name: input, datatype: FP32, dims: [64]}}]
    outputs: [{{name: probabilities, datatype: FP32, dims: [10]}}]
  optimization: {{recipe: none}}
  hardware: {{class: scaling-cpu}}
  serving: {serving}
"""


@pytest.fixture(scope="module", autouse=True)
def hardware_class(cluster, operator):
    cluster.kubectl("apply", "-f", "-", input=CLASS)
    yield
    cluster.kubectl("delete", "hardwareclass", "scaling-cpu", "--ignore-not-found")


def get(cluster, namespace: str, kind: str, name: str, *extra: str) -> dict:
    return json.loads(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", *extra).stdout)


def exists(cluster, namespace: str, kind: str, name: str) -> bool:
    return bool(cluster.kubectl("get", kind, name, "-n", namespace, "--ignore-not-found", "-o", "name").stdout.strip())


def wait_ready(cluster, namespace: str, name: str) -> None:
    cluster.kubectl("wait", f"inferencemodel/{name}", "-n", namespace, "--for=jsonpath={.status.phase}=Ready", "--timeout=60s", timeout=70)


def deployment_replicas(cluster, namespace: str, name: str) -> int:
    return get(cluster, namespace, "deployment", f"{name}-triton")["spec"]["replicas"]


def replicas_managers(deployment: dict) -> set[str]:
    return {e["manager"] for e in deployment["metadata"]["managedFields"] if "f:replicas" in (e.get("fieldsV1") or {}).get("f:spec", {})}


def test_kubectl_scale_goes_through_the_scale_subresource(cluster, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("scaled", "{replicas: 1}"))
    wait_ready(cluster, namespace, "scaled")
    scale = get(cluster, namespace, "inferencemodel", "scaled", "--subresource=scale")
    assert scale["kind"] == "Scale" and scale["status"]["replicas"] == 1
    assert scale["status"]["selector"] == "app.kubernetes.io/component=serving,inferops.dev/model=scaled"

    cluster.kubectl("scale", "inferencemodel/scaled", "-n", namespace, "--replicas=3")
    assert get(cluster, namespace, "inferencemodel", "scaled")["spec"]["serving"]["replicas"] == 3
    poll("the Deployment to follow", lambda: deployment_replicas(cluster, namespace, "scaled") == 3)
    poll(
        "status.replicas through the scale subresource",
        lambda: get(cluster, namespace, "inferencemodel", "scaled", "--subresource=scale")["status"].get("replicas") == 3,
    )
    assert not exists(cluster, namespace, "hpa", "scaled-triton")


def test_autoscaling_hpa_is_created_handed_replicas_and_removed(cluster, namespace, operator):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("elastic", "{replicas: 3}"))
    wait_ready(cluster, namespace, "elastic")
    assert deployment_replicas(cluster, namespace, "elastic") == 3

    autoscaling = "{replicas: 3, autoscaling: {minReplicas: 2, maxReplicas: 4, targetQueueMicroseconds: 20000}}"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("elastic", autoscaling))
    hpa = poll("the HPA", lambda: exists(cluster, namespace, "hpa", "elastic-triton") and get(cluster, namespace, "hpa", "elastic-triton"))
    model = get(cluster, namespace, "inferencemodel", "elastic")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "elastic-triton"}
    metric = hpa["spec"]["metrics"][0]["pods"]
    assert metric["metric"]["name"] == "nv_inference_queue_duration_us_per_request" and metric["target"]["averageValue"] == "20k"
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == model["metadata"]["uid"]

    # Handed over at its value: never reset to the default of 1 when the operator stopped applying it.
    deployment = poll(
        "the operator to stop applying replicas",
        lambda: (d := get(cluster, namespace, "deployment", "elastic-triton", "--show-managed-fields")) and "inferops" not in replicas_managers(d) and d,
    )
    assert deployment["spec"]["replicas"] == 3
    assert replicas_managers(deployment) <= {"inferops-replicas-handover", "kube-controller-manager"}

    # The real HPA controller acts on the bounds (no metrics server here, so only the bounds).
    cluster.kubectl("scale", "deployment/elastic-triton", "-n", namespace, "--replicas=7")
    poll("the HPA controller to enforce maxReplicas", lambda: deployment_replicas(cluster, namespace, "elastic") == 4, timeout=40)
    status = get(cluster, namespace, "hpa", "elastic-triton")["status"]
    assert status["desiredReplicas"] == 4

    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("elastic", "{replicas: 2}"))
    poll("the HPA to be deleted", lambda: not exists(cluster, namespace, "hpa", "elastic-triton"))
    poll("replicas to return to the spec's", lambda: deployment_replicas(cluster, namespace, "elastic") == 2)
    deployment = get(cluster, namespace, "deployment", "elastic-triton", "--show-managed-fields")
    assert "inferops" in replicas_managers(deployment)
    wait_ready(cluster, namespace, "elastic")


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_operator_metrics_move_as_a_model_becomes_ready(cluster, namespace, operator):
    def value(samples, name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    before = scrape(operator.metrics_url)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("measured", "{replicas: 1}"))
    wait_ready(cluster, namespace, "measured")
    after = poll("the Ready phase in the gauge", lambda: (s := scrape(operator.metrics_url)) and value(s, "inferops_models", phase="Ready") >= 1 and s)

    assert value(after, "inferops_reconciles_total", result="ok") > value(before, "inferops_reconciles_total", result="ok")
    assert value(after, "inferops_reconcile_duration_seconds_count") > value(before, "inferops_reconcile_duration_seconds_count")
    for resource in ("jobs", "deployments", "configmaps", "services"):
        assert value(after, "inferops_api_writes_total", resource=resource, verb="apply") > value(before, "inferops_api_writes_total", resource=resource, verb="apply"), resource
    assert value(after, "inferops_api_writes_total", resource="inferencemodels/status", verb="patch") > value(before, "inferops_api_writes_total", resource="inferencemodels/status", verb="patch")
    assert value(after, "process_resident_memory_bytes") > 0
