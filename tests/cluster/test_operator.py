"""The operator, driven with kubectl as a user would, on the real control plane with kwok nodes."""

from __future__ import annotations

import json
import time

import pytest
import yaml

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

HARDWARE_CLASSES = """
apiVersion: inferops.dev/v1alpha1
kind: HardwareClass
metadata: {name: test-cpu}
spec:
  instanceKind: KIND_CPU
  nodeSelector: {inferops.dev/pool: cpu}
  resources: {requests: {cpu: "2", memory: 4Gi}, limits: {memory: 4Gi}}
---
apiVersion: inferops.dev/v1alpha1
kind: HardwareClass
metadata: {name: test-l4}
spec:
  instanceKind: KIND_GPU
  nodeSelector: {nvidia.com/gpu.product: NVIDIA-L4}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  resources: {requests: {cpu: "4", memory: 16Gi}, limits: {nvidia.com/gpu: 1, memory: 16Gi}}
---
apiVersion: inferops.dev/v1alpha1
kind: HardwareClass
metadata: {name: test-a100}
spec:
  instanceKind: KIND_GPU
  nodeSelector: {nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  resources: {limits: {nvidia.com/gpu: 1}}
"""


def model_manifest(name: str, *, recipe: str = "quantize-int8-dynamic", hardware: str = "test-l4", replicas: int = 1, extra_opt: str = "", batching: str = "disabled") -> str:
    """Batching off by default: with `auto` a tuning Job on the class's nodes comes between the
    optimization Job and the Deployment (tests/cluster/test_tuning.py), which these tests are not about."""
    return f"""
apiVersion: inferops.dev/v1alpha1
kind: InferenceModel
metadata: {{name: {name}}}
spec:
  model:
    uri: s3://models/{name}/model.onnx
    inputs: [{{name: input, datatype: FP32, dims: [64]}}]
    outputs: [{{name: probabilities, datatype: FP32, dims: [10]}}]
  optimization: {{recipe: "{recipe}"{extra_opt}}}
  hardware: {{class: {hardware}}}
  serving: {{replicas: {replicas}, dynamicBatching: {{mode: {batching}}}}}
"""


@pytest.fixture(scope="module", autouse=True)
def hardware_classes(cluster, operator):
    cluster.kubectl("apply", "-f", "-", input=HARDWARE_CLASSES)
    yield
    cluster.kubectl("delete", "hardwareclass", "test-cpu", "test-l4", "test-a100", "--ignore-not-found")


def poll(what: str, fn, timeout: float = 60, interval: float = 0.3):
    """Call fn until it returns something truthy, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := fn()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(interval)
    return value


def get(cluster, namespace: str, kind: str, name: str) -> dict:
    return json.loads(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)


def names(cluster, namespace: str, kind: str, model: str, component: str | None = None) -> list[str]:
    selector = f"inferops.dev/model={model}" + (f",app.kubernetes.io/component={component}" if component else "")
    out = cluster.kubectl("get", kind, "-n", namespace, "-l", selector, "-o", "jsonpath={.items[*].metadata.name}").stdout
    return sorted(out.split())


def wait_phase(cluster, namespace: str, name: str, phase: str, timeout: int = 60) -> dict:
    cluster.kubectl("wait", f"inferencemodel/{name}", "-n", namespace, f"--for=jsonpath={{.status.phase}}={phase}", f"--timeout={timeout}s", timeout=timeout + 10)
    return get(cluster, namespace, "inferencemodel", name)


def condition(model: dict, type_: str) -> dict:
    return next(c for c in model["status"]["conditions"] if c["type"] == type_)


def test_apply_example_reaches_ready_on_the_right_node(cluster, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=model_manifest("digits", batching="auto"))
    model = wait_phase(cluster, namespace, "digits", "Ready")
    assert model["status"]["readyReplicas"] == 1
    assert model["status"]["observedGeneration"] == model["metadata"]["generation"]
    assert condition(model, "Ready")["status"] == "True"
    assert model["status"]["endpoint"] == f"http://digits-triton.{namespace}.svc:8000"

    jobs = names(cluster, namespace, "jobs", "digits", component="optimizer")  # auto: its tuning Job is the other
    assert jobs == [model["status"]["jobName"]]
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=serving", "-o", "json").stdout)["items"]
    assert [p["spec"]["nodeName"] for p in pods] == ["gpu-l4-node-0"]
    triton = pods[0]["spec"]["containers"][0]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {p["name"]: p["containerPort"] for p in triton["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert triton["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"

    config = get(cluster, namespace, "configmap", "digits-triton-config")["data"]["config.pbtxt"]
    from inferops.triton.config import parse_model_config

    parsed = parse_model_config(config)
    assert parsed.max_batch_size == 32 and parsed.instance_group[0].kind == parsed.instance_group[0].KIND_GPU
    service = get(cluster, namespace, "service", "digits-triton")
    assert sorted(p["name"] for p in service["spec"]["ports"]) == ["grpc", "http", "metrics"]

    listing = cluster.kubectl("get", "im", "-n", namespace).stdout
    assert "digits" in listing and "Ready" in listing and "test-l4" in listing and "quantize-int8-dynamic" in listing


def test_recipe_change_rolls_a_new_job_and_deployment_revision(cluster, namespace):
    # On the 4-GPU node: tuning for a GPU class needs a GPU while the old revision keeps serving.
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=model_manifest("rolling", hardware="test-a100"))
    first = wait_phase(cluster, namespace, "rolling", "Ready")
    first_revision = get(cluster, namespace, "deployment", "rolling-triton")["metadata"]["annotations"]["deployment.kubernetes.io/revision"]

    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=model_manifest("rolling", recipe="prune,quantize-int8-dynamic", hardware="test-a100"))
    cluster.kubectl(
        "wait", "inferencemodel/rolling", "-n", namespace,
        "--for=jsonpath={.status.observedGeneration}=2", "--timeout=30s",
    )
    second = wait_phase(cluster, namespace, "rolling", "Ready")
    assert second["status"]["jobName"] != first["status"]["jobName"]
    assert second["status"]["artifactUri"] != first["status"]["artifactUri"]
    deadline = time.monotonic() + 30
    while names(cluster, namespace, "jobs", "rolling") != [second["status"]["jobName"]] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert names(cluster, namespace, "jobs", "rolling") == [second["status"]["jobName"]], "the old Job is retired"
    deployment = get(cluster, namespace, "deployment", "rolling-triton")
    assert int(deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) > int(first_revision)
    assert deployment["spec"]["template"]["metadata"]["annotations"]["inferops.dev/artifact"] == second["status"]["artifactUri"]


def test_deleting_the_model_removes_its_children(cluster, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=model_manifest("doomed", hardware="test-cpu"))
    wait_phase(cluster, namespace, "doomed", "Ready")
    for kind in ("jobs", "deployments", "services", "configmaps"):
        assert names(cluster, namespace, kind, "doomed"), kind
    cluster.kubectl("delete", "inferencemodel", "doomed", "-n", namespace)
    deadline = time.monotonic() + 60
    left = {}
    while time.monotonic() < deadline:
        left = {kind: names(cluster, namespace, kind, "doomed") for kind in ("jobs", "deployments", "services", "configmaps", "pods")}
        if not any(left.values()):
            break
        time.sleep(0.5)
    assert not any(left.values()), left


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (model_manifest("Bad_Name"), "metadata.name"),
        (model_manifest("x" * 45), "metadata.name"),
        (model_manifest("unknown-recipe", recipe="quantize-int9"), "unknown recipe; known recipes: none, quantize-int8-dynamic"),
        (model_manifest("negative", replicas=-1), "spec.serving.replicas"),
        (model_manifest("trt-on-cpu", recipe="tensorrt", hardware="test-cpu"), "recipe tensorrt needs a GPU, but HardwareClass 'test-cpu' is KIND_CPU"),
        (model_manifest("rows-too-many").replace("dynamicBatching: {mode: disabled}", "requestBatchSize: 8, dynamicBatching: {mode: explicit, maxBatchSize: 4}"),
         "maxBatchSize must be at least requestBatchSize"),
    ],
    ids=["bad-name", "long-name", "unknown-recipe", "negative-replicas", "tensorrt-on-cpu", "requests-larger-than-the-batch"],
)
def test_invalid_manifests_are_rejected_at_apply_time(cluster, namespace, manifest, message):
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert cluster.kubectl("get", "im", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_missing_hardware_class_waits_then_recovers(cluster, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=model_manifest("patient", hardware="late-class"))
    model = wait_phase(cluster, namespace, "patient", "Pending")
    resolved = condition(model, "HardwareClassResolved")
    assert resolved["status"] == "False" and resolved["reason"] == "HardwareClassNotFound"
    assert "late-class" in resolved["message"]
    assert names(cluster, namespace, "jobs", "patient") == []
    late = yaml.safe_load(HARDWARE_CLASSES.split("---")[0])
    late["metadata"]["name"] = "late-class"
    cluster.kubectl("apply", "-f", "-", input=json.dumps(late))
    try:
        wait_phase(cluster, namespace, "patient", "Ready")
    finally:
        cluster.kubectl("delete", "hardwareclass", "late-class")


def test_failed_job_fails_the_model_with_the_jobs_reason(cluster, namespace):
    # kwok runs Job pods for 1.5 s; a 1 s deadline makes the Job controller fail the Job for real.
    manifest = model_manifest("too-slow", hardware="test-cpu", extra_opt=", timeoutSeconds: 1")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    model = wait_phase(cluster, namespace, "too-slow", "Failed")
    optimized = condition(model, "Optimized")
    assert optimized["status"] == "False" and optimized["reason"] == "DeadlineExceeded"
    assert "backoffLimit" in optimized["message"]
    assert names(cluster, namespace, "deployments", "too-slow") == []
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=too-slow", "-o", "json").stdout
    assert any(e["reason"] == "Failed" and e["type"] == "Warning" for e in json.loads(events)["items"])


def _operator_writes(cluster, operator) -> list[dict]:
    return cluster.audit_writes(user=operator.user)


def test_reconcile_with_nothing_to_change_writes_nothing(cluster, namespace, operator):
    if not hasattr(cluster, "audit_writes"):
        pytest.skip("write counting reads the local API server's audit log")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=model_manifest("steady", hardware="test-cpu"))
    wait_phase(cluster, namespace, "steady", "Ready")
    time.sleep(2)  # let the last watch events of the rollout drain
    before = len(_operator_writes(cluster, operator))
    reconciles_before = operator.log.read_text().count("[%s/steady] Handler 'model_event' succeeded" % namespace)

    cluster.kubectl("label", "inferencemodel", "steady", "-n", namespace, "touched=yes")  # an event, but no change for us
    operator.kill()
    operator.start()  # resume: every model is listed and reconciled again
    deadline = time.monotonic() + 30
    while operator.log.read_text().count("[%s/steady] Handler 'model_event' succeeded" % namespace) < reconciles_before + 1:
        assert time.monotonic() < deadline, "the operator never reconciled the model again"
        time.sleep(0.2)
    time.sleep(2)
    new_writes = _operator_writes(cluster, operator)[before:]
    ours = [w for w in new_writes if w["objectRef"].get("namespace") == namespace and w["objectRef"]["resource"] != "events"]
    assert ours == [], [f"{w['verb']} {w['objectRef']}" for w in ours]


def test_operator_killed_mid_reconcile_makes_no_duplicates(cluster, namespace, operator):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=model_manifest("survivor", hardware="test-cpu"))
    cluster.kubectl("wait", "inferencemodel/survivor", "-n", namespace, "--for=jsonpath={.status.phase}=Optimizing", "--timeout=30s")
    operator.kill()
    operator.start()
    wait_phase(cluster, namespace, "survivor", "Ready")
    operator.kill()
    operator.start()
    model = wait_phase(cluster, namespace, "survivor", "Ready")
    assert names(cluster, namespace, "jobs", "survivor") == [model["status"]["jobName"]]
    assert names(cluster, namespace, "deployments", "survivor") == ["survivor-triton"]
    assert len(names(cluster, namespace, "replicasets", "survivor")) == 1
    creates = [
        w for w in cluster.audit_writes(user=operator.user)
        if w["verb"] == "create" and w["objectRef"].get("namespace") == namespace and w["objectRef"]["resource"] != "events"
    ]
    assert creates == [], "server-side apply creates through patch; a create means a duplicate attempt"
