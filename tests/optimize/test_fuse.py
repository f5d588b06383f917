"""GELU fusion: each exporter spelling becomes one com.microsoft.Gelu with the same outputs in ONNX Runtime."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from inferops.optimize.fuse import fuse_gelu


def gelu_model(spelling: str, share: bool = False) -> onnx.ModelProto:
    """y = GELU(x @ W) in one of the ways exporters write it; `share` also outputs the 1 + erf term."""
    c = lambda name, v: numpy_helper.from_array(np.asarray(v, np.float32), name)  # noqa: E731
    inits = [c("w", np.random.default_rng(0).normal(size=(8, 8))), c("half", 0.5), c("one", 1.0), c("sqrt2", math.sqrt(2)), c("inv_sqrt2", 1 / math.sqrt(2))]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"])]
    if spelling == "mul-half-first":  # (h * 0.5) * (1 + erf(h * 1/sqrt2)), as bert_export writes it
        nodes += [helper.make_node("Mul", ["h", "inv_sqrt2"], ["s"]), helper.make_node("Erf", ["s"], ["e"]), helper.make_node("Add", ["e", "one"], ["a"]),
                  helper.make_node("Mul", ["h", "half"], ["hh"]), helper.make_node("Mul", ["hh", "a"], ["y"])]
    else:  # (h * (1 + erf(h / sqrt2))) * 0.5, as torch.onnx writes it
        nodes += [helper.make_node("Div", ["h", "sqrt2"], ["s"]), helper.make_node("Erf", ["s"], ["e"]), helper.make_node("Add", ["e", "one"], ["a"]),
                  helper.make_node("Mul", ["h", "a"], ["ha"]), helper.make_node("Mul", ["ha", "half"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])]
    if share:
        outputs.append(helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 8]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]


@pytest.mark.parametrize("spelling", ["mul-half-first", "torch-div"])
def test_each_spelling_becomes_one_gelu_with_the_same_outputs(spelling):
    model = gelu_model(spelling)
    x = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    before = run(model, x)
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    assert fuse_gelu(fused) == 1
    onnx.checker.check_model(fused)
    assert [n.op_type for n in fused.graph.node] == ["MatMul", "Gelu"]
    assert {i.name for i in fused.graph.initializer} == {"w"}, "constants only the GELU used are dropped"
    np.testing.assert_allclose(run(fused, x), before, rtol=1e-5, atol=1e-6)


def test_a_subgraph_whose_parts_are_used_elsewhere_is_left_alone():
    model = gelu_model("mul-half-first", share=True)
    assert fuse_gelu(model) == 0
    assert [n.op_type for n in model.graph.node].count("Erf") == 1
