"""TensorFlow in: a small Keras CNN trained here on scikit-learn's digits, saved as a .keras file and
as a SavedModel (a folder, and a .tar.gz of one), converted to ONNX in the optimizer with tf2onnx and
quantized to int8 within one point."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

from inferops.optimize import model_io
from inferops.optimize.sample_cnns import train_keras_cnn

from .conftest import onnx_predict, run_optimize, static_int8_within_a_point

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]


@dataclass(frozen=True)
class KerasDigits:
    keras_file: Path
    saved_model: Path
    data: Path
    x_test: np.ndarray
    y_test: np.ndarray
    accuracy: float


@pytest.fixture(scope="module")
def cnn(tensorflow, digits, tmp_path_factory) -> KerasDigits:
    npz = np.load(digits.data)
    x_train, y_train = npz["train_inputs"].reshape(-1, 8, 8, 1), npz["train_labels"]
    x_test, y_test = digits.x_test.reshape(-1, 8, 8, 1), digits.y_test
    net = train_keras_cnn(x_train, y_train)
    accuracy = float((net.predict(x_test, verbose=0).argmax(1) == y_test).mean())
    d = tmp_path_factory.mktemp("keras")
    net.save(d / "digits.keras")
    net.export(str(d / "digits-savedmodel"), verbose=False)  # serving_default: image -> output_0
    np.savez(d / "digits.npz", image=x_test, labels=y_test.astype(np.int64), train_image=x_train, train_labels=y_train.astype(np.int64))
    return KerasDigits(d / "digits.keras", d / "digits-savedmodel", d / "digits.npz", x_test, y_test, accuracy)


def _check(code: int, report: dict, cnn: KerasDigits, tmp_path: Path, fmt: str) -> None:
    assert code == 0, report["notes"]
    assert cnn.accuracy > 0.95
    assert report["steps"] == [f"convert-{fmt}-onnx", "quantize-int8-static"]
    conv = report["conversion"]
    assert conv["fromFormat"] == fmt and conv["dynamicBatch"] and conv["tool"].startswith(("tf2onnx", "keras"))
    assert conv["toolVersions"]["tensorflow"] == report["tools"]["tensorflow"] and "tf2onnx" in conv["toolVersions"]
    assert any(n.startswith(f"converted {fmt} to ONNX with tensorflow ") and "tf2onnx" in n for n in report["notes"])
    assert conv["fidelitySource"] == "eval data" and conv["fidelityRows"] == 256 and conv["maxRelDiff"] < 1e-4
    assert report["accuracy"]["before"] == pytest.approx(cnn.accuracy, abs=1e-9), "the export scores as the original"
    assert report["accuracy"]["drop"] <= 0.01 and report["sizeBytes"]["after"] < report["sizeBytes"]["before"] / 2
    served = tmp_path / "repo" / "digits" / "1" / "model.onnx"
    assert onnx.load(str(served)).graph.input[0].type.tensor_type.shape.dim[0].dim_param, "batch stays free"
    out = onnx_predict(served, {"image": cnn.x_test[:7]})  # an odd batch
    assert out.shape == (7, 10)


def test_keras_file_to_int8(cnn, tmp_path):
    code, report = static_int8_within_a_point(cnn.keras_file, cnn.data, tmp_path)  # the format read from the .keras name
    _check(code, report, cnn, tmp_path, "keras")
    assert report["signature"]["inputs"] == [{"name": "image", "datatype": "FP32", "dims": [8, 8, 1]}]
    assert [t["name"] for t in report["signature"]["outputs"]] == ["output_0"]


def test_saved_model_folder_to_int8(cnn, tmp_path):
    code, report = static_int8_within_a_point(cnn.saved_model, cnn.data, tmp_path, "--format", "savedmodel", "--outputs", '[{"name":"logits","datatype":"FP32","dims":[10]}]')
    _check(code, report, cnn, tmp_path, "savedmodel")
    assert [t["name"] for t in report["signature"]["outputs"]] == ["logits"], "the spec renames the signature's output"


def test_saved_model_tarball_is_read_by_its_content(cnn, tmp_path):
    archive = tmp_path / "digits.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cnn.saved_model, arcname="digits")
    code, report = static_int8_within_a_point(archive, cnn.data, tmp_path)  # no --format: the archive holds a saved_model.pb
    _check(code, report, cnn, tmp_path, "savedmodel")


def test_a_keras_file_with_python_code_in_it_is_refused(tensorflow, tmp_path):
    import keras

    net = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Lambda(lambda t: t * 2.0), keras.layers.Dense(2)])
    net.save(tmp_path / "lambda.keras")
    code, report = run_optimize("--model", f"file://{tmp_path / 'lambda.keras'}", "--recipe", "none", "--output", f"file://{tmp_path / 'repo'}")
    assert code == 2 and "arbitrary code" in report["notes"][-1], report["notes"][-1]


def test_a_conversion_that_changes_the_outputs_is_caught_before_any_recipe(cnn, tmp_path, monkeypatch):
    # Stand in a converter bug: the export answers with its logits halved.
    from inferops.optimize import tf_export

    real = tf_export.finish

    def halved(out, *args, **kwargs):
        model = onnx.load(str(out))
        graph = model.graph
        name = graph.output[0].name
        graph.node[-1].output[list(graph.node[-1].output).index(name)] = name + "_raw"
        graph.initializer.append(onnx.numpy_helper.from_array(np.array(0.5, np.float32), "half"))
        graph.node.append(onnx.helper.make_node("Mul", [name + "_raw", "half"], [name]))
        onnx.save(model, str(out))
        return real(out, *args, **kwargs)

    monkeypatch.setattr(tf_export, "finish", halved)
    code, report = static_int8_within_a_point(cnn.keras_file, cnn.data, tmp_path)
    assert code == 2 and "differs from the original" in report["notes"][-1], report["notes"][-1]
    assert report["steps"] == ["convert-keras-onnx"], "nothing was quantized"


def test_without_the_extra_the_format_names_it_before_fetching(tmp_path, monkeypatch):
    monkeypatch.setattr(model_io, "has_extra", lambda extra: False)
    code, report = run_optimize("--model", f"file://{tmp_path / 'absent.keras'}", "--format", "keras", "--recipe", "none", "--output", f"file://{tmp_path / 'repo'}")
    assert code == 2 and "inferops[optimize,tensorflow]" in report["notes"][-1], report["notes"][-1]


def test_a_saved_model_archive_reaching_outside_its_folder_is_refused(tensorflow, tmp_path):
    import io

    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        pb = tarfile.TarInfo("m/saved_model.pb")
        pb.size = 4
        tar.addfile(pb, io.BytesIO(b"\0\0\0\0"))
        link = tarfile.TarInfo("m/variables")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(link)
    code, report = run_optimize("--model", f"file://{archive}", "--recipe", "none", "--output", f"file://{tmp_path / 'repo'}")
    assert code == 2 and "not a plain file or folder" in report["notes"][-1], report["notes"][-1]
    assert not (tmp_path / "repo").exists()
