"""A HardwareClass whose Triton image has no native onnxruntime backend: the operator renders the
Python backend and its pull step writes model.py, and the real server answers like ONNX Runtime."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient

from inferops.api.hardware_class import HardwareClassSpec
from inferops.api.inference_model import InferenceModelSpec
from inferops.api.report import OptimizationReport
from inferops.reconcile.children import REPOSITORY, ModelRef, Revision, desired_serving
from inferops.reconcile.settings import OperatorSettings
from inferops.triton.config import parse_model_config
from inferops.triton.sample_model import INPUT, OUTPUT, digits_samples
from inferops.triton.server import TritonServer

pytestmark = [pytest.mark.triton, pytest.mark.timeout(300)]
PYTHON_CLASS = HardwareClassSpec.model_validate({"instanceKind": "KIND_CPU", "onnxBackend": "python"})


def inferops(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inferops.cli", *args], capture_output=True, text=True, timeout=240)


def test_the_deployment_of_a_python_backend_class_serves_the_artifact(digits_onnx, tmp_path):
    artifact = f"file://{tmp_path}/artifact"
    made = inferops("optimize", "--model", f"file://{digits_onnx}", "--recipe", "none", "--output", artifact, "--model-name", "digits", "--instance-kind", "KIND_CPU")
    assert made.returncode == 0, made.stderr
    report = OptimizationReport.model_validate_json((tmp_path / "artifact" / "report.json").read_text())
    spec = InferenceModelSpec.model_validate({"model": {"uri": f"file://{digits_onnx}"}, "hardware": {"class": "cpu"}, "serving": {"dynamicBatching": {"mode": "explicit", "maxBatchSize": 8}}})
    objects, _ = desired_serving(ModelRef("digits", "ml", "uid", 1, spec), PYTHON_CLASS, Revision(artifact, report), OperatorSettings(artifact_root=f"file://{tmp_path}"))
    configmap, deployment = objects[0], objects[1]
    pod = deployment["spec"]["template"]["spec"]
    pull_args = pod["initContainers"][0]["args"]
    assert "--python-backend" in pull_args
    assert parse_model_config(configmap["data"]["config.pbtxt"]).backend == "python"

    # What the pod does: the init step pulls into the models volume, the ConfigMap is mounted
    # over the model's config.pbtxt, and tritonserver serves the repository.
    local = str(tmp_path / "pod" / "repository")
    pulled = inferops(*[a.replace(REPOSITORY, local) for a in pull_args])
    assert pulled.returncode == 0, pulled.stderr
    mount = pod["containers"][0]["volumeMounts"][1]["mountPath"].replace(REPOSITORY, local)
    with open(mount, "w") as f:
        f.write(configmap["data"]["config.pbtxt"])
    assert (tmp_path / "pod" / "repository" / "digits" / "1" / "model.py").is_file()

    rows = digits_samples(5)
    expected = ort.InferenceSession(f"{local}/digits/1/model.onnx").run(None, {INPUT: rows})[0]
    with TritonServer(tmp_path / "pod" / "repository") as server:
        client = httpclient.InferenceServerClient(server.http_url)
        assert json.loads(json.dumps(client.get_model_config("digits")))["backend"] == "python"
        request = httpclient.InferInput(INPUT, list(rows.shape), "FP32")
        request.set_data_from_numpy(rows)
        got = client.infer("digits", [request]).as_numpy(OUTPUT)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
