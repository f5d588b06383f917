"""The chart's Prometheus monitors: off by default, and when on, they select what the operator
and the Triton pods it renders really expose (no cluster needed)."""

from __future__ import annotations

import pytest

from inferops.api.hardware_class import HardwareClassSpec
from inferops.api.inference_model import InferenceModelSpec
from inferops.reconcile.children import ModelRef, Revision, desired_serving
from inferops.reconcile.settings import OperatorSettings

from .conftest import CHART, KUBE_VERSION, render, run_helm, set_args

MONITORS_ON = {
    "metrics.serviceMonitor.enabled": "true",
    "metrics.podMonitor.enabled": "true",
    "metrics.serviceMonitor.labels.release": "kube-prometheus",
    "metrics.podMonitor.interval": "5s",
}


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    (found,) = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


def operator_pod(docs: list[dict]) -> dict:
    return one(docs, "Deployment")["spec"]["template"]


def triton_pod() -> dict:
    spec = InferenceModelSpec.model_validate(
        {
            "model": {"uri": "s3://m/model.onnx", "inputs": [{"name": "x", "datatype": "FP32", "dims": [4]}], "outputs": [{"name": "y", "datatype": "FP32", "dims": [2]}]},
            "hardware": {"class": "cpu"},
        }
    )
    hardware = HardwareClassSpec.model_validate({"instanceKind": "KIND_CPU"})
    objects, _ = desired_serving(ModelRef("digits", "ml", "uid", 1, spec), hardware, Revision("s3://a/digits", None), OperatorSettings())
    return next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]


def test_monitors_are_off_by_default_and_the_operator_still_exposes_its_port(helm):
    docs = render(helm)
    assert not [d for d in docs if d["kind"] in ("ServiceMonitor", "PodMonitor", "Service")]
    ports = operator_pod(docs)["spec"]["containers"][0]["ports"]
    assert {"name": "metrics", "containerPort": 9090} in ports


def test_service_monitor_reaches_the_operator_metrics_port(helm):
    docs = render(helm, MONITORS_ON, namespace="ops")
    service = one(docs, "Service", "inferops-metrics")
    pod = operator_pod(docs)
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in pod["spec"]["containers"][0]["ports"]}

    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "ops" and monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    assert monitor["spec"]["endpoints"] == [{"port": port["name"], "path": "/metrics", "interval": "30s"}]
    # Only the metrics Service matches, not the webhook Service with the same release labels.
    webhook_on = render(helm, {**MONITORS_ON, "webhook.enabled": "true", "webhook.certSecret": "tls"})
    matched = [s["metadata"]["name"] for s in webhook_on if s["kind"] == "Service" and one(webhook_on, "ServiceMonitor")["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert matched == ["inferops-metrics"]


def test_pod_monitor_selects_the_triton_pods_the_operator_renders(helm):
    monitor = one(render(helm, MONITORS_ON), "PodMonitor")
    pod = triton_pod()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    triton_ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    assert triton_ports[endpoint["port"]] == 8002 and endpoint["interval"] == "5s"
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= operator_pod(render(helm))["metadata"]["labels"].items()


def test_pod_monitor_keeps_to_the_watched_namespaces(helm):
    monitor = one(render(helm, {**MONITORS_ON, "watchNamespaces": "{ml-a,ml-b}"}), "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ml-a", "ml-b"]}


def test_lint_is_clean_with_monitors_on(helm):
    result = run_helm(helm, "lint", "--strict", str(CHART), *set_args(MONITORS_ON))
    assert result.returncode == 0 and "[WARNING]" not in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"metrics.podMonitor.interval": "often"}, "/metrics/podMonitor/interval"),
        ({"metrics.serviceMonitor.enabled": "yes-please"}, "/metrics/serviceMonitor/enabled"),
        ({"metrics.port": "9091"}, "'port' not allowed"),
    ],
)
def test_schema_refuses_bad_monitor_values(helm, values, complaint):
    result = run_helm(helm, "template", "inferops", str(CHART), "--kube-version", KUBE_VERSION, *set_args(values))
    assert result.returncode != 0 and complaint in result.stderr, result.stderr
