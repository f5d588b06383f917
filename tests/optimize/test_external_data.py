"""ONNX models that keep their weights in external data files (the form of models over 2 GB):
`inferops optimize` fetches those files beside the .onnx (file://, s3://), refuses a location
outside the model's folder, and publishes an artifact that carries the weights."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import onnx
import pytest

from inferops.optimize.external_data import write_model
from inferops.storage.pull import pull, verify_tree
from s3server import s3_server  # noqa: F401  (a session fixture: the real S3 server)

from .conftest import onnx_predict, run_optimize


def _save_external(digits, folder: Path, location: str = "digits.weights") -> Path:
    """The digits MLP with every tensor in one external file beside it (nothing inline)."""
    (folder / location).parent.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(digits.model))
    path = folder / "digits.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=location, size_threshold=0)
    assert path.stat().st_size < 10_000 < (folder / location).stat().st_size  # the weights really are outside
    return path


def _check_artifact(root: Path, digits, report: dict, uri: str) -> None:
    verify_tree(root, uri)  # every file report.json lists is there with its sha256
    artifact = root / "digits/1/model.onnx"
    listed = set(report["checksums"])
    assert {"digits/1/model.onnx", "digits/config.pbtxt"} <= listed
    model = onnx.load(str(artifact), load_external_data=False)
    from inferops.optimize.external_data import locations

    for loc in locations(model):  # weights inline, or in files of the version folder the report lists
        assert f"digits/1/{loc}" in listed
    original = onnx_predict(digits.model, {"input": digits.x_test}).argmax(1)
    optimized = onnx_predict(artifact, {"input": digits.x_test}).argmax(1)
    assert (original == optimized).mean() >= 0.98, "the published model does not predict like the original"
    assert report["sizeBytes"]["before"] >= digits.model.stat().st_size  # the weights are counted


@pytest.mark.parametrize("whole_folder", [False, True], ids=["file", "folder"])
def test_file_model_with_external_data_is_optimized_with_its_weights(digits, tmp_path, whole_folder):
    model = _save_external(digits, tmp_path / "src")
    out = tmp_path / "repo"
    code, report = run_optimize("--model", f"file://{model.parent if whole_folder else model}", "--recipe", "quantize-int8-dynamic", "--output", f"file://{out}",
                                "--eval-data", f"file://{digits.data}", "--model-name", "digits")
    assert code == 0, report["notes"]
    _check_artifact(out, digits, report, f"file://{out}")


def test_s3_model_with_external_data_in_a_subfolder(digits, s3_server, tmp_path, monkeypatch):
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    model = _save_external(digits, tmp_path / "src", "weights/digits #1.bin")
    bucket = s3_server.make_bucket("ext-" + uuid.uuid4().hex[:8])
    client = s3_server.client()
    client.upload_file(str(model), bucket, "in/digits.onnx")
    client.upload_file(str(tmp_path / "src/weights/digits #1.bin"), bucket, "in/weights/digits #1.bin")
    client.upload_file(str(digits.data), bucket, "in/eval.npz")
    code, report = run_optimize("--model", f"s3://{bucket}/in/digits.onnx", "--recipe", "none", "--output", f"s3://{bucket}/out/digits",
                                "--eval-data", f"s3://{bucket}/in/eval.npz", "--model-name", "digits")
    assert code == 0, report["notes"]
    pulled = tmp_path / "pulled"
    pull(f"s3://{bucket}/out/digits", pulled)
    _check_artifact(pulled, digits, report, f"s3://{bucket}/out/digits")


def test_missing_external_data_file_is_named(digits, tmp_path):
    model = _save_external(digits, tmp_path / "src")
    (tmp_path / "src/digits.weights").unlink()
    code, report = run_optimize("--model", f"file://{model}", "--recipe", "none", "--output", f"file://{tmp_path}/o", "--model-name", "digits")
    assert code == 2
    assert "digits.weights" in report["notes"][-1] and "external data" in report["notes"][-1]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("escape", ["../secret.bin", "/etc/hostname"])
def test_external_data_outside_the_folder_is_refused(digits, tmp_path, escape):
    model = _save_external(digits, tmp_path / "src")
    proto = onnx.load(str(model), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = escape
    onnx.save(proto, str(model))  # only the graph: the tensors now point outside the folder
    (tmp_path / "secret.bin").write_bytes((tmp_path / "src/digits.weights").read_bytes())
    code, report = run_optimize("--model", f"file://{model}", "--recipe", "none", "--output", f"file://{tmp_path}/o", "--model-name", "digits")
    assert code == 2
    assert escape in report["notes"][-1] and "outside the model's folder" in report["notes"][-1]
    assert not (tmp_path / "o").exists()


def test_over_the_inline_limit_the_weights_go_beside_model_onnx(digits, tmp_path):
    model = _save_external(digits, tmp_path / "src")
    version = tmp_path / "v"
    version.mkdir()
    written = write_model(model, version, inline_limit=1)  # as a model over 2 GB would be
    assert [p.name for p in written] == ["model.onnx", "model.onnx.data"]
    assert (version / "model.onnx").stat().st_size < 10_000
    x = digits.x_test[:50]
    np.testing.assert_allclose(onnx_predict(version / "model.onnx", {"input": x}), onnx_predict(digits.model, {"input": x}), rtol=1e-5, atol=1e-5)
    inline = tmp_path / "i"
    inline.mkdir()
    assert write_model(model, inline) == [inline / "model.onnx"]  # small enough: inline, no data file
    assert not onnx.load(str(inline / "model.onnx"), load_external_data=False).graph.initializer[0].external_data
