"""The whole flow on the real node: a model in the local S3, the operator (the real process, as
its ServiceAccount), the optimization Job running `inferops optimize` in the optimizer image, the
tuning Job (the CPU Triton image as its pod's sidecar, `inferops tune` beside it) choosing the
batching on the class's node, the Triton pod pulling and serving on the CPU Triton image with that
choice, the smoke inference through the Service, and an inference from this host that answers
like ONNX Runtime on the artifact."""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient

from inferops.devcluster.cluster import free_port
from inferops.devcluster.node import LABELS, NODE_IP
from inferops.devcluster.s3 import LocalS3
from inferops.triton.sample_model import INPUT, OUTPUT, digits_samples, mlp_to_onnx, train_digits_mlp
from operator_harness import OperatorProcess, operator_kubeconfig

pytestmark = [pytest.mark.node, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]
CLASS = "real-cpu"


@pytest.fixture(scope="module")
def node_s3(real_cluster, tmp_path_factory):
    """The model and artifact store, on the node's bridge address: pods and this host reach it."""
    server = LocalS3(tmp_path_factory.mktemp("node-s3"), host=NODE_IP)
    try:
        s3 = server.start()
        for bucket in ("models", "artifacts"):
            s3.make_bucket(bucket)
        yield s3
    finally:
        server.stop()


@pytest.fixture(scope="module")
def digits_in_s3(node_s3):
    """A digits classifier trained from scikit-learn's bundled data, with its eval set."""
    from sklearn.datasets import load_digits

    with tempfile.TemporaryDirectory() as tmp:
        classifier, _ = train_digits_mlp(hidden=(256,), max_iter=30)
        model = mlp_to_onnx(classifier, Path(tmp) / "model.onnx")
        node_s3.client().upload_file(str(model), "models", "digits/model.onnx")
    x, y = load_digits(return_X_y=True)
    buffer = io.BytesIO()
    np.savez(buffer, **{INPUT: (x[:400] / 16.0).astype(np.float32)}, labels=y[:400].astype(np.int64))
    node_s3.client().put_object(Bucket="models", Key="digits/eval.npz", Body=buffer.getvalue())
    return {"model": "s3://models/digits/model.onnx", "eval": "s3://models/digits/eval.npz"}


@pytest.fixture(scope="module")
def node_operator(real_cluster, node_s3, built_images, tmp_path_factory):
    cluster = real_cluster
    workdir = tmp_path_factory.mktemp("node-operator")
    kubeconfig = operator_kubeconfig(cluster, workdir)
    hardware_class = {
        "apiVersion": "inferops.dev/v1alpha1", "kind": "HardwareClass", "metadata": {"name": CLASS},
        "spec": {"instanceKind": "KIND_CPU", "nodeSelector": {"inferops.dev/node": LABELS["inferops.dev/node"]}, "onnxBackend": "python",
                 "tritonImage": built_images["triton-cpu"], "optimizerImage": built_images["optimizer"]},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(hardware_class))
    env = dict(
        os.environ, **node_s3.env(),  # the operator reads each artifact's report.json
        KUBECONFIG=str(kubeconfig), INFEROPS_ARTIFACT_ROOT="s3://artifacts", INFEROPS_STORAGE_SECRET="inferops-storage",
        INFEROPS_SMOKE_TEST="true", INFEROPS_METRICS_PORT="0", INFEROPS_WEBHOOK=f"local:{free_port()}",
        INFEROPS_RESYNC_SECONDS="3600", INFEROPS_WATCH_SERVER_TIMEOUT="60",
        # A short tuning: four half-second measurements (flags of `inferops tune`) on a 3x2x2x2 grid,
        # which a model whose requests carry 8 rows (requestBatchSize) narrows to 2x2x2x2.
        INFEROPS_TUNE_ARGS=json.dumps(["--duration", "0.5", "--max-batch-sizes", "4,8,16", "--queue-delays-us", "0,2000", "--instance-counts", "1,2",
                                       "--preferred-batch-sizes", "max,half", "--budget", "4"]),
        INFEROPS_TUNING_MAX_MINUTES="3",
    )
    proc = OperatorProcess(cluster, workdir, env)
    proc.start()
    yield proc
    proc.stop()
    cluster.kubectl("delete", "validatingwebhookconfiguration", "validate.inferops.dev", check=False)


@pytest.fixture
def tenant(real_cluster, real_namespace, node_s3) -> str:
    """A namespace with the platform's artifact-store Secret and the team's own model Secret."""
    for name in ("inferops-storage", "team-s3"):
        real_cluster.kubectl("create", "secret", "generic", name, "-n", real_namespace, *(f"--from-literal={k}={v}" for k, v in node_s3.env().items()))
    return real_namespace


def inference_model(name: str, digits: dict, recipe: str, budget: float, **serving) -> dict:
    return {
        "apiVersion": "inferops.dev/v1alpha1", "kind": "InferenceModel", "metadata": {"name": name},
        "spec": {
            "model": {"uri": digits["model"], "credentialsSecret": "team-s3"},
            "optimization": {"recipe": recipe, "evalData": digits["eval"], "accuracyBudget": budget, "timeoutSeconds": 900},
            "hardware": {"class": CLASS},
            "serving": {"replicas": 1, "latencyObjectiveMs": 200, **serving},
        },
    }


def wait_for(cluster, namespace: str, name: str, done, timeout: float, operator) -> dict:
    deadline, model = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        model = json.loads(cluster.kubectl("get", "im", name, "-n", namespace, "-o", "json").stdout)
        if done(model.get("status") or {}):
            return model
        time.sleep(2)
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    logs = cluster.kubectl("logs", "-n", namespace, "-l", "inferops.dev/model", "--all-containers", "--tail=40", check=False).stdout
    pytest.fail(f"{name}: not done in {timeout:.0f}s; status: {json.dumps(model.get('status'), indent=1)[:4000]}\npods:\n{pods}\nlogs:\n{logs[-4000:]}\noperator:\n{operator.tail(40)}")


def test_a_model_from_s3_is_optimized_tuned_served_and_answers_like_onnx_runtime(real_cluster, node_operator, tenant, digits_in_s3, node_s3, built_images):
    started = time.monotonic()
    # The inference from the host below sends 8 rows in one request: tuned for such requests.
    body = inference_model("digits", digits_in_s3, "quantize-int8-dynamic", 0.02, requestBatchSize=8)
    real_cluster.kubectl("apply", "-n", tenant, "-f", "-", input=json.dumps(body))
    model = wait_for(real_cluster, tenant, "digits", lambda s: s.get("phase") in ("Ready", "Failed"), 900, node_operator)
    status = model["status"]
    assert status["phase"] == "Ready", json.dumps(status, indent=1)
    print(f"\napply to Ready on the real node: {time.monotonic() - started:.0f} s")
    report = status["report"]
    assert report["steps"][-1] == "quantize-int8-dynamic" and report["accuracy"]["passed"]
    assert report["sizeBytes"]["after"] < report["sizeBytes"]["before"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "smoke inference" in ready["message"], ready  # sent by the operator through the Service

    # Tuned in a pod of its own on the class's node, with the class's Triton image; the choice is served.
    node = real_cluster.nodes[0].name
    tuning = report["tuning"]
    assert next(c for c in status["conditions"] if c["type"] == "Tuned")["status"] == "True"
    assert tuning["image"] == built_images["triton-cpu"] and tuning["node"] == node and tuning["instanceKind"] == "KIND_CPU"
    assert tuning["measuredWith"] == "perf_analyzer"  # the optimizer image carries the field's instrument
    assert tuning["requestBatchSize"] == 8 and all(p["maxBatchSize"] >= 8 for p in tuning["points"])
    assert 1 <= tuning["measurements"] <= 4 and tuning["gridSize"] == 16 and tuning["points"] and all(p["throughputPerSecond"] > 0 for p in tuning["points"] if not p.get("error"))
    assert status["batching"] == tuning["chosen"]
    print(f"tuning: {tuning['measurements']} measurements in {tuning['wallSeconds']} s on {node}, chose {tuning['chosen']}")
    listing = real_cluster.kubectl("get", "im", "digits", "-n", tenant, "-o", "yaml").stdout
    assert all(text in listing for text in ("points:", f"image: {built_images['triton-cpu']}", f"node: {node}")), listing[-3000:]
    tuning_pods = json.loads(real_cluster.kubectl("get", "pods", "-n", tenant, "-l", "inferops.dev/model=digits,app.kubernetes.io/component=tuner", "-o", "json").stdout)["items"]
    assert [p["status"]["phase"] for p in tuning_pods] == ["Succeeded"] and tuning_pods[0]["spec"]["nodeName"] == node
    assert tuning_pods[0]["spec"]["initContainers"][1]["image"] == built_images["triton-cpu"]
    from inferops.triton.config import parse_model_config

    served = parse_model_config(json.loads(real_cluster.kubectl("get", "configmap", "digits-triton-config", "-n", tenant, "-o", "json").stdout)["data"]["config.pbtxt"])
    assert served.max_batch_size == tuning["chosen"]["maxBatchSize"] and served.instance_group[0].count == tuning["chosen"]["instanceCount"]
    assert served.dynamic_batching.max_queue_delay_microseconds == tuning["chosen"]["maxQueueDelayMicroseconds"]

    # The Triton pod pulled and verified the artifact and runs on the real node.
    pods = json.loads(real_cluster.kubectl("get", "pods", "-n", tenant, "-l", "app.kubernetes.io/component=serving", "-o", "json").stdout)["items"]
    assert pods and all(p["spec"]["nodeName"] == real_cluster.nodes[0].name for p in pods)

    # An inference from this host through the Service answers like ONNX Runtime on the artifact.
    artifact = status["artifactUri"].removeprefix("s3://artifacts/")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "model.onnx"
        node_s3.client().download_file("artifacts", f"{artifact}/{report['modelName']}/1/model.onnx", str(local))
        rows = digits_samples(8)
        expected = ort.InferenceSession(str(local)).run(None, {INPUT: rows})[0]
    cluster_ip = real_cluster.kubectl("get", "service", "digits-triton", "-n", tenant, "-o", "jsonpath={.spec.clusterIP}").stdout
    client = httpclient.InferenceServerClient(f"{cluster_ip}:8000")
    request = httpclient.InferInput(INPUT, list(rows.shape), "FP32")
    request.set_data_from_numpy(rows)
    got = client.infer(report["modelName"], [request]).as_numpy(OUTPUT)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_a_broken_accuracy_budget_fails_once_says_why_and_deploys_nothing(real_cluster, node_operator, tenant, digits_in_s3):
    spec = inference_model("too-sparse", digits_in_s3, "prune", 0.001, dynamicBatching={"mode": "disabled"})
    spec["spec"]["optimization"]["parameters"] = {"sparsity": "0.97"}
    real_cluster.kubectl("apply", "-n", tenant, "-f", "-", input=json.dumps(spec))
    model = wait_for(real_cluster, tenant, "too-sparse", lambda s: s.get("phase") == "Failed", 600, node_operator)
    optimized = next(c for c in model["status"]["conditions"] if c["type"] == "Optimized")
    assert optimized["status"] == "False" and optimized["reason"] == "AccuracyBudgetExceeded", optimized
    assert "dropped by" in optimized["message"], optimized  # the measured drop, from the termination message
    job_pods = real_cluster.kubectl("get", "pods", "-n", tenant, "-l", "inferops.dev/model=too-sparse,app.kubernetes.io/component=optimizer", "-o", "name").stdout.split()
    assert len(job_pods) == 1, f"exit code 3 is final: the Job must not retry ({job_pods})"
    deployments = real_cluster.kubectl("get", "deployments", "-n", tenant, "-o", "name").stdout.split()
    assert "deployment.apps/too-sparse-triton" not in deployments


def test_a_failed_tuning_says_why_once_and_the_model_serves_the_default_batching(real_cluster, node_operator, tenant, digits_in_s3):
    """The admin's tuning time limit (the chart's operator.tuning flags) is too short to measure
    one point: the tuner exits 4 with its reason, the Job is not retried, and the model serves."""
    usual = node_operator.env["INFEROPS_TUNE_ARGS"]
    node_operator.stop()
    node_operator.env["INFEROPS_TUNE_ARGS"] = json.dumps([*json.loads(usual), "--max-minutes", "0.001"])
    node_operator.start()
    # Everything is checked before the usual flags come back: they are part of the tuning hash,
    # so the operator restarted with them tunes the model again (a new Job and tuner pod).
    try:
        real_cluster.kubectl("apply", "-n", tenant, "-f", "-", input=json.dumps(inference_model("untuned", digits_in_s3, "quantize-int8-dynamic", 0.02)))
        status = wait_for(real_cluster, tenant, "untuned", lambda s: s.get("phase") in ("Ready", "Failed"), 600, node_operator)["status"]
        assert status["phase"] == "Ready", json.dumps(status, indent=1)
        tuned = next(c for c in status["conditions"] if c["type"] == "Tuned")
        assert tuned["status"] == "False" and tuned["reason"] == "TuningFailed", tuned
        assert "tuning time limit" in tuned["message"] and "not retried" in tuned["message"] and "default batching" in tuned["message"], tuned
        assert "tuning" not in status["report"]
        pods = real_cluster.kubectl("get", "pods", "-n", tenant, "-l", "inferops.dev/model=untuned,app.kubernetes.io/component=tuner", "-o", "json").stdout
        tuner_pods = json.loads(pods)["items"]
        assert len(tuner_pods) == 1, "exit code 4 is final: the tuning Job must not retry"
        from inferops.triton.config import parse_model_config

        config = json.loads(real_cluster.kubectl("get", "configmap", "untuned-triton-config", "-n", tenant, "-o", "json").stdout)["data"]["config.pbtxt"]
        served = parse_model_config(config)
        assert served.max_batch_size == status["batching"]["maxBatchSize"] and served.HasField("dynamic_batching") == status["batching"]["dynamicBatching"]
        infer_through_service(real_cluster, tenant, "untuned-triton", status["report"]["modelName"])
    finally:
        node_operator.stop()
        node_operator.env["INFEROPS_TUNE_ARGS"] = usual
        node_operator.start()


def infer_through_service(cluster, namespace: str, service: str, model: str) -> np.ndarray:
    cluster_ip = cluster.kubectl("get", "service", service, "-n", namespace, "-o", "jsonpath={.spec.clusterIP}").stdout
    rows = digits_samples(4)
    request = httpclient.InferInput(INPUT, list(rows.shape), "FP32")
    request.set_data_from_numpy(rows)
    return httpclient.InferenceServerClient(f"{cluster_ip}:8000", network_timeout=10).infer(model, [request]).as_numpy(OUTPUT)


def test_a_spec_change_rolls_a_new_revision_while_the_old_one_serves_and_delete_removes_every_pod(real_cluster, node_operator, tenant, digits_in_s3):
    explicit = {"dynamicBatching": {"mode": "explicit", "maxBatchSize": 8}}
    body = inference_model("rolling", digits_in_s3, "quantize-int8-dynamic", 0.02, **explicit)
    real_cluster.kubectl("apply", "-n", tenant, "-f", "-", input=json.dumps(body))
    first = wait_for(real_cluster, tenant, "rolling", lambda s: s.get("phase") in ("Ready", "Failed"), 600, node_operator)["status"]
    assert first["phase"] == "Ready", json.dumps(first, indent=1)

    body["spec"]["optimization"]["accuracyBudget"] = 0.03  # what the artifact depends on: a new Job
    real_cluster.kubectl("apply", "-n", tenant, "-f", "-", input=json.dumps(body))
    wait_for(real_cluster, tenant, "rolling", lambda s: s.get("jobName") not in (None, first["jobName"]), 60, node_operator)
    served_while_optimizing = 0
    while True:
        status = json.loads(real_cluster.kubectl("get", "im", "rolling", "-n", tenant, "-o", "json").stdout)["status"]
        template = json.loads(real_cluster.kubectl("get", "deployment", "rolling-triton", "-n", tenant, "-o", "json").stdout)["spec"]["template"]
        if template["metadata"]["annotations"]["inferops.dev/artifact"] != first["artifactUri"]:
            break  # the new revision is rolling out
        assert status["artifactUri"] == first["artifactUri"], "the old revision is what status names until the new one deploys"
        infer_through_service(real_cluster, tenant, "rolling-triton", first["report"]["modelName"])  # raises if not served
        served_while_optimizing += 1
        time.sleep(0.5)
    assert served_while_optimizing >= 1, "the new Job finished before the old revision could be checked"
    second = wait_for(real_cluster, tenant, "rolling", lambda s: s.get("phase") == "Ready" and s.get("artifactUri") != first["artifactUri"], 600, node_operator)["status"]
    infer_through_service(real_cluster, tenant, "rolling-triton", second["report"]["modelName"])
    jobs = real_cluster.kubectl("get", "jobs", "-n", tenant, "-l", "inferops.dev/model=rolling", "-o", "name").stdout.split()
    assert jobs == [f"job.batch/{second['jobName']}"], f"the old Job is retired: {jobs}"

    real_cluster.kubectl("delete", "im", "rolling", "-n", tenant, "--wait=false")
    deadline = time.monotonic() + 120
    while pods := real_cluster.kubectl("get", "pods", "-n", tenant, "-l", "inferops.dev/model=rolling", "-o", "name").stdout.split():
        assert time.monotonic() < deadline, f"pods left 120 s after the model was deleted: {pods}"
        time.sleep(1)
