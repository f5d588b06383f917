"""The tuning child and its place in the pure core: tuned where it will serve, re-tuned only
when what it measured changes, and a failed tuning never keeps a model from serving (unless
the spec asks for that) nor makes its Job again."""

from __future__ import annotations

from inferops.api.report import OptimizationReport, TuningReport
from inferops.api.tensors import BatchingConfig, Signature, TensorSpec
from inferops.reconcile.children import DEFAULT_AUTO_BATCHING
from inferops.reconcile.plan import JobTermination, Observed, desired_state
from inferops.reconcile.settings import OperatorSettings
from inferops.triton.config import parse_model_config
from .test_reconcile import CPU, GPU, NOW, SETTINGS, _assert_restricted, cond, current_job_name, deployment, job, kinds, model, spec

SIGNATURE = Signature(inputs=[TensorSpec(name="x", datatype="FP32", dims=[64])], outputs=[TensorSpec(name="y", datatype="FP32", dims=[10])])
CHOSEN = BatchingConfig(max_batch_size=16, preferred_batch_sizes=[8, 16], max_queue_delay_microseconds=300, instance_count=2)


def report(m) -> OptimizationReport:
    return OptimizationReport(artifact_uri="s3://artifacts/ml/digits/x", model_name="digits-opt", backend="onnxruntime", signature=SIGNATURE)


def tuning() -> TuningReport:
    return TuningReport(chosen=CHOSEN, throughput_per_s=1200.0, p99_ms=30.0, latency_objective_ms=100.0, measurements=9, grid_size=48)


def optimized(m, hw=GPU, **more) -> Observed:
    """The optimization Job succeeded and its report was read."""
    return Observed(hardware_class=hw, jobs=[job(current_job_name(m, hw), "Complete")], report=report(m), **more)


def tuning_job_of(plan) -> dict:
    return next(o for o in plan.apply if o["kind"] == "Job" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "tuner")


def test_the_tuning_job_runs_the_class_triton_image_beside_the_tuner_on_the_class_nodes():
    m = model()
    gpu = GPU.model_copy(update={"triton_image": "nvcr.io/nvidia/tritonserver:25.10-py3", "resources": GPU.resources.model_copy(update={"requests": {"cpu": "4"}})})
    plan = desired_state(m, optimized(m, gpu), SETTINGS, NOW)
    tuning_job = tuning_job_of(plan)
    assert tuning_job["metadata"]["name"] == plan.tuning_job_name == plan.status["tuningJobName"]
    assert tuning_job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    pod = tuning_job["spec"]["template"]["spec"]
    _assert_restricted(pod)
    assert pod["nodeSelector"] == gpu.node_selector and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    fetch, triton = pod["initContainers"]
    # The same pull step as the Deployment's: the same repository on the same kind of server.
    serving = desired_state(m, optimized(m, gpu, status={}), SETTINGS, NOW)
    assert fetch["args"][:3] == ["pull", "--uri", "s3://artifacts/ml/digits/" + current_job_name(m, gpu).rsplit("-", 1)[1]]
    assert triton["restartPolicy"] == "Always", "a native sidecar: the Job completes when the tuner exits"
    assert triton["image"] == "nvcr.io/nvidia/tritonserver:25.10-py3" and "--model-control-mode=explicit" in triton["args"]
    assert triton["resources"] == {"limits": {"nvidia.com/gpu": 1}, "requests": {"cpu": "4"}}, "the class's resources and accelerators"
    assert triton["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    tuner = pod["containers"][0]
    args = tuner["args"]
    assert args[:3] == ["tune", "--server", "localhost:8000"]
    assert args[args.index("--model") + 1] == "digits-opt" and args[args.index("--instance-kind") + 1] == "KIND_GPU"
    assert args[args.index("--latency-objective-ms") + 1] == "100.0" and args[args.index("--concurrency") + 1] == "16"
    assert args[args.index("--output") + 1] == plan.tuning_uri and plan.tuning_uri.endswith(f"/tuning-{plan.tuning_job_name.rsplit('-', 1)[1]}.json")
    env = {e["name"]: e for e in tuner["env"]}
    assert env["INFEROPS_TUNING_IMAGE"]["value"] == triton["image"]
    assert env["INFEROPS_NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert tuner["image"] == fetch["image"]  # the optimizer image
    assert env["INFEROPS_ACCELERATOR"]["value"] == "NVIDIA-L4"
    # The tuner shares the server's repository (duels serve two candidates at once).
    assert args[args.index("--repository") + 1] == "/models/repository"
    assert {m["name"]: m["mountPath"] for m in tuner["volumeMounts"]}["models"] == {m["name"]: m["mountPath"] for m in triton["volumeMounts"]}["models"]
    rules = tuning_job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onExitCodes": {"containerName": "tune", "operator": "In", "values": [4]}}
    assert tuning_job["spec"]["backoffLimit"] <= 1 and tuning_job["spec"]["activeDeadlineSeconds"] <= 60 * 60
    assert serving.status["phase"] == "Optimizing" and kinds(serving) == ["Job"], "nothing is served before the tuning"
    assert cond(plan, "Tuned")["status"] == "Unknown" and cond(plan, "Ready")["reason"] == "Tuning"


def test_a_python_backend_class_tunes_what_it_serves():
    m = model(spec(hardware={"class": "cpu"}))
    python_cpu = CPU.model_copy(update={"onnx_backend": "python"})
    pod = tuning_job_of(desired_state(m, optimized(m, python_cpu), SETTINGS, NOW))["spec"]["template"]["spec"]
    assert "--python-backend" in pod["initContainers"][0]["args"]
    assert "--allow-gpu-metrics=false" in pod["initContainers"][1]["args"]


def test_tuned_choice_reaches_config_status_and_condition():
    m = model()
    observed = optimized(m, deployment=deployment(2))
    name = desired_state(m, observed, SETTINGS, NOW).tuning_job_name
    observed.jobs.append(job(name, "Complete"))
    first = desired_state(m, observed, SETTINGS, NOW)
    assert first.needs_tuning_report and first.tuning_uri
    observed.tuning = tuning()
    plan = desired_state(m, observed, SETTINGS, NOW)
    config = parse_model_config(next(o for o in plan.apply if o["kind"] == "ConfigMap")["data"]["config.pbtxt"])
    assert config.max_batch_size == 16 and config.instance_group[0].count == 2
    assert config.dynamic_batching.max_queue_delay_microseconds == 300
    assert plan.status["report"]["tuning"]["measurements"] == 9 and plan.status["batching"]["maxBatchSize"] == 16
    assert cond(plan, "Tuned")["status"] == "True" and "max batch 16" in cond(plan, "Tuned")["message"]
    assert "objective" not in cond(plan, "Tuned")["message"]
    observed.tuning = tuning().model_copy(update={"p99_ms": 175.0})
    assert "above the p99 objective of 100 ms" in cond(desired_state(m, observed, SETTINGS, NOW), "Tuned")["message"]
    assert plan.status["phase"] == "Ready" and "Job" not in kinds(plan), "both Jobs done: neither is applied again"
    assert plan.delete_jobs == []


def _tuned_and_serving(m, hw=GPU):
    """A model served with its tuning: what the status of the last reconcile says."""
    observed = optimized(m, hw, deployment=deployment(2))
    name = desired_state(m, observed, SETTINGS, NOW).tuning_job_name
    observed.jobs.append(job(name, "Complete"))
    observed.tuning = tuning()
    return desired_state(m, observed, SETTINGS, NOW), name


def test_class_image_objective_or_concurrency_change_retunes_without_reoptimizing():
    m = model()
    served, tuned_job = _tuned_and_serving(m)
    changes = {
        "class image": (m, GPU.model_copy(update={"triton_image": "nvcr.io/nvidia/tritonserver:26.01-py3"})),
        "objective": (model(spec(serving={"replicas": 2, "latencyObjectiveMs": 20}), 2), GPU),
        "concurrency": (model(spec(serving={"replicas": 2, "expectedConcurrency": 64}), 2), GPU),
        "rows per request": (model(spec(serving={"replicas": 2, "requestBatchSize": 8}), 2), GPU),
    }
    for what, (changed, hw) in changes.items():
        assert current_job_name(changed, hw) == current_job_name(m), what
        observed = Observed(hardware_class=hw, jobs=[job(current_job_name(m), "Complete"), job(tuned_job, "Complete")], report=report(m),
                            deployment=deployment(2), status=served.status)
        plan = desired_state(changed, observed, SETTINGS, NOW)
        jobs = [o["metadata"]["name"] for o in plan.apply if o["kind"] == "Job"]
        assert jobs == [plan.tuning_job_name] and plan.tuning_job_name != tuned_job, f"{what}: a new tuning Job, no optimization Job"
        assert plan.delete_jobs == [tuned_job], what
        # The last tuning keeps serving until the new one is published.
        config = parse_model_config(next(o for o in plan.apply if o["kind"] == "ConfigMap")["data"]["config.pbtxt"])
        assert config.max_batch_size == 16 and plan.status["report"]["tuning"]["measurements"] == 9, what
        assert plan.status["phase"] == "Optimizing" and cond(plan, "Tuned")["reason"] == "Tuning", what


def test_other_changes_reuse_the_tuning():
    m = model()
    _, tuned_job = _tuned_and_serving(m)
    unchanged = (
        model(spec(serving={"replicas": 5}), 2),
        model(spec(serving={"replicas": 2, "autoscaling": {"maxReplicas": 4}}), 2),
        model(spec(serving={"replicas": 2, "requestBatchSize": 1}), 2),  # the default, spelled out: tunings made before the field stay
    )
    for changed in unchanged:
        observed = optimized(changed, deployment=deployment(2))
        assert desired_state(changed, observed, SETTINGS, NOW).tuning_job_name == tuned_job
    cpu_requests = GPU.model_copy(update={"resources": GPU.resources.model_copy(update={"requests": {"cpu": "8"}})})
    assert desired_state(m, optimized(m, cpu_requests), SETTINGS, NOW).tuning_job_name != tuned_job, "the class's resources are what it measures on"


def test_a_failed_tuning_deploys_the_default_batching_says_why_and_keeps_its_job():
    m = model()
    observed = optimized(m, deployment=deployment(2))
    name = desired_state(m, observed, SETTINGS, NOW).tuning_job_name
    observed.jobs.append(job(name, "Failed", "PodFailurePolicy", "Container tune for pod ml/x exited with code 4"))
    first = desired_state(m, observed, SETTINGS, NOW)
    assert first.needs_tuning_termination
    observed.tuning_termination, observed.tuning_termination_read = JobTermination(4, "Triton refused config max_batch_size 64: out of memory"), True
    plan = desired_state(m, observed, SETTINGS, NOW)
    tuned = cond(plan, "Tuned")
    assert tuned["status"] == "False" and tuned["reason"] == "TuningFailed"
    assert "Triton refused config max_batch_size 64" in tuned["message"] and "default batching" in tuned["message"]
    config = parse_model_config(next(o for o in plan.apply if o["kind"] == "ConfigMap")["data"]["config.pbtxt"])
    assert config.max_batch_size == DEFAULT_AUTO_BATCHING["max_batch_size"]
    assert plan.status["phase"] == "Ready" and "tuning" not in plan.status["report"]
    # Never made again: its name stays the current one, and an existing Job is not re-applied.
    assert [o["metadata"]["name"] for o in plan.apply if o["kind"] == "Job"] == [name] and name not in plan.delete_jobs
    assert not plan.needs_tuning_termination


def test_a_tuning_deadline_or_unreadable_result_also_deploys_the_default():
    m = model()
    observed = optimized(m, deployment=deployment(2))
    name = desired_state(m, observed, SETTINGS, NOW).tuning_job_name
    observed.jobs.append(job(name, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline"))
    observed.tuning_termination_read = True  # its pod was killed: no exit code of the tuner's own
    plan = desired_state(m, observed, SETTINGS, NOW)
    assert cond(plan, "Tuned")["reason"] == "TuningFailed" and "DeadlineExceeded" in cond(plan, "Tuned")["message"]
    assert plan.status["phase"] == "Ready"

    observed.jobs[-1] = job(name, "Complete")
    observed.tuning_error = "NoSuchKey: tuning-x.json"
    plan = desired_state(m, observed, SETTINGS, NOW)
    assert cond(plan, "Tuned")["reason"] == "TuningUnavailable" and "NoSuchKey" in cond(plan, "Tuned")["message"]
    assert plan.status["batching"]["maxBatchSize"] == DEFAULT_AUTO_BATCHING["max_batch_size"]


def test_require_tuning_fails_the_model_instead_of_deploying_untuned():
    m = model(spec(serving={"replicas": 2, "dynamicBatching": {"mode": "auto", "requireTuning": True}}))
    observed = optimized(m)
    name = desired_state(m, observed, SETTINGS, NOW).tuning_job_name
    observed.jobs.append(job(name, "Failed", "PodFailurePolicy", "exited with code 4"))
    observed.tuning_termination, observed.tuning_termination_read = JobTermination(4, "no config met p99 100 ms"), True
    plan = desired_state(m, observed, SETTINGS, NOW)
    assert plan.status["phase"] == "Failed" and kinds(plan) == ["Job"]
    assert cond(plan, "Ready")["reason"] == "TuningFailed" and "requireTuning" in cond(plan, "Tuned")["message"]


def test_no_tuning_without_auto_batching():
    for batching in ({"mode": "explicit", "maxBatchSize": 8}, {"mode": "disabled"}):
        m = model(spec(serving={"replicas": 2, "dynamicBatching": batching}))
        plan = desired_state(m, optimized(m, deployment=deployment(2)), SETTINGS, NOW)
        assert plan.tuning_job_name is None and kinds(plan) == ["ConfigMap", "Deployment", "Service"]
        assert not [c for c in plan.status["conditions"] if c["type"] == "Tuned"] and "tuningJobName" not in plan.status


def test_tuner_flags_of_the_operator_reach_the_job_and_its_hash():
    m = model()
    short = OperatorSettings(artifact_root="s3://artifacts", smoke_test=False, tune_args=("--duration", "1"), tuning_max_minutes=3)
    plan = desired_state(m, optimized(m), short, NOW)
    tuning_job = tuning_job_of(plan)
    args = tuning_job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-2:] == ["--duration", "1"] and args[args.index("--max-minutes") + 1] == "3"
    assert plan.tuning_job_name != desired_state(m, optimized(m), SETTINGS, NOW).tuning_job_name
    assert tuning_job["spec"]["activeDeadlineSeconds"] == 3 * 60 + 600


def test_the_tuning_job_and_its_pull_step_speak_the_commands_own_arguments():
    """What the operator writes into the pod is what `inferops tune` and `inferops pull` accept."""
    from inferops.cli import build_parser

    m = model(spec(hardware={"class": "cpu"}))
    python_cpu = CPU.model_copy(update={"onnx_backend": "python"})
    settings = OperatorSettings(artifact_root="s3://artifacts", smoke_test=False, tune_args=("--duration", "0.5", "--max-batch-sizes", "4,16", "--preferred-batch-sizes", "half", "--budget", "4"))
    pod = tuning_job_of(desired_state(m, optimized(m, python_cpu), settings, NOW))["spec"]["template"]["spec"]
    tune = build_parser().parse_args(pod["containers"][0]["args"])
    assert (tune.server, tune.model, tune.concurrency, tune.instance_kind, tune.duration) == ("localhost:8000", "digits-opt", 16, "KIND_CPU", 0.5)
    assert tune.request_batch_size == 1
    assert tune.output.startswith("s3://artifacts/ml/digits/") and tune.max_minutes == settings.tuning_max_minutes and tune.budget == 4
    assert tune.preferred_batch_sizes == ("half",), "INFEROPS_TUNE_ARGS steers the preferred-sizes axis too"
    pull = build_parser().parse_args(pod["initContainers"][0]["args"])
    assert pull.python_backend and pull.dest == tune.repository


def test_inferops_up_says_where_the_tuning_measured_or_why_there_is_none():
    from inferops.devcluster.up_cmd import _tuning_line

    line = _tuning_line({"throughputPerSecond": 812.3, "p99Ms": 31.24, "latencyObjectiveMs": 50, "measurements": 6, "gridSize": 24,
                         "wallSeconds": 26.3, "concurrency": 16, "node": "real-node-0", "image": "inferops.dev/triton-cpu:x"}, {})
    assert "812 infer/s at p99 31.2 ms" in line and "16 clients" in line and "on real-node-0 with inferops.dev/triton-cpu:x" in line
    failed = {"conditions": [{"type": "Tuned", "status": "False", "reason": "TuningFailed", "message": "no config could be measured"}]}
    assert "TuningFailed no config could be measured" in _tuning_line({}, failed)


def test_rows_per_request_reach_the_tuner_and_floor_the_default_batching():
    m = model(spec(serving={"requestBatchSize": 64}))
    plan = desired_state(m, optimized(m), SETTINGS, NOW)
    args = tuning_job_of(plan)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--request-batch-size") + 1] == "64"
    failed = Observed(hardware_class=GPU, jobs=[job(current_job_name(m), "Complete"), job(plan.tuning_job_name, "Failed")], report=report(m),
                      tuning_termination=JobTermination(4, "no config could be measured"), tuning_termination_read=True)
    config = parse_model_config(next(o for o in desired_state(m, failed, SETTINGS, NOW).apply if o["kind"] == "ConfigMap")["data"]["config.pbtxt"])
    assert config.max_batch_size == 64 > DEFAULT_AUTO_BATCHING["max_batch_size"], "the default batching takes the clients' requests"
