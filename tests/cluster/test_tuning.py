"""The tuning Job on the real control plane (kwok nodes run no containers): after the
optimization Job, the operator makes the tuning Job, reads the TuningReport it publishes and
serves the choice; a new Triton image on the HardwareClass re-tunes without re-optimizing.

The artifact's report.json and each tuning-<hash>.json are written by the test where the Jobs
would publish them, at names computed by the same pure functions the operator uses."""

from __future__ import annotations

import json
import time

import pytest

from inferops.api.hardware_class import HardwareClassSpec
from inferops.api.inference_model import InferenceModelSpec
from inferops.api.report import OptimizationReport, TuningPoint, TuningReport
from inferops.api.tensors import BatchingConfig, Signature, TensorSpec
from inferops.reconcile.children import ModelRef, Revision, artifact_uri
from inferops.reconcile.naming import job_name, optimization_hash
from inferops.reconcile.settings import OperatorSettings
from inferops.reconcile.tuning import tuning_target
from inferops.triton.config import parse_model_config

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CLASS = "tune-cpu"
CLASS_SPEC = {"instanceKind": "KIND_CPU", "nodeSelector": {"inferops.dev/pool": "cpu"}, "resources": {"requests": {"cpu": "1"}}, "tritonImage": "registry.example/triton:1"}
SIGNATURE = Signature(inputs=[TensorSpec(name="input", datatype="FP32", dims=[64])], outputs=[TensorSpec(name="probabilities", datatype="FP32", dims=[10])])
SPEC = {
    "model": {"uri": "s3://models/tuned/model.onnx"},
    "optimization": {"recipe": "none"},
    "hardware": {"class": CLASS},
    "serving": {"replicas": 1, "latencyObjectiveMs": 50},
}


def publish(operator, namespace: str, class_spec: dict, chosen: BatchingConfig) -> tuple[str, str]:
    """Write what the Jobs would publish; returns (optimization Job, tuning Job) names."""
    hardware = HardwareClassSpec.model_validate(class_spec)
    settings = OperatorSettings(artifact_root=f"file://{operator.artifacts}")
    model = ModelRef("tuned", namespace, "uid", 1, InferenceModelSpec.model_validate(SPEC))
    digest = optimization_hash(model.spec, hardware)
    uri = artifact_uri(model, digest, settings)
    report = OptimizationReport(artifact_uri=uri, model_name="tuned", backend="onnxruntime", signature=SIGNATURE)
    folder = operator.artifacts / namespace / "tuned" / digest
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(report.model_dump_json(by_alias=True))
    target = tuning_target(model, hardware, digest, Revision(uri, report), settings)
    point = TuningPoint(max_batch_size=chosen.max_batch_size, max_queue_delay_microseconds=chosen.max_queue_delay_microseconds,
                        instance_count=chosen.instance_count, throughput_per_s=800.0, p99_ms=20.0, observations=3)
    tuning = TuningReport(chosen=chosen, throughput_per_s=800.0, p99_ms=20.0, latency_objective_ms=50.0, measurements=3, grid_size=12, points=[point])
    (folder / target.output_uri.rsplit("/", 1)[1]).write_text(tuning.model_dump_json(by_alias=True))
    return job_name("tuned", digest), target.job_name


def status_of(cluster, namespace: str) -> dict:
    return json.loads(cluster.kubectl("get", "im", "tuned", "-n", namespace, "-o", "json").stdout).get("status") or {}


def wait_until(cluster, namespace: str, done, timeout: float = 60) -> dict:
    deadline, status = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        status = status_of(cluster, namespace)
        if done(status):
            return status
        time.sleep(0.5)
    pytest.fail(f"not done in {timeout:.0f}s: {json.dumps(status, indent=1)[:3000]}")


def job_names(cluster, namespace: str) -> list[str]:
    return sorted(cluster.kubectl("get", "jobs", "-n", namespace, "-l", "inferops.dev/model=tuned", "-o", "jsonpath={.items[*].metadata.name}").stdout.split())


def served_config(cluster, namespace: str):
    data = json.loads(cluster.kubectl("get", "configmap", "tuned-triton-config", "-n", namespace, "-o", "json").stdout)["data"]
    return parse_model_config(data["config.pbtxt"])


def test_tuning_job_follows_the_optimization_job_and_a_new_class_image_retunes_only(cluster, namespace, operator):
    # The tuning pod passes Pod Security "restricted" (its pods are refused here otherwise: the Job would never complete).
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest")
    first = BatchingConfig(max_batch_size=8, preferred_batch_sizes=[4, 8], max_queue_delay_microseconds=250, instance_count=2)
    opt_job, tune_job = publish(operator, namespace, CLASS_SPEC, first)
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "inferops.dev/v1alpha1", "kind": "HardwareClass", "metadata": {"name": CLASS}, "spec": CLASS_SPEC}))
    try:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({"apiVersion": "inferops.dev/v1alpha1", "kind": "InferenceModel", "metadata": {"name": "tuned"}, "spec": SPEC}))
        status = wait_until(cluster, namespace, lambda s: s.get("phase") == "Ready")
        # publish() committed the optimization's artifact: it is reused (write-once), only tuning runs.
        assert status["tuningJobName"] == tune_job and status["jobName"] == opt_job and job_names(cluster, namespace) == [tune_job]
        tuned = next(c for c in status["conditions"] if c["type"] == "Tuned")
        assert tuned["status"] == "True", tuned
        assert status["report"]["tuning"]["points"][0]["observations"] == 3 and status["batching"]["maxBatchSize"] == 8
        config = served_config(cluster, namespace)
        assert config.max_batch_size == 8 and config.instance_group[0].count == 2
        pod = json.loads(cluster.kubectl("get", "job", tune_job, "-n", namespace, "-o", "json").stdout)["spec"]["template"]["spec"]
        assert pod["initContainers"][1]["image"] == "registry.example/triton:1" and pod["initContainers"][1]["restartPolicy"] == "Always"
        assert pod["nodeSelector"] == {"inferops.dev/pool": "cpu"}

        # A new Triton image on the class: a new tuning Job, the same optimization Job.
        second = BatchingConfig(max_batch_size=16, preferred_batch_sizes=[16], max_queue_delay_microseconds=100, instance_count=1)
        newer = {**CLASS_SPEC, "tritonImage": "registry.example/triton:2"}
        same_opt_job, retune_job = publish(operator, namespace, newer, second)
        assert same_opt_job == opt_job and retune_job != tune_job
        cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "inferops.dev/v1alpha1", "kind": "HardwareClass", "metadata": {"name": CLASS}, "spec": newer}))
        status = wait_until(cluster, namespace, lambda s: s.get("phase") == "Ready" and (s.get("batching") or {}).get("maxBatchSize") == 16)
        assert status["tuningJobName"] == retune_job and status["jobName"] == opt_job
        assert served_config(cluster, namespace).max_batch_size == 16
        deadline = time.monotonic() + 30
        while job_names(cluster, namespace) != [retune_job] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert job_names(cluster, namespace) == [retune_job], "the old tuning Job is retired; no optimization Job made"
    finally:
        cluster.kubectl("delete", "im", "tuned", "-n", namespace, "--ignore-not-found", "--wait=false")
        cluster.kubectl("delete", "hardwareclass", CLASS, "--ignore-not-found")
