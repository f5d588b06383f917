"""Each recipe on a real MLP trained on scikit-learn's digits, held to a stated budget.

Budgets (accuracy drop in points of top-1 accuracy; size as optimized/original bytes):
  quantize-int8-dynamic  drop <= 1.0  size <= 0.30
  quantize-int8-static   drop <= 1.0  size <= 0.30
  prune (50% structured) drop <= 1.0  size <= 0.35 (hidden widths halved)
  distill (width 0.25)   drop <= 1.0  size <= 1/3 (student at least 3x smaller)
  fp16                   drop <= 1.0  size <= 0.55
Latency is measured and reported (batch 1 and 32); its targets are checked in bench/bench_optimize.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from inferops.optimize.dense_chain import DenseChain
from inferops.triton.config import parse_model_config

from .conftest import onnx_predict, run_optimize

CASES = {
    "quantize-int8-dynamic": ([], 0.30),
    "quantize-int8-static": ([], 0.30),
    "prune": (["sparsity=0.5"], 0.35),
    "distill": (["studentWidth=0.25"], 1 / 3),
    "fp16": ([], 0.55),
}


def _accuracy(model: Path, digits) -> float:
    return float((onnx_predict(model, {"input": digits.x_test}).argmax(1) == digits.y_test).mean())


@pytest.mark.parametrize("recipe", list(CASES))
def test_recipe_holds_its_budget(recipe, digits, tmp_path):
    params, size_budget = CASES[recipe]
    out = tmp_path / "repo"
    argv = ["--model", f"file://{digits.model}", "--recipe", recipe, "--output", f"file://{out}",
            "--eval-data", f"file://{digits.data}", "--accuracy-budget", "0.01", "--model-name", "digits",
            "--report", str(tmp_path / "r.json")]
    for p in params:
        argv += ["--param", p]
    code, report = run_optimize(*argv)
    assert code == 0, report["notes"]

    artifact = out / "digits/1/model.onnx"
    size_ratio = artifact.stat().st_size / digits.model.stat().st_size
    before, after = _accuracy(digits.model, digits), _accuracy(artifact, digits)
    assert before - after <= 0.01, f"{recipe}: accuracy {before:.4f} -> {after:.4f}"
    assert size_ratio <= size_budget, f"{recipe}: size ratio {size_ratio:.3f} > {size_budget:.3f}"

    # the report says what we measured ourselves
    assert report == json.loads((out / "report.json").read_text()) == json.loads((tmp_path / "r.json").read_text())
    acc = report["accuracy"]
    assert acc["metric"] == "accuracy" and acc["passed"] and abs(acc["after"] - after) < 1e-6 and abs(acc["before"] - before) < 1e-6
    assert report["sizeBytes"] == {"before": digits.model.stat().st_size, "after": artifact.stat().st_size}
    for key in ("latencyMsBatch1", "latencyMsBatch32"):
        assert report[key]["before"] > 0 and report[key]["after"] > 0
    assert report["steps"] == [recipe] and report["passed"]
    assert set(report["checksums"]) == {"digits/1/model.onnx", "digits/config.pbtxt"}
    assert {"onnx", "onnxruntime", "numpy"} <= set(report["tools"])

    config = parse_model_config((out / "digits/config.pbtxt").read_text())
    assert config.name == "digits" and config.backend == "onnxruntime" and config.max_batch_size == 32
    assert [i.name for i in config.input] == ["input"] and list(config.input[0].dims) == [64]


def test_structured_prune_really_removes_neurons(digits, tmp_path):
    code, report = run_optimize("--model", f"file://{digits.model}", "--recipe", "prune", "--output", f"file://{tmp_path}/o",
                                "--eval-data", f"file://{digits.data}", "--param", "sparsity=0.5", "--model-name", "d")
    assert code == 0
    pruned = DenseChain.from_onnx(onnx.load(str(tmp_path / "o/d/1/model.onnx")))
    assert pruned.widths == [64, 256, 256, 10]


def test_distilled_student_is_at_least_3x_smaller_in_parameters(digits, tmp_path):
    code, _ = run_optimize("--model", f"file://{digits.model}", "--recipe", "distill", "--output", f"file://{tmp_path}/o",
                           "--eval-data", f"file://{digits.data}", "--model-name", "d")
    assert code == 0
    teacher = DenseChain.from_onnx(onnx.load(str(digits.model)))
    student = DenseChain.from_onnx(onnx.load(str(tmp_path / "o/d/1/model.onnx")))
    assert teacher.parameter_count >= 3 * student.parameter_count


def test_chain_prune_then_quantize(digits, tmp_path):
    code, report = run_optimize("--model", f"file://{digits.model}", "--recipe", "prune,quantize-int8-dynamic",
                                "--output", f"file://{tmp_path}/o", "--eval-data", f"file://{digits.data}", "--model-name", "d")
    assert code == 0, report["notes"]
    assert report["steps"] == ["prune", "quantize-int8-dynamic"]
    assert report["sizeBytes"]["after"] < 0.1 * report["sizeBytes"]["before"]
    assert report["accuracy"]["drop"] <= 0.01


def test_recipe_breaking_its_budget_fails_and_deploys_nothing(digits, tmp_path):
    out = tmp_path / "repo"
    code, report = run_optimize("--model", f"file://{digits.model}", "--recipe", "prune", "--output", f"file://{out}",
                                "--eval-data", f"file://{digits.data}", "--param", "sparsity=0.98", "--param", "fineTuneEpochs=0",
                                "--accuracy-budget", "0.005", "--report", str(tmp_path / "r.json"))
    assert code == 3
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "r.json"]
    acc = report["accuracy"]
    assert not report["passed"] and not acc["passed"] and acc["drop"] > acc["budget"] == 0.005
    assert f"dropped by {acc['drop']:.4f}" in report["notes"][-1] and "nothing was deployed" in report["notes"][-1]
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is False


def test_lossy_recipe_without_eval_data_is_refused(digits, tmp_path):
    code, report = run_optimize("--model", f"file://{digits.model}", "--recipe", "quantize-int8-dynamic", "--output", f"file://{tmp_path}/o")
    assert code == 2 and "give --eval-data" in report["notes"][-1]
    assert not (tmp_path / "o").exists()


def test_tensorrt_is_rendered_and_says_plainly_when_no_engine_is_built(digits, tmp_path):
    from inferops.optimize.tensorrt import gpu_name

    code, report = run_optimize("--model", f"file://{digits.model}", "--recipe", "tensorrt", "--output", f"file://{tmp_path}/o", "--model-name", "d")
    assert code == 0, report["notes"]
    config = parse_model_config((tmp_path / "o/d/config.pbtxt").read_text())
    acc = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in acc] == ["tensorrt"] and acc[0].parameters["precision_mode"] == "FP16"
    assert config.instance_group[0].kind == config.instance_group[0].KIND_GPU
    if gpu_name() is None:
        assert any(n.startswith("TensorRT engine NOT built: no GPU") for n in report["notes"])
    else:
        assert any("TensorRT engine" in n for n in report["notes"])


@pytest.mark.parametrize("content,expected", [(b"\x00garbage not onnx", "is not a valid ONNX model"), (None, "nothing at file://")])
def test_corrupt_or_missing_model_is_a_clear_error(content, expected, tmp_path):
    model = tmp_path / "model.onnx"
    if content is not None:
        model.write_bytes(content)
    code, report = run_optimize("--model", f"file://{model}", "--recipe", "none", "--output", f"file://{tmp_path}/o")
    assert code == 2 and expected in report["notes"][-1]
    assert not (tmp_path / "o").exists()


def test_none_recipe_publishes_the_model_as_is(digits, tmp_path):
    code, report = run_optimize("--model", f"file://{digits.model}", "--recipe", "none", "--output", f"file://{tmp_path}/o", "--model-name", "d")
    assert code == 0 and report["steps"] == []
    assert (tmp_path / "o/d/1/model.onnx").read_bytes() == digits.model.read_bytes()
    assert np.isclose(report["sizeBytes"]["before"], report["sizeBytes"]["after"])


@pytest.mark.triton
@pytest.mark.slow
def test_tune_profiles_on_a_real_triton_and_writes_the_chosen_batching(digits, tmp_path):
    pytest.importorskip("inferops.triton.tuner")
    from inferops.triton.server import wheel_paths

    try:
        wheel_paths()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"tritonserver unavailable: {exc}")
    code, report = run_optimize("--model", f"file://{digits.model}", "--recipe", "quantize-int8-dynamic", "--output", f"file://{tmp_path}/o",
                                "--eval-data", f"file://{digits.data}", "--model-name", "d", "--tune", "--latency-objective-ms", "50")
    assert code == 0, report["notes"]
    tuning = report["tuning"]
    assert tuning["latencyObjectiveMs"] == 50 and tuning["measurements"] >= 1
    config = parse_model_config((tmp_path / "o/d/config.pbtxt").read_text())
    assert config.max_batch_size == tuning["chosen"]["maxBatchSize"]
    assert config.instance_group[0].count == tuning["chosen"]["instanceCount"]


def test_tune_without_objective_is_refused(digits, tmp_path):
    code, report = run_optimize("--model", f"file://{digits.model}", "--recipe", "none", "--output", f"file://{tmp_path}/o", "--tune")
    assert code == 2 and "--latency-objective-ms" in report["notes"][-1]
