"""The Argo CD health check for InferenceModel, run by Lua 5.1 (as Argo CD's gopher-lua is)
in an environment without io, os or require, on status objects the operator writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

lupa = pytest.importorskip("lupa.lua51")

from inferops.api.hardware_class import HardwareClass  # noqa: E402
from inferops.api.inference_model import InferenceModel  # noqa: E402
from inferops.api.report import OptimizationReport, TuningReport  # noqa: E402
from inferops.api.tensors import BatchingConfig  # noqa: E402
from inferops.reconcile.children import ModelRef  # noqa: E402
from inferops.reconcile.naming import job_name, optimization_hash  # noqa: E402
from inferops.reconcile.plan import Observed, SmokeResult, desired_state  # noqa: E402
from inferops.reconcile.settings import OperatorSettings  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPT = (EXAMPLES / "argocd" / "health-inferencemodel.lua").read_text()
NOW = "2026-11-22T23:25:32Z"


def health(obj: dict) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    check = lua.execute("local source = ...; return loadstring(source)", SCRIPT)
    sandbox = lua.eval("function(obj) return {obj = obj, ipairs = ipairs, pairs = pairs, tostring = tostring, type = type, string = string, table = table, math = math} end")
    lua.globals().setfenv(check, sandbox(lua.table_from(obj, recursive=True)))
    result = check()
    return result["status"], result["message"]


def model(status: dict | None, generation: int = 1) -> dict:
    obj = {"apiVersion": "inferops.dev/v1alpha1", "kind": "InferenceModel", "metadata": {"name": "digits", "namespace": "default", "generation": generation}, "spec": {}}
    if status is not None:
        obj["status"] = status
    return obj


def ready_condition(status: str, reason: str, message: str, generation: int = 1) -> dict:
    return {"type": "Ready", "status": status, "reason": reason, "message": message, "lastTransitionTime": NOW, "observedGeneration": generation}


def test_ready_is_healthy():
    status = {
        "phase": "Ready",
        "observedGeneration": 1,
        "conditions": [ready_condition("True", "DeploymentReady", "1 replica(s) ready at http://digits-triton.default.svc:8000")],
        "readyReplicas": 1,
    }
    assert health(model(status)) == ("Healthy", "1 replica(s) ready at http://digits-triton.default.svc:8000")


def test_failed_is_degraded_with_the_ready_message():
    message = "Job has reached the specified backoff limit"
    status = {
        "phase": "Failed",
        "observedGeneration": 1,
        "conditions": [
            {"type": "Optimized", "status": "False", "reason": "BackoffLimitExceeded", "message": f"{message} (Job digits-opt-1a2b3c)", "lastTransitionTime": NOW, "observedGeneration": 1},
            ready_condition("False", "OptimizationFailed", message),
        ],
    }
    assert health(model(status)) == ("Degraded", message)


def test_optimizing_is_progressing():
    status = {"phase": "Optimizing", "observedGeneration": 1, "conditions": [ready_condition("False", "Optimizing", "waiting for the optimization Job")]}
    assert health(model(status)) == ("Progressing", "waiting for the optimization Job")


def test_status_of_an_older_generation_is_progressing_whatever_its_phase():
    status = {"phase": "Ready", "observedGeneration": 1, "conditions": [ready_condition("True", "DeploymentReady", "1 replica(s) ready")], "readyReplicas": 1}
    assert health(model(status, generation=2)) == ("Progressing", "Waiting for the operator to observe generation 2")


def test_no_status_is_progressing():
    assert health(model(None)) == ("Progressing", "Waiting for the InferOps operator to reconcile the model")


def test_the_configmap_patch_carries_the_same_script():
    patch = yaml.safe_load((EXAMPLES / "argocd" / "argocd-cm-patch.yaml").read_text())
    assert patch["metadata"] == {"name": "argocd-cm", "namespace": "argocd", "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"}}
    assert patch["data"] == {"resource.customizations.health.inferops.dev_InferenceModel": SCRIPT}


# Status objects computed by the operator's own reconcile core for the CPU example.
def _operator_status(observed: Observed) -> dict:
    doc = yaml.safe_load((EXAMPLES / "cpu-onnx-model.yaml").read_text())
    spec = InferenceModel.model_validate({"spec": doc["spec"]}).spec
    ref = ModelRef(doc["metadata"]["name"], "default", "uid-1", 1, spec)
    return desired_state(ref, observed, OperatorSettings(), NOW).status


def _cpu_class():
    (cpu,) = [d for d in yaml.safe_load_all((EXAMPLES / "hardwareclasses.yaml").read_text()) if d["metadata"]["name"] == "cpu"]
    return HardwareClass.model_validate({"spec": cpu["spec"]}).spec


def _job(condition: dict | None) -> dict:
    doc = yaml.safe_load((EXAMPLES / "cpu-onnx-model.yaml").read_text())
    spec = InferenceModel.model_validate({"spec": doc["spec"]}).spec
    name = job_name(doc["metadata"]["name"], optimization_hash(spec, _cpu_class()))
    return {"metadata": {"name": name}, "status": {"conditions": [condition] if condition else []}}


def _ready() -> Observed:
    """Optimized (its report read), tuned (its tuning Job published a choice), serving, answering."""
    report = OptimizationReport(artifact_uri="s3://artifacts/default/digits-cpu/x", model_name="digits-cpu", backend="onnxruntime")
    observed = Observed(hardware_class=_cpu_class(), jobs=[_job({"type": "Complete", "status": "True"})], deployment=READY_DEPLOYMENT, report=report, smoke=SmokeResult(True, "1 inference ok"))
    doc = yaml.safe_load((EXAMPLES / "cpu-onnx-model.yaml").read_text())
    ref = ModelRef(doc["metadata"]["name"], "default", "uid-1", 1, InferenceModel.model_validate({"spec": doc["spec"]}).spec)
    tuning_job = desired_state(ref, observed, OperatorSettings(), NOW).tuning_job_name
    if tuning_job:
        observed.jobs.append({"metadata": {"name": tuning_job}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}})
        observed.tuning = TuningReport(chosen=BatchingConfig(max_batch_size=8), throughput_per_s=500.0, p99_ms=20.0, latency_objective_ms=100.0, measurements=5, grid_size=36)
    return observed


READY_DEPLOYMENT = {"metadata": {"generation": 1}, "spec": {"replicas": 2}, "status": {"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2, "replicas": 2}}


@pytest.mark.parametrize(
    ("observed", "expected_status", "expected_message"),
    [
        (lambda: Observed(hardware_class=None), "Progressing", "HardwareClass 'cpu' does not exist"),
        (lambda: Observed(hardware_class=_cpu_class(), jobs=[_job(None)]), "Progressing", "waiting for the optimization Job"),
        (
            lambda: Observed(hardware_class=_cpu_class(), jobs=[_job({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"})]),
            "Degraded",
            "Job has reached the specified backoff limit",
        ),
        (
            lambda: _ready(),
            "Healthy",
            "2 replica(s) ready at http://digits-cpu-triton.default.svc:8000",
        ),
    ],
    ids=["pending-class", "optimizing", "failed", "ready"],
)
def test_statuses_from_the_reconcile_core(observed, expected_status, expected_message):
    status = _operator_status(observed())
    state, message = health(model(status))
    assert state == expected_status
    assert message.startswith(expected_message), message
