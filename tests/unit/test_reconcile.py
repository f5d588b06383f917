"""The pure reconcile core: names, rendered children, and the phase/condition state machine."""

from __future__ import annotations

import pytest

from inferops.api.hardware_class import HardwareClassSpec
from inferops.api.inference_model import InferenceModelSpec
from inferops.api.report import AccuracyReport, OptimizationReport, TuningReport
from inferops.api.tensors import BatchingConfig, ExecutionAccelerator, Signature, TensorSpec
from inferops.reconcile.children import ModelRef, desired_job
from inferops.reconcile.naming import job_name, optimization_hash
from inferops.reconcile.plan import Observed, SmokeResult, desired_state
from inferops.reconcile.settings import OperatorSettings
from inferops.triton.config import parse_model_config

SETTINGS = OperatorSettings(artifact_root="s3://artifacts", smoke_test=False)
NOW = "2026-11-22T00:00:00Z"
GPU = HardwareClassSpec.model_validate(
    {
        "instanceKind": "KIND_GPU",
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "resources": {"limits": {"nvidia.com/gpu": 1}},
    }
)
CPU = HardwareClassSpec.model_validate({"instanceKind": "KIND_CPU", "nodeSelector": {"inferops.dev/pool": "cpu"}})


def spec(**overrides) -> InferenceModelSpec:
    base = {
        "model": {
            "uri": "s3://models/digits.onnx",
            "inputs": [{"name": "input", "datatype": "FP32", "dims": [64]}],
            "outputs": [{"name": "probabilities", "datatype": "FP32", "dims": [10]}],
        },
        "optimization": {"recipe": "quantize-int8-dynamic"},
        "hardware": {"class": "l4"},
        "serving": {"replicas": 2},
    }
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value}
    return InferenceModelSpec.model_validate(base)


def model(s: InferenceModelSpec | None = None, generation: int = 1) -> ModelRef:
    return ModelRef("digits", "ml", "uid-1", generation, s or spec())


def job(name: str, condition: str | None, reason: str = "", message: str = "") -> dict:
    conditions = [{"type": condition, "status": "True", "reason": reason, "message": message}] if condition else []
    return {"metadata": {"name": name}, "status": {"conditions": conditions}}


def deployment(ready: int, replicas: int = 2) -> dict:
    return {
        "metadata": {"name": "digits-triton", "generation": 1},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": 1, "readyReplicas": ready, "updatedReplicas": replicas, "replicas": replicas},
    }


def current_job_name(m: ModelRef, hw: HardwareClassSpec = GPU) -> str:
    return job_name(m.name, optimization_hash(m.spec, hw))


def committed(uri: str = "s3://artifacts/ml/digits/x") -> OptimizationReport:
    """The report.json of a committed artifact, as the operator reads it (required to deploy)."""
    return OptimizationReport(artifact_uri=uri, model_name="digits", backend="onnxruntime")


def tuned(m: ModelRef, observed: Observed) -> Observed:
    """`dynamicBatching: auto` (the default) deploys once its tuning Job published a choice: that
    Job done, and its TuningReport read."""
    tuning_job = desired_state(m, observed, SETTINGS, NOW).tuning_job_name
    if tuning_job:
        observed.jobs.append(job(tuning_job, "Complete"))
        observed.tuning = TuningReport(chosen=BatchingConfig(max_batch_size=8), throughput_per_s=500.0, p99_ms=20.0, latency_objective_ms=100.0, measurements=5, grid_size=36)
    return observed


def kinds(plan) -> list[str]:
    return [o["kind"] for o in plan.apply]


def cond(plan, type_: str) -> dict:
    return next(c for c in plan.status["conditions"] if c["type"] == type_)


def test_job_name_follows_what_the_output_depends_on():
    base = optimization_hash(spec(), GPU)
    assert base == optimization_hash(spec(), GPU)
    assert base == optimization_hash(spec(serving={"replicas": 7}), GPU), "replicas do not change the artifact"
    assert base != optimization_hash(spec(optimization={"recipe": "prune"}), GPU)
    assert base != optimization_hash(spec(model={"uri": "s3://models/other.onnx"}), GPU)
    # Tuning runs in a Job of its own (reconcile/tuning.py): what it is tuned for re-tunes, never re-optimizes.
    assert base == optimization_hash(spec(serving={"latencyObjectiveMs": 20}), GPU)
    assert base == optimization_hash(spec(serving={"expectedConcurrency": 64}), GPU)
    assert base == optimization_hash(spec(), GPU.model_copy(update={"triton_image": "registry.example/triton:26.01"}))
    assert len(job_name("a" * 40, base)) <= 63


def test_job_runs_on_the_class_nodes_with_owner_and_deadline():
    m = model(spec(optimization={"recipe": "prune,quantize-int8-dynamic", "parameters": {"sparsity": "0.5"}, "timeoutSeconds": 900}))
    rendered = desired_job(m, GPU, "abc123", SETTINGS)
    pod = rendered["spec"]["template"]["spec"]
    assert rendered["metadata"]["ownerReferences"][0] | {"uid": "uid-1", "controller": True} == rendered["metadata"]["ownerReferences"][0]
    assert rendered["spec"]["activeDeadlineSeconds"] == 900 and rendered["spec"]["backoffLimit"] == 2
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    args = pod["containers"][0]["args"]
    assert args[args.index("--recipe") + 1] == "prune,quantize-int8-dynamic"
    assert args[args.index("--output") + 1] == "s3://artifacts/ml/digits/abc123"
    assert "--tune" not in args and "--latency-objective-ms" not in args, "tuning has its own Job"
    assert "--require-batch" in args, "auto batching: a model that cannot batch is refused by the optimizer at once"
    assert "nvidia.com/gpu" not in str(pod["containers"][0]["resources"]), "no GPU recipe: the Job leaves the GPU to serving"
    assert args[args.index("--param") + 1] == "sparsity=0.5"
    _assert_restricted(pod)


def _assert_restricted(pod: dict) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"] + pod.get("initContainers", []):
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}


def test_hostile_values_stay_values():
    nasty = 'x"\n  evil: {{ 7 * 7 }}\n}: [\'\u2028'
    m = model(spec(optimization={"parameters": {"note": nasty}}))
    args = desired_job(m, GPU, "abc", SETTINGS)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--param") + 1] == f"note={nasty}"
    assert "evil" not in desired_job(m, GPU, "abc", SETTINGS)["spec"]["template"]["spec"]["containers"][0]


def test_missing_hardware_class_is_pending_and_creates_nothing():
    plan = desired_state(model(), Observed(hardware_class=None), SETTINGS, NOW)
    assert plan.status["phase"] == "Pending" and plan.apply == []
    assert cond(plan, "HardwareClassResolved")["reason"] == "HardwareClassNotFound"


def test_gpu_recipe_on_cpu_class_fails_clearly():
    plan = desired_state(model(spec(optimization={"recipe": "fp16"})), Observed(hardware_class=CPU), SETTINGS, NOW)
    assert plan.status["phase"] == "Failed" and plan.apply == []
    assert "fp16" in cond(plan, "Ready")["message"] and "KIND_CPU" in cond(plan, "Ready")["message"]


def test_new_model_gets_its_job_and_is_optimizing():
    m = model()
    plan = desired_state(m, Observed(hardware_class=GPU, report_error="NotFound", report_missing=True), SETTINGS, NOW)
    assert kinds(plan) == ["Job"] and plan.apply[0]["metadata"]["name"] == current_job_name(m)
    assert plan.status["phase"] == "Optimizing"
    assert cond(plan, "Optimized")["status"] == "Unknown"


def test_succeeded_job_deploys_then_ready():
    m = model()
    name = current_job_name(m)
    observed = tuned(m, Observed(hardware_class=GPU, jobs=[job(name, "Complete")], report=committed()))
    plan = desired_state(m, observed, SETTINGS, NOW)
    assert kinds(plan) == ["ConfigMap", "Deployment", "Service"]
    assert plan.status["phase"] == "Deploying"
    assert cond(plan, "Optimized")["reason"] == "JobSucceeded"
    dep = plan.apply[1]
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    _assert_restricted(pod)
    assert {v["name"]: v for v in pod["volumes"]}["dshm"]["emptyDir"]["medium"] == "Memory"
    assert pod["containers"][0]["startupProbe"]["failureThreshold"] * pod["containers"][0]["startupProbe"]["periodSeconds"] >= 600
    config = parse_model_config(plan.apply[0]["data"]["config.pbtxt"])
    assert config.name == "digits" and config.instance_group[0].kind == config.instance_group[0].KIND_GPU

    observed.deployment = deployment(ready=2)
    ready = desired_state(m, observed, SETTINGS, NOW)
    assert ready.status["phase"] == "Ready" and ready.status["readyReplicas"] == 2
    assert cond(ready, "Ready")["status"] == "True"


def test_tuned_batching_from_the_tuning_job_reaches_config_and_status():
    m = model()
    chosen = BatchingConfig(max_batch_size=16, preferred_batch_sizes=[4, 16], max_queue_delay_microseconds=200, instance_count=2)
    report = OptimizationReport(
        artifact_uri="s3://artifacts/ml/digits/x",
        model_name="digits",
        backend="onnxruntime",
        signature=Signature(inputs=[TensorSpec(name="x", datatype="FP32", dims=[64])], outputs=[TensorSpec(name="y", datatype="FP32", dims=[10])]),
    )
    observed = Observed(hardware_class=GPU, jobs=[job(current_job_name(m), "Complete")], report=report, deployment=deployment(2))
    tuning_job = desired_state(m, observed, SETTINGS, NOW).tuning_job_name
    observed.jobs.append(job(tuning_job, "Complete"))
    observed.tuning = TuningReport(chosen=chosen, throughput_per_s=900.0, p99_ms=40.0, latency_objective_ms=100.0, measurements=7, grid_size=36)
    plan = desired_state(m, observed, SETTINGS, NOW)
    config = parse_model_config(plan.apply[0]["data"]["config.pbtxt"])
    assert config.max_batch_size == 16 and list(config.dynamic_batching.preferred_batch_size) == [4, 16]
    assert config.instance_group[0].count == 2 and config.input[0].name == "x"
    assert plan.status["batching"]["maxBatchSize"] == 16
    assert plan.status["report"]["tuning"]["measurements"] == 7
    assert plan.retry_after is None, "nothing failed: nothing to try again"


def test_the_artifacts_gpu_accelerator_reaches_the_served_config():
    """The operator's ConfigMap is mounted over the artifact's own config.pbtxt: what the artifact
    needs (ONNX Runtime's TensorRT accelerator) must come through the report into that one."""
    m = model(spec(optimization={"recipe": "tensorrt"}, serving={"dynamicBatching": {"mode": "explicit", "maxBatchSize": 8}}))
    trt = ExecutionAccelerator(name="tensorrt", parameters={"precision_mode": "FP16"})
    report = OptimizationReport(
        artifact_uri="s3://artifacts/ml/digits/x", model_name="digits", backend="onnxruntime",
        signature=Signature(inputs=[TensorSpec(name="x", datatype="FP32", dims=[64])], outputs=[TensorSpec(name="y", datatype="FP32", dims=[10])]),
        accelerators=[trt],
    )
    observed = Observed(hardware_class=GPU, jobs=[job(current_job_name(m), "Complete")], report=report, deployment=deployment(2))
    config = parse_model_config(desired_state(m, observed, SETTINGS, NOW).apply[0]["data"]["config.pbtxt"])
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == ["tensorrt"] and accelerators[0].parameters["precision_mode"] == "FP16"


def test_a_python_backend_class_serves_onnx_through_model_py():
    """A Triton image without the onnxruntime backend (the local CPU image): the config names the
    Python backend and the pull step writes the model.py that runs ONNX Runtime."""
    m = model(spec(optimization={"recipe": "none"}))
    python_cpu = CPU.model_copy(update={"onnx_backend": "python"})
    for hardware, backend, flag in ((CPU, "onnxruntime", False), (python_cpu, "python", True)):
        observed = tuned(m, Observed(hardware_class=hardware, jobs=[job(current_job_name(m, hardware), "Complete")], report=committed(), deployment=deployment(2)))
        plan = desired_state(m, observed, SETTINGS, NOW)
        config = parse_model_config(plan.apply[0]["data"]["config.pbtxt"])
        assert (config.backend, "ORT_INTRA_OP_THREADS" in config.parameters) == (backend, flag)
        pull = plan.apply[1]["spec"]["template"]["spec"]["initContainers"][0]["args"]
        assert ("--python-backend" in pull) == flag


def test_failed_job_fails_the_model_with_its_reason():
    m = model()
    observed = Observed(hardware_class=GPU, jobs=[job(current_job_name(m), "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")])
    plan = desired_state(m, observed, SETTINGS, NOW)
    assert plan.status["phase"] == "Failed"
    optimized = cond(plan, "Optimized")
    assert optimized["reason"] == "BackoffLimitExceeded" and "backoff limit" in optimized["message"]
    assert plan.apply[0]["kind"] == "Job"  # kept, never recreated under the same name


def test_broken_accuracy_budget_deploys_nothing():
    m = model()
    report = OptimizationReport(
        artifact_uri="x", model_name="digits", backend="onnxruntime",
        accuracy=AccuracyReport(metric="accuracy", before=0.97, after=0.80, drop=0.17, budget=0.01, passed=False), passed=False,
    )
    plan = desired_state(m, Observed(hardware_class=GPU, jobs=[job(current_job_name(m), "Complete")], report=report), SETTINGS, NOW)
    assert plan.status["phase"] == "Failed" and cond(plan, "Optimized")["reason"] == "AccuracyBudgetExceeded"
    assert kinds(plan) == []


def test_changed_spec_retires_old_job_and_keeps_serving_the_old_artifact():
    m = model(spec(optimization={"recipe": "prune"}), generation=2)
    previous = {"artifactUri": "s3://artifacts/ml/digits/old", "conditions": [{"type": "Ready", "status": "True", "reason": "DeploymentReady", "lastTransitionTime": "t0"}]}
    observed = Observed(hardware_class=GPU, jobs=[job("digits-opt-old", "Complete")], deployment=deployment(2), status=previous)
    plan = desired_state(m, observed, SETTINGS, NOW)
    assert plan.delete_jobs == ["digits-opt-old"]
    assert kinds(plan) == ["Job", "ConfigMap", "Deployment", "Service"]
    assert plan.apply[2]["spec"]["template"]["metadata"]["annotations"]["inferops.dev/artifact"] == "s3://artifacts/ml/digits/old"
    assert plan.status["phase"] == "Optimizing"
    assert cond(plan, "Ready")["lastTransitionTime"] == "t0", "an unchanged condition keeps its transition time"


@pytest.mark.parametrize(("smoke", "phase", "reason"), [(None, "Deploying", "SmokeTestPending"), (SmokeResult(False, "connection refused"), "Deploying", "SmokeTestFailed"), (SmokeResult(True, "ok in 3.0 ms"), "Ready", "DeploymentReady")])
def test_smoke_inference_gates_ready(smoke, phase, reason):
    m = model()
    settings = OperatorSettings(artifact_root="s3://artifacts", smoke_test=True)
    observed = tuned(m, Observed(hardware_class=GPU, jobs=[job(current_job_name(m), "Complete")], report=committed(), deployment=deployment(2), smoke=smoke))
    plan = desired_state(m, observed, settings, NOW)
    assert plan.status["phase"] == phase and cond(plan, "Ready")["reason"] == reason
    assert (plan.smoke_target is not None) == (smoke is None)
    if reason == "SmokeTestFailed":  # tried again by itself: no event may ever come to trigger it
        assert plan.retry_after is not None


def test_smoke_inference_goes_to_the_cluster_ip_when_the_service_has_one():
    """No cluster DNS is needed: an operator outside the cluster reaches a ClusterIP, not a .svc name."""
    m = model()
    settings = OperatorSettings(artifact_root="s3://artifacts", smoke_test=True)
    service = {"kind": "Service", "metadata": {"name": "digits-triton"}, "spec": {"clusterIP": "10.0.12.34"}}
    for live, url in (({}, "http://digits-triton.ml.svc:8000"), ({"Service": service}, "http://10.0.12.34:8000")):
        observed = tuned(m, Observed(hardware_class=GPU, jobs=[job(current_job_name(m), "Complete")], report=committed(), deployment=deployment(2), live_children=live))
        assert desired_state(m, observed, settings, NOW).smoke_target[0] == url
