"""The images built here run on the real node: the optimizer image optimizes a real model behind
its accuracy gate, and the CPU Triton image serves the artifact (pulled by the optimizer image's
init step onto the Python backend) with the answers ONNX Runtime gives on the host."""

from __future__ import annotations

import json
import time

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient

from inferops.triton.sample_model import INPUT, OUTPUT, digits_samples, mlp_to_onnx, train_digits_mlp

from .test_real_node import SELECTOR, apply, wait_ready

pytestmark = [pytest.mark.node, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A host folder the pods mount: the model and its eval set, and what the Job writes."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("node-data")
    folder.chmod(0o777)  # the images run as 65532
    classifier, _ = train_digits_mlp(hidden=(256,), max_iter=30)
    mlp_to_onnx(classifier, folder / "model.onnx")
    x, y = load_digits(return_X_y=True)
    np.savez(folder / "eval.npz", **{INPUT: (x[:400] / 16.0).astype(np.float32)}, labels=y[:400].astype(np.int64))
    return folder


def host_data(folder) -> dict:
    return {"name": "data", "hostPath": {"path": str(folder), "type": "Directory"}}


def test_optimizer_and_triton_images_optimize_and_serve_on_the_real_node(real_cluster, real_namespace, built_images, data_dir):
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "optimize"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "nodeSelector": SELECTOR,
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "optimize", "image": built_images["optimizer"], "imagePullPolicy": "Never",
                        "args": ["optimize", "--model", "file:///data/model.onnx", "--recipe", "quantize-int8-dynamic", "--eval-data", "file:///data/eval.npz",
                                 "--accuracy-budget", "0.02", "--output", "file:///data/artifact", "--model-name", "digits", "--report", "/data/report.json"],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }],
                    "volumes": [host_data(data_dir)],
                }
            },
        },
    }
    started = time.monotonic()
    apply(real_cluster, real_namespace, job)
    done = real_cluster.kubectl("wait", "-n", real_namespace, "--for=condition=Complete", "job/optimize", "--timeout=300s", timeout=310, check=False)
    logs = real_cluster.kubectl("logs", "-n", real_namespace, "job/optimize", check=False).stdout
    if done.returncode != 0:  # say where the pod got stuck: its logs alone are empty if it never started
        pods = real_cluster.kubectl("describe", "pods", "-n", real_namespace, check=False).stdout
        logs += f"\n--- pods ---\n{pods[-3000:]}\n--- job ---\n{real_cluster.kubectl('describe', 'job', 'optimize', '-n', real_namespace, check=False).stdout[-1500:]}"
    assert done.returncode == 0, f"the optimization Job did not complete:\n{logs[-6000:]}"
    print(f"optimization Job on the real node: {time.monotonic() - started:.1f} s")
    report = json.loads((data_dir / "report.json").read_text())
    assert report["passed"] and report["steps"] == ["quantize-int8-dynamic"], report["notes"]
    assert report["sizeBytes"]["after"] < report["sizeBytes"]["before"]

    server = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "triton"},
        "spec": {
            "nodeSelector": SELECTOR,
            "terminationGracePeriodSeconds": 5,
            "initContainers": [{
                "name": "fetch-model", "image": built_images["optimizer"], "imagePullPolicy": "Never",
                "args": ["pull", "--uri", "file:///data/artifact", "--dest", "/models/repository", "--python-backend"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "models", "mountPath": "/models"}],
            }],
            "containers": [{
                "name": "triton", "image": built_images["triton-cpu"], "imagePullPolicy": "Never", "command": ["tritonserver"],
                "args": ["--model-repository=/models/repository", "--model-control-mode=none", "--strict-readiness=true", "--allow-gpu-metrics=false"],
                "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8000}, "periodSeconds": 2},
                "volumeMounts": [{"name": "models", "mountPath": "/models"}, {"name": "dshm", "mountPath": "/dev/shm"}],
            }],
            "volumes": [host_data(data_dir), {"name": "models", "emptyDir": {}}, {"name": "dshm", "emptyDir": {"medium": "Memory"}}],
        },
    }
    started = time.monotonic()
    apply(real_cluster, real_namespace, server)
    try:
        wait_ready(real_cluster, real_namespace, "triton", timeout=240)
    except Exception:
        print(real_cluster.kubectl("logs", "-n", real_namespace, "triton", "--all-containers", check=False).stdout[-4000:])
        raise
    print(f"Triton pod (pull + server start) to Ready: {time.monotonic() - started:.1f} s")
    pod_ip = real_cluster.kubectl("get", "pod", "triton", "-n", real_namespace, "-o", "jsonpath={.status.podIP}").stdout
    rows = digits_samples(8)
    expected = ort.InferenceSession(str(data_dir / "artifact" / "digits" / "1" / "model.onnx")).run(None, {INPUT: rows})[0]
    client = httpclient.InferenceServerClient(f"{pod_ip}:8000")
    request = httpclient.InferInput(INPUT, list(rows.shape), "FP32")
    request.set_data_from_numpy(rows)
    got = client.infer("digits", [request]).as_numpy(OUTPUT)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
