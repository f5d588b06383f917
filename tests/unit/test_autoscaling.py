"""Autoscaling in the reconcile core: the HPA it renders, the Deployment's replicas, the HPA's removal."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inferops.api.hardware_class import HardwareClassSpec
from inferops.api.inference_model import InferenceModelSpec
from inferops.reconcile.children import QUEUE_METRIC, ModelRef
from inferops.reconcile.naming import job_name, optimization_hash
from inferops.reconcile.plan import Observed, desired_state
from inferops.reconcile.settings import OperatorSettings
from inferops.reconciler import HANDOVER_MANAGER, _applies_replicas

SETTINGS = OperatorSettings(artifact_root="s3://artifacts", smoke_test=False)
NOW = "2026-11-22T00:00:00Z"
CPU = HardwareClassSpec.model_validate({"instanceKind": "KIND_CPU", "nodeSelector": {"inferops.dev/pool": "cpu"}})
AUTOSCALING = {"minReplicas": 2, "maxReplicas": 6, "targetQueueMicroseconds": 20000}


def model(serving: dict) -> ModelRef:
    spec = InferenceModelSpec.model_validate(
        {
            "model": {
                "uri": "s3://models/digits.onnx",
                "inputs": [{"name": "input", "datatype": "FP32", "dims": [64]}],
                "outputs": [{"name": "probabilities", "datatype": "FP32", "dims": [10]}],
            },
            "hardware": {"class": "cpu"},
            "serving": serving,
        }
    )
    return ModelRef("digits", "ml", "uid-1", 3, spec)


def serving_observed(m: ModelRef, **kwargs) -> Observed:
    done = {"metadata": {"name": job_name(m.name, optimization_hash(m.spec, CPU))}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    from .test_reconcile import tuned, committed

    return tuned(m, Observed(hardware_class=CPU, jobs=[done], report=committed(), **kwargs))


def by_kind(plan) -> dict[str, dict]:
    return {o["kind"]: o for o in plan.apply}


def live_hpa() -> dict:
    return {"metadata": {"name": "digits-triton", "ownerReferences": [{"uid": "uid-1"}]}, "spec": {"minReplicas": 2}}


def test_autoscaling_renders_an_hpa_and_leaves_replicas_to_it():
    m = model({"replicas": 3, "autoscaling": AUTOSCALING})
    plan = desired_state(m, serving_observed(m), SETTINGS, NOW)
    objects = by_kind(plan)
    assert list(objects) == ["ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"]
    assert "replicas" not in objects["Deployment"]["spec"]
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["name"] == "digits-triton" and hpa["metadata"]["namespace"] == "ml"
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == "uid-1" and hpa["metadata"]["ownerReferences"][0]["controller"] is True
    assert hpa["metadata"]["labels"] == objects["Deployment"]["metadata"]["labels"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "digits-triton"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"] == [
        {"type": "Pods", "pods": {"metric": {"name": QUEUE_METRIC}, "target": {"type": "AverageValue", "averageValue": "20000"}}}
    ]
    assert plan.delete_autoscalers == []


def test_without_autoscaling_the_deployment_has_the_spec_replicas_and_no_hpa():
    m = model({"replicas": 3})
    plan = desired_state(m, serving_observed(m), SETTINGS, NOW)
    assert list(by_kind(plan)) == ["ConfigMap", "Deployment", "Service"]
    assert by_kind(plan)["Deployment"]["spec"]["replicas"] == 3
    assert plan.delete_autoscalers == []


def test_removing_autoscaling_deletes_the_hpa_in_any_phase():
    m = model({"replicas": 3})
    assert desired_state(m, serving_observed(m, autoscaler=live_hpa()), SETTINGS, NOW).delete_autoscalers == ["digits-triton"]
    pending = desired_state(m, Observed(hardware_class=None, autoscaler=live_hpa()), SETTINGS, NOW)
    assert pending.status["phase"] == "Pending" and pending.delete_autoscalers == ["digits-triton"]
    kept = model({"autoscaling": AUTOSCALING})
    assert desired_state(kept, serving_observed(kept, autoscaler=live_hpa()), SETTINGS, NOW).delete_autoscalers == []


def test_readiness_waits_for_the_replicas_the_hpa_chose():
    m = model({"autoscaling": AUTOSCALING})
    deployment = {
        "metadata": {"name": "digits-triton", "generation": 4},
        "spec": {"replicas": 5},
        "status": {"observedGeneration": 4, "readyReplicas": 3, "updatedReplicas": 5, "replicas": 5},
    }
    plan = desired_state(m, serving_observed(m, deployment=deployment), SETTINGS, NOW)
    ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    assert plan.status["phase"] == "Deploying" and ready["message"] == "3 of 5 replica(s) ready"
    deployment["status"]["readyReplicas"] = 5
    assert desired_state(m, serving_observed(m, deployment=deployment), SETTINGS, NOW).status["phase"] == "Ready"


@pytest.mark.parametrize("bounds", [{"minReplicas": 0, "maxReplicas": 2}, {"minReplicas": 1, "maxReplicas": 0}])
def test_bounds_an_hpa_would_refuse_are_refused_by_the_api_model(bounds):
    with pytest.raises(ValidationError):
        model({"autoscaling": bounds})


def test_replicas_hand_over_only_while_the_operator_applies_them():
    def deployment(*entries):
        return {"metadata": {"managedFields": list(entries)}}

    ours = {"manager": "inferops", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}}}
    ours_without = {"manager": "inferops", "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {}}}}
    hpa = {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    handover = {"manager": HANDOVER_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    assert _applies_replicas(deployment(ours))
    assert not _applies_replicas(deployment(ours_without, hpa))
    assert not _applies_replicas(deployment(ours_without, handover))
    assert not _applies_replicas(deployment())
