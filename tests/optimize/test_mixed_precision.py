"""Accuracy-aware int8 on a model that plain int8 wrecks.

The digits MLP with one outlier row in its first layer: pixel 0 of every digit is blank, so the
row never changes a float output, but it sets each output column's int8 scale to ~50/127, which
rounds every real weight of that layer to zero. Plain int8 collapses to chance; keeping that one
layer in float passes a one-point budget with the other layers in int8."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from .conftest import onnx_predict, run_optimize


@pytest.fixture(scope="module")
def outlier_model(digits, tmp_path_factory):
    model = onnx.load(str(digits.model))
    for init in model.graph.initializer:
        if init.name == "w0":
            w = numpy_helper.to_array(init).copy()
            assert not digits.x_test[:, 0].any(), "pixel 0 is blank in every digit"
            w[0, :] = np.where(np.arange(w.shape[1]) % 2, 50.0, -50.0)
            init.CopyFrom(numpy_helper.from_array(w, "w0"))
    path = tmp_path_factory.mktemp("outlier") / "outlier.onnx"
    onnx.save(model, str(path))
    return path


def _run(model, data, tmp_path, *extra):
    return run_optimize("--model", f"file://{model}", "--eval-data", f"file://{data}", "--output", f"file://{tmp_path / 'repo'}",
                        "--accuracy-budget", "0.01", *extra)


def test_plain_int8_breaks_the_budget(outlier_model, digits, tmp_path):
    code, report = _run(outlier_model, digits.data, tmp_path, "--recipe", "quantize-int8-dynamic")
    assert code == 3 and report["accuracy"]["drop"] > 0.5


@pytest.mark.parametrize("recipe", ["quantize-int8-dynamic", "quantize-int8-static"])
def test_accuracy_aware_int8_keeps_the_wrecked_layer_in_float(outlier_model, digits, tmp_path, recipe):
    code, report = _run(outlier_model, digits.data, tmp_path, "--recipe", recipe, "--param", "accuracyAware=true")
    assert code == 0, report["notes"]
    mixed = report["mixedPrecision"]
    weights = {s["layer"]: s["weight"] for s in mixed["sensitivity"]}
    assert [weights[layer] for layer in mixed["floatLayers"]] == ["w0"], mixed
    assert mixed["int8Layers"] == 2 and mixed["candidateLayers"] == 3
    assert mixed["fullInt8"]["drop"] > 0.5 and not mixed["fullInt8"]["passed"]
    assert mixed["chosen"]["passed"] and report["accuracy"]["drop"] <= 0.01
    assert mixed["attempts"][0] == mixed["fullInt8"] and mixed["attempts"][-1] == mixed["chosen"]
    assert mixed["sizeCostBytes"] > 0 and mixed["latencyMsBatch32"]["before"] > 0
    assert report["sizeBytes"]["after"] < report["sizeBytes"]["before"], "still smaller than float"
    served = tmp_path / "repo" / "outlier" / "1" / "model.onnx"
    accuracy = (onnx_predict(served, {"input": digits.x_test}).argmax(1) == digits.y_test).mean()
    assert accuracy == pytest.approx(report["accuracy"]["after"])
    assert any("kept 1 of 3 weighted layers in float" in n for n in report["notes"])


def test_accuracy_aware_int8_keeps_nothing_in_float_when_full_int8_holds(digits, tmp_path):
    code, report = _run(digits.model, digits.data, tmp_path, "--recipe", "quantize-int8-dynamic", "--param", "accuracyAware=true")
    assert code == 0
    assert report["mixedPrecision"]["floatLayers"] == [] and len(report["mixedPrecision"]["attempts"]) == 1


@pytest.fixture(scope="module")
def gemm_outlier_model(outlier_model, tmp_path_factory):
    """The same outlier MLP written as exporters often write dense layers: Gemm, weight transposed (transB=1)."""
    from onnx import helper

    model = onnx.load(str(outlier_model))
    inits = {i.name: i for i in model.graph.initializer}
    nodes, adds = [], {n.input[0]: n for n in model.graph.node if n.op_type == "Add"}
    for node in model.graph.node:
        if node.op_type == "MatMul":
            add = adds[node.output[0]]
            w = numpy_helper.to_array(inits[node.input[1]])
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w.T), node.input[1]))
            nodes.append(helper.make_node("Gemm", [node.input[0], node.input[1], add.input[1]], [add.output[0]], name=f"dense_{node.input[1]}", transB=1))
        elif node.op_type != "Add":
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("gemm") / "outlier.onnx"
    onnx.save(model, str(path))
    return path


def test_accuracy_aware_int8_finds_the_layer_in_a_gemm_model(gemm_outlier_model, digits, tmp_path):
    # ONNX Runtime's dynamic quantizer renames the nodes it splits a Gemm into: without rewriting
    # Gemms first, no exclusion matched and every candidate was full int8 (found by bench_formats).
    code, report = _run(gemm_outlier_model, digits.data, tmp_path, "--recipe", "quantize-int8-dynamic", "--param", "accuracyAware=true")
    assert code == 0, report["notes"]
    mixed = report["mixedPrecision"]
    assert mixed["floatLayers"] == ["dense_w0"] and mixed["int8Layers"] == 2 and mixed["fullInt8"]["drop"] > 0.5
    assert report["accuracy"]["drop"] <= 0.01 and report["sizeBytes"]["after"] < report["sizeBytes"]["before"]
