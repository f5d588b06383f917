"""The optimizer's framework variants run on the real node: the optimizer-tensorflow image converts
a Keras CNN trained here on digits to ONNX and int8 within one point, where the default optimizer
image (torch- and tensorflow-free) refuses the same model at once, naming the extra and the variant.

The optimizer-torch image (PyPI's torch is a CUDA build: 3.1 GB even with what a CPU never loads
left out, devcluster/torch_prune.py) is built and run only with INFEROPS_TORCH_IMAGE_TEST=1: its
build and import take minutes and several GB on every CI run for what
tests/optimize/test_torch_image.py already checks on the host with the same pruning."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from inferops.devcluster import local_images

from .test_images import host_data
from .test_real_node import SELECTOR, apply

pytestmark = [pytest.mark.node, pytest.mark.slow, pytest.mark.timeout(1500)]


def _need(module: str, extra: str):
    import sys

    if module == "tensorflow" and "triton" not in sys.modules:
        sys.modules["triton"] = None  # see tests/optimize/conftest.py keep_llvm_single
    try:
        return __import__(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs this test: install the {extra} extra (the README's test command)")
        pytest.skip(f"{module} is not installed: pip install -e '.[test,{extra}]'")


def _digits(folder, layout: tuple[int, ...]):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, *layout)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    np.savez(folder / "digits.npz", image=x_test, labels=y_test.astype(np.int64))
    return x_train, y_train


def _import(real_cluster, key: str) -> str:
    built = local_images.build_image(key)
    started = time.monotonic()
    real_cluster.nodes[0].import_archive(built.archive)
    print(f"{built.reference}: {built.size_bytes / 2**20:.0f} MiB, built or found in {built.seconds:.0f} s, imported in {time.monotonic() - started:.1f} s")
    return built.reference


def _run_job(real_cluster, namespace: str, name: str, image: str, folder, model: str) -> tuple[bool, str]:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "nodeSelector": SELECTOR,
                "restartPolicy": "Never",
                "containers": [{
                    "name": "optimize", "image": image, "imagePullPolicy": "Never",
                    "args": ["optimize", "--model", f"file:///data/{model}", "--recipe", "quantize-int8-static", "--eval-data", "file:///data/digits.npz",
                             "--accuracy-budget", "0.01", "--output", f"file:///data/{name}", "--model-name", "digits", "--report", f"/data/{name}.json"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }],
                "volumes": [host_data(folder)],
            }},
        },
    }
    started = time.monotonic()
    apply(real_cluster, namespace, job)
    deadline = started + 400
    while True:  # until it succeeds or fails (the default image is meant to fail)
        state = json.loads(real_cluster.kubectl("get", "-n", namespace, f"job/{name}", "-o", "json").stdout).get("status", {})
        if state.get("succeeded") or state.get("failed") or time.monotonic() > deadline:
            break
        time.sleep(2)
    logs = real_cluster.kubectl("logs", "-n", namespace, f"job/{name}", check=False).stdout
    print(f"Job {name} in {image}: {time.monotonic() - started:.1f} s")
    assert state.get("succeeded") or state.get("failed"), f"Job {name} did not finish in 400 s:\n{logs[-3000:]}"
    return bool(state.get("succeeded")), logs


@pytest.fixture
def data_dir(tmp_path):
    tmp_path.chmod(0o777)  # the images run as 65532
    return tmp_path


def test_the_tensorflow_variant_converts_a_keras_model_the_default_image_refuses(real_cluster, real_namespace, data_dir):
    _need("tensorflow", "tensorflow")
    import keras

    x_train, y_train = _digits(data_dir, (8, 8, 1))
    keras.utils.set_random_seed(0)
    net = keras.Sequential([
        keras.Input((8, 8, 1), name="image"), keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2), keras.layers.Flatten(), keras.layers.Dense(10),
    ])
    net.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(x_train, y_train, epochs=10, batch_size=64, verbose=0)
    net.save(data_dir / "digits.keras")
    (data_dir / "digits.keras").chmod(0o644)

    default = _import(real_cluster, "optimizer")
    ok, logs = _run_job(real_cluster, real_namespace, "default", default, data_dir, "digits.keras")
    assert not ok and "inferops[optimize,tensorflow]" in logs and "optimizer-tensorflow" in logs, logs[-2000:]

    variant = _import(real_cluster, "optimizer-tensorflow")
    ok, logs = _run_job(real_cluster, real_namespace, "variant", variant, data_dir, "digits.keras")
    report = json.loads((data_dir / "variant.json").read_text())
    assert ok and report["passed"], logs[-3000:]
    assert report["steps"] == ["convert-keras-onnx", "quantize-int8-static"] and report["accuracy"]["drop"] <= 0.01
    assert report["conversion"]["dynamicBatch"] and set(report["conversion"]["toolVersions"]) >= {"tensorflow", "tf2onnx", "keras"}


@pytest.mark.skipif(os.environ.get("INFEROPS_TORCH_IMAGE_TEST") != "1", reason="the optimizer-torch image (3.1 GB) is built only with INFEROPS_TORCH_IMAGE_TEST=1")
def test_the_torch_variant_converts_a_torch_export_program(real_cluster, real_namespace, data_dir):
    torch = _need("torch", "torch")
    x_train, y_train = _digits(data_dir, (1, 8, 8))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16 * 16, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(10):
        for idx in torch.randperm(len(xt)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    program = torch.export.export(net.eval(), (xt[:4],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(data_dir / "digits.pt2"))
    (data_dir / "digits.pt2").chmod(0o644)

    variant = _import(real_cluster, "optimizer-torch")
    ok, logs = _run_job(real_cluster, real_namespace, "variant", variant, data_dir, "digits.pt2")
    report = json.loads((data_dir / "variant.json").read_text())
    assert ok and report["passed"], logs[-3000:]
    assert report["steps"] == ["convert-pytorch-onnx", "quantize-int8-static"] and report["accuracy"]["drop"] <= 0.01
