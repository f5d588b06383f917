"""From a real model to a deployed, configured Triton: the optimization Job's program runs for real.

kwok nodes run no containers, so the test runs the Job's program (`inferops optimize`) itself,
with the very arguments the operator puts in the Job (computed by the same pure function), before
the model is applied. That run commits the artifact of the spec's hash, so the operator finds it,
makes no Job (artifacts are write-once and reused) and reads the report from the artifact store,
exactly as it would after a Job that ran in a pod.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from inferops.api.inference_model import InferenceModelSpec
from inferops.reconcile.children import ModelRef, desired_job
from inferops.reconcile.naming import optimization_hash
from inferops.reconcile.settings import OperatorSettings
from inferops.api.hardware_class import HardwareClassSpec
from inferops.triton.config import parse_model_config
from inferops.triton.sample_model import INPUT, mlp_to_onnx, train_digits_mlp

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CPU_CLASS = {"instanceKind": "KIND_CPU", "nodeSelector": {"inferops.dev/pool": "cpu"}, "resources": {"requests": {"cpu": "1"}}}


def test_real_optimization_report_lands_in_status_and_config(cluster, namespace, operator, tmp_path):
    classifier, _ = train_digits_mlp(hidden=(256, 256), max_iter=30)
    model_path = mlp_to_onnx(classifier, tmp_path / "digits.onnx")
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez(tmp_path / "eval.npz", **{INPUT: (digits.data[-300:] / 16.0).astype(np.float32)}, labels=digits.target[-300:])
    spec = {
        "model": {"uri": f"file://{model_path}"},
        "optimization": {"recipe": "quantize-int8-dynamic", "evalData": f"file://{tmp_path / 'eval.npz'}", "accuracyBudget": 0.02},
        "hardware": {"class": "e2e-cpu"},
        "serving": {"replicas": 1, "dynamicBatching": {"mode": "explicit", "maxBatchSize": 16, "preferredBatchSizes": [4, 16], "maxQueueDelayMicroseconds": 200}},
    }
    hardware = HardwareClassSpec.model_validate(CPU_CLASS)
    settings = OperatorSettings(artifact_root=f"file://{operator.artifacts}")
    model = ModelRef("e2e-digits", namespace, "uid", 1, InferenceModelSpec.model_validate(spec))
    job_args = desired_job(model, hardware, optimization_hash(model.spec, hardware), settings)["spec"]["template"]["spec"]["containers"][0]["args"]
    local_args = list(job_args)
    local_args[local_args.index("--report") + 1] = str(tmp_path / "report.json")
    run = subprocess.run([sys.executable, "-m", "inferops.cli", *local_args], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "inferops.dev/v1alpha1", "kind": "HardwareClass", "metadata": {"name": "e2e-cpu"}, "spec": CPU_CLASS}))
    try:
        manifest = {"apiVersion": "inferops.dev/v1alpha1", "kind": "InferenceModel", "metadata": {"name": "e2e-digits"}, "spec": spec}
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
        cluster.kubectl("wait", "inferencemodel/e2e-digits", "-n", namespace, "--for=jsonpath={.status.phase}=Ready", "--timeout=90s", timeout=100)
        status = json.loads(cluster.kubectl("get", "inferencemodel", "e2e-digits", "-n", namespace, "-o", "json").stdout)["status"]
        jobs = cluster.kubectl("get", "jobs", "-n", namespace, "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    finally:
        cluster.kubectl("delete", "hardwareclass", "e2e-cpu", "--ignore-not-found")

    # The run above was the Job's (its arguments as the operator renders them) and committed the
    # artifact of this spec's hash: the operator reuses it and makes no Job (artifacts are write-once).
    assert status["artifactUri"] == job_args[job_args.index("--output") + 1] and status["jobName"] == model.name + "-opt-" + optimization_hash(model.spec, hardware)
    assert jobs == [], "a committed artifact is reused, never made again"
    assert next(c for c in status["conditions"] if c["type"] == "Optimized")["reason"] == "ArtifactCommitted"
    report = status["report"]
    assert report["steps"] and "quantize-int8-dynamic" in report["steps"][0]
    assert report["sizeBytes"]["after"] < 0.4 * report["sizeBytes"]["before"]
    assert report["accuracy"]["metric"] == "accuracy" and report["accuracy"]["drop"] <= 0.02
    assert status["batching"] == {"maxBatchSize": 16, "preferredBatchSizes": [4, 16], "maxQueueDelayMicroseconds": 200, "instanceCount": 1, "dynamicBatching": True}

    config_text = json.loads(cluster.kubectl("get", "configmap", "e2e-digits-triton-config", "-n", namespace, "-o", "json").stdout)["data"]["config.pbtxt"]
    config = parse_model_config(config_text)
    assert config.input[0].name == report["signature"]["inputs"][0]["name"]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 16]
    assert config.instance_group[0].kind == config.instance_group[0].KIND_CPU

    # The Triton pod's init step pulls exactly this artifact: check it is complete and verified.
    pull = subprocess.run(
        [sys.executable, "-m", "inferops.cli", "pull", "--uri", status["artifactUri"], "--dest", str(tmp_path / "pulled")],
        capture_output=True, text=True, timeout=120,
    )
    assert pull.returncode == 0, pull.stderr
    assert (tmp_path / "pulled" / report["modelName"] / "1" / "model.onnx").exists()
