"""Failures that say why: what cannot work is refused before the expensive work, with a reason
the operator can show (the termination message the Job's pod keeps)."""

from __future__ import annotations

import numpy as np
import pytest
import onnx
from onnx import TensorProto, helper, numpy_helper

from .conftest import run_optimize


def _fixed_batch_model(path) -> None:
    """A model whose batch dimension is fixed at 1: Triton's dynamic batcher cannot use it."""
    weight = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"])], "fixed",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2])], [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))


@pytest.mark.parametrize("flags", [("--tune", "--latency-objective-ms", "50"), ("--require-batch",)], ids=["tune", "require-batch"])
def test_tuning_a_model_without_a_batch_dimension_is_refused_before_measuring(tmp_path, monkeypatch, flags):
    """--require-batch: what the operator's Job passes for dynamicBatching auto (the tuning has a Job of its own)."""
    _fixed_batch_model(tmp_path / "fixed.onnx")
    monkeypatch.setenv("INFEROPS_TERMINATION_LOG", str(tmp_path / "termination-log"))
    code, report = run_optimize("--model", f"file://{tmp_path / 'fixed.onnx'}", "--recipe", "none", "--output", f"file://{tmp_path / 'repo'}", *flags)
    assert code == 2
    said = (tmp_path / "termination-log").read_text()
    assert "free first (batch) dimension" in said and "dynamicBatching" in said and not said.startswith("failed:")
    assert report["latencyMsBatch1"]["before"] is None, "nothing was measured: it was refused first"
    assert not (tmp_path / "repo").exists()


def test_accuracy_gate_writes_the_drop_to_the_termination_message(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("INFEROPS_TERMINATION_LOG", str(tmp_path / "termination-log"))
    code, report = run_optimize("--model", f"file://{digits.model}", "--recipe", "prune", "--param", "sparsity=0.95", "--param", "method=magnitude",
                                "--eval-data", f"file://{digits.data}", "--accuracy-budget", "0.0001", "--output", f"file://{tmp_path / 'repo'}")
    assert code == 3
    said = (tmp_path / "termination-log").read_text()
    assert said.startswith("accuracy gate:") and f"dropped by {report['accuracy']['drop']:.4f}" in said


def test_no_termination_message_without_the_variable(tmp_path, monkeypatch):
    """A run by hand writes none (the path is the Job's, set in its environment)."""
    monkeypatch.delenv("INFEROPS_TERMINATION_LOG", raising=False)
    monkeypatch.chdir(tmp_path)
    code, _ = run_optimize("--model", f"file://{tmp_path / 'missing.onnx'}", "--recipe", "none", "--output", f"file://{tmp_path / 'repo'}")
    assert code == 2
    assert list(tmp_path.iterdir()) == []
