"""PyTorch in: a small CNN trained here on scikit-learn's digits, saved as TorchScript and as a
torch.export .pt2, converted to ONNX in the optimizer and quantized to int8 within one point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

from inferops.optimize.sample_cnns import train_torch_cnn

from .conftest import onnx_predict, run_optimize, static_int8_within_a_point

pytestmark = [pytest.mark.torch, pytest.mark.slow]
SIGNATURE = '[{"name":"image","datatype":"FP32","dims":[1,8,8]}]'


@dataclass(frozen=True)
class TorchDigits:
    model: object
    data: Path
    x_test: np.ndarray
    y_test: np.ndarray
    accuracy: float


@pytest.fixture(scope="module")
def cnn(torch, digits, tmp_path_factory) -> TorchDigits:
    npz = np.load(digits.data)
    x_train, y_train = npz["train_inputs"].reshape(-1, 1, 8, 8), npz["train_labels"]
    x_test, y_test = digits.x_test.reshape(-1, 1, 8, 8), digits.y_test
    net = train_torch_cnn(x_train, y_train)
    with torch.no_grad():
        accuracy = float((net(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    d = tmp_path_factory.mktemp("cnn")
    np.savez(d / "digits.npz", image=x_test, labels=y_test.astype(np.int64), train_image=x_train, train_labels=y_train.astype(np.int64))
    return TorchDigits(net, d / "digits.npz", x_test, y_test, accuracy)


def _check(code: int, report: dict, cnn: TorchDigits, tmp_path: Path, fmt: str) -> None:
    assert code == 0, report["notes"]
    assert cnn.accuracy > 0.95
    assert report["steps"] == [f"convert-{fmt}-onnx", "quantize-int8-static"]
    conv = report["conversion"]
    assert conv["fromFormat"] == fmt and conv["dynamicBatch"] and conv["toolVersions"]["torch"] == report["tools"]["torch"]
    assert conv["fidelitySource"] == "eval data" and conv["fidelityRows"] == 256 and conv["maxRelDiff"] < 1e-4
    assert report["accuracy"]["before"] == pytest.approx(cnn.accuracy, abs=1e-9), "the export scores as the original"
    assert report["accuracy"]["drop"] <= 0.01 and report["sizeBytes"]["after"] < report["sizeBytes"]["before"]
    served = tmp_path / "repo" / "digits" / "1" / "model.onnx"
    assert onnx.load(str(served)).graph.input[0].type.tensor_type.shape.dim[0].dim_param, "batch stays free"
    out = onnx_predict(served, {"image": cnn.x_test[:7]})  # an odd batch
    assert out.shape == (7, 10)


def test_torchscript_to_int8(torch, cnn, tmp_path):
    torch.jit.save(torch.jit.script(cnn.model), str(tmp_path / "digits.pt"))
    code, report = static_int8_within_a_point(tmp_path / "digits.pt", cnn.data, tmp_path, "--format", "torchscript", "--inputs", SIGNATURE)
    _check(code, report, cnn, tmp_path, "torchscript")


def test_torchscript_needs_the_signature(torch, cnn, tmp_path):
    torch.jit.save(torch.jit.script(cnn.model), str(tmp_path / "digits.pt"))
    code, report = static_int8_within_a_point(tmp_path / "digits.pt", cnn.data, tmp_path)  # format read from the archive
    assert code == 2 and "spec.model.inputs" in report["notes"][-1]


def test_torch_export_to_int8(torch, cnn, tmp_path):
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(cnn.model, (torch.from_numpy(cnn.x_test[:4]),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "digits.pt2"))
    # The program names its input after forward's argument ("input"); the spec renames it.
    code, report = static_int8_within_a_point(tmp_path / "digits.pt2", cnn.data, tmp_path, "--inputs", SIGNATURE, "--outputs", '[{"name":"logits","datatype":"FP32","dims":[10]}]')
    _check(code, report, cnn, tmp_path, "pytorch")
    assert report["signature"]["inputs"] == [{"name": "image", "datatype": "FP32", "dims": [1, 8, 8]}]
    assert [t["name"] for t in report["signature"]["outputs"]] == ["logits"]


def test_a_fixed_batch_program_gets_a_free_batch(torch, cnn, tmp_path):
    program = torch.export.export(cnn.model, (torch.from_numpy(cnn.x_test[:1]),))
    torch.export.save(program, str(tmp_path / "fixed.pt2"))
    code, report = run_optimize("--model", f"file://{tmp_path / 'fixed.pt2'}", "--recipe", "none", "--output", f"file://{tmp_path / 'repo'}")
    assert code == 0, report["notes"]
    assert report["conversion"]["dynamicBatch"] and report["conversion"]["fidelitySource"] == "generated inputs"
    assert any("fixed batch; exported again" in n for n in report["notes"])
