"""The tracker's "Safe to share" defects, against the real API server, Job controller and kwok:
failures that say why, name clashes refused, status replaced whole."""

from __future__ import annotations

import json

import pytest
from test_operator import condition, get, poll, wait_phase

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CLASS = """
apiVersion: inferops.dev/v1alpha1
kind: HardwareClass
metadata: {name: share-cpu}
spec:
  instanceKind: KIND_CPU
  nodeSelector: {inferops.dev/pool: cpu}
  resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 128Mi}}
"""


def manifest(name: str, uri: str = "", recipe: str = "none", batching: str = "disabled") -> str:
    return f"""
apiVersion: inferops.dev/v1alpha1
kind: InferenceModel
metadata: {{name: {name}}}
spec:
  model:
    uri: {uri or f"s3://models/{name}/model.onnx"}
    inputs: [{{name: input, datatype: FP32, dims: [64]}}]
    outputs: [{{name: probabilities, datatype: FP32, dims: [10]}}]
  optimization: {{recipe: "{recipe}"}}
  hardware: {{class: share-cpu}}
  serving: {{replicas: 1, dynamicBatching: {{mode: {batching}}}}}
"""


@pytest.fixture(scope="module", autouse=True)
def hardware_class(cluster, operator):
    cluster.kubectl("apply", "-f", "-", input=CLASS)
    yield
    cluster.kubectl("delete", "hardwareclass", "share-cpu", "--ignore-not-found")


# -- (a) failures that say why ------------------------------------------------------------


def test_accuracy_gate_failure_fails_the_job_at_once_and_the_model_says_why(cluster, namespace):
    """kwok ends this model's optimizer pod as the optimizer does when the gate fails: exit 3 and
    the measured drop in its termination message (devcluster/profiles/kwok-stages.yaml)."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("gated", uri="s3://kwok/accuracy-gate-fails.onnx"))
    model = wait_phase(cluster, namespace, "gated", "Failed")
    optimized = poll("the optimizer's reason", lambda: (c := condition(get(cluster, namespace, "inferencemodel", "gated"), "Optimized"))["reason"] == "AccuracyBudgetExceeded" and c)
    assert optimized["status"] == "False"
    assert "dropped by 0.0500" in optimized["message"], optimized
    assert condition(get(cluster, namespace, "inferencemodel", "gated"), "Ready")["reason"] == "AccuracyBudgetExceeded"

    job = get(cluster, namespace, "job", model["status"]["jobName"])
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PodFailurePolicy", failed
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={job['metadata']['name']}", "-o", "json").stdout)["items"]
    assert len(pods) == 1, "exit code 3 is final: no retry within backoffLimit"


# -- (c) name clash -----------------------------------------------------------------------

FOREIGN = """
apiVersion: v1
kind: ConfigMap
metadata: {name: clash-triton-config, labels: {app: someone-else}}
data: {config.pbtxt: "theirs"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: clash-triton, labels: {app: someone-else}}
spec:
  replicas: 0
  selector: {matchLabels: {app: someone-else}}
  template:
    metadata: {labels: {app: someone-else}}
    spec: {containers: [{name: app, image: registry.example/theirs:1}]}
"""


def test_children_named_like_foreign_objects_are_refused_and_those_left_untouched(cluster, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=FOREIGN)
    before = {kind: get(cluster, namespace, kind, name) for kind, name in (("configmap", "clash-triton-config"), ("deployment", "clash-triton"))}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("clash"))
    poll("the NameConflict condition", lambda: any(
        c["type"] == "Ready" and c["reason"] == "NameConflict" for c in (get(cluster, namespace, "inferencemodel", "clash").get("status") or {}).get("conditions", [])
    ))
    model = get(cluster, namespace, "inferencemodel", "clash")
    ready = condition(model, "Ready")
    assert ready["status"] == "False" and "ConfigMap clash-triton-config" in ready["message"] and "Deployment clash-triton" in ready["message"], ready
    assert model["status"]["phase"] == "Failed"
    for (kind, name), old in zip((("configmap", "clash-triton-config"), ("deployment", "clash-triton")), before.values()):
        now = get(cluster, namespace, kind, name)
        assert "ownerReferences" not in now["metadata"], f"{kind} {name} was taken over"
        assert now["metadata"]["labels"] == old["metadata"]["labels"] and now.get("spec") == old.get("spec") and now.get("data") == old.get("data")
        assert "inferops" not in {m["manager"] for m in now["metadata"].get("managedFields", [])}
    assert get(cluster, namespace, "configmap", "clash-triton-config")["data"] == {"config.pbtxt": "theirs"}
    assert cluster.kubectl("get", "service", "clash-triton", "-n", namespace, check=False).returncode != 0, "nothing applied while a name is taken"


# -- (d) inputs the cluster cannot serve, refused at apply --------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"optimization": {"recipe": "prune", "parameters": {"--output": "s3://elsewhere"}}}, "keys must match"),
        ({"optimization": {"recipe": "prune", "parameters": {"sparsity=0.9 --x": "1"}}}, "keys must match"),
        ({"model": {"uri": "gs://bucket/model.onnx"}}, "gs:// is not in this build"),
        ({"model": {"uri": "pvc://claim/model.onnx"}}, "pvc:// needs a claim mounted"),
        ({"optimization": {"evalData": "pvc://claim/eval.npz"}}, "pvc:// needs a claim mounted"),
        # No build reads a compiled engine: the CRD refuses it, with or without the webhook.
        ({"model": {"uri": "s3://models/engine.plan", "format": "tensorrt-plan"}}, "a TensorRT plan is already compiled"),
    ],
    ids=["param-key-option", "param-key-equals", "gs-model", "pvc-model", "pvc-eval", "tensorrt-plan"],
)
def test_inputs_the_job_cannot_use_are_refused_at_apply(cluster, namespace, change, expected):
    import yaml

    body = yaml.safe_load(manifest("refused"))
    for section, values in change.items():
        body["spec"][section] = {**body["spec"].get(section, {}), **values}
    result = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0 and expected in result.stderr, result.stdout + result.stderr


def test_ordinary_parameters_and_uris_are_accepted(cluster, namespace):
    import yaml

    body = yaml.safe_load(manifest("accepted", recipe="prune"))
    body["spec"]["optimization"].update(parameters={"sparsity": "0.5", "fineTuneEpochs": "3", "method": "structured"}, evalData="https://data.example/eval.npz")
    result = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode == 0, result.stderr


# -- (e) status: replaced whole, the serving revision kept through a failure --------------


def _publish_report(operator, namespace: str, name: str, body: dict, report: dict) -> None:
    """Write the report the operator reads at the artifact the model's Job would publish."""
    import yaml

    from inferops.api.hardware_class import HardwareClassSpec
    from inferops.api.inference_model import InferenceModelSpec
    from inferops.reconcile.naming import optimization_hash

    spec_hash = optimization_hash(InferenceModelSpec.model_validate(body["spec"]), HardwareClassSpec.model_validate(yaml.safe_load(CLASS)["spec"]))
    path = operator.artifacts / namespace / name / spec_hash
    path.mkdir(parents=True, exist_ok=True)
    (path / "report.json").write_text(json.dumps({"artifactUri": f"file://{path}", "modelName": name, "backend": "onnxruntime", **report}))


def test_new_revision_replaces_the_report_and_a_failed_one_keeps_serving(cluster, namespace, operator):
    import yaml

    first = yaml.safe_load(manifest("revs"))
    _publish_report(operator, namespace, "revs", first, {"notes": ["revision 1"], "tools": {"onnx": "1.16"}, "accuracy": {"metric": "accuracy", "drop": 0.001}})
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(first))
    model = wait_phase(cluster, namespace, "revs", "Ready")
    assert model["status"]["report"]["notes"] == ["revision 1"] and "accuracy" in model["status"]["report"]

    second = yaml.safe_load(manifest("revs", uri="s3://models/revs/v2.onnx"))
    _publish_report(operator, namespace, "revs", second, {"notes": ["revision 2"]})
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(second))
    model = poll("revision 2 in status", lambda: (m := get(cluster, namespace, "inferencemodel", "revs"))["status"].get("report", {}).get("notes") == ["revision 2"] and m)
    report = model["status"]["report"]
    assert "accuracy" not in report and report.get("tools", {}) == {}, f"revision 1's fields survived: {report}"
    serving = {k: model["status"][k] for k in ("artifactUri", "endpoint")}

    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("revs", uri="s3://kwok/accuracy-gate-fails.onnx"))
    model = poll("the failed revision 3", lambda: (m := get(cluster, namespace, "inferencemodel", "revs"))["status"].get("phase") == "Failed"
                 and condition(m, "Optimized")["reason"] == "AccuracyBudgetExceeded" and m)
    assert {k: model["status"].get(k) for k in serving} == serving, "revision 2 still serves: its artifact and endpoint stay in status"
    deployment = get(cluster, namespace, "deployment", "revs-triton")
    assert deployment["spec"]["template"]["metadata"]["annotations"]["inferops.dev/artifact"] == serving["artifactUri"]
