"""Real models for the optimizer tests: an MLP trained here on scikit-learn's bundled digits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from inferops.cli import build_parser

TEACHER_HIDDEN = (512, 512)


@dataclass(frozen=True)
class Digits:
    model: Path  # the teacher MLP as ONNX (MatMul + Add + Relu, as exporters write it)
    data: Path  # eval .npz: inputs, labels, train_inputs, train_labels
    x_test: np.ndarray
    y_test: np.ndarray


def mlp_to_onnx(coefs: list[np.ndarray], intercepts: list[np.ndarray]) -> onnx.ModelProto:
    nodes, inits, h = [], [], "input"
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"), numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        last = i == len(coefs) - 1
        nodes += [helper.make_node("MatMul", [h, f"w{i}"], [f"mm{i}"]), helper.make_node("Add", [f"mm{i}", f"b{i}"], ["logits" if last else f"z{i}"])]
        if not last:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [f"h{i}"]))
            h = f"h{i}"
    graph = helper.make_graph(
        nodes, "digits_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Digits:
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(TEACHER_HIDDEN, max_iter=40, random_state=0).fit(x_train, y_train)
    d = tmp_path_factory.mktemp("digits")
    model = mlp_to_onnx(clf.coefs_, clf.intercepts_)
    onnx.checker.check_model(model)
    onnx.save(model, str(d / "digits.onnx"))
    np.savez(d / "digits.npz", inputs=x_test, labels=y_test.astype(np.int64), train_inputs=x_train, train_labels=y_train.astype(np.int64))
    return Digits(d / "digits.onnx", d / "digits.npz", x_test, y_test)


def run_optimize(*argv: str) -> tuple[int, dict]:
    """Run `inferops optimize` in-process; return its exit status and the report it printed."""
    import contextlib
    import io

    args = build_parser().parse_args(["optimize", *argv])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = args._run(args)
    return code, json.loads(out.getvalue())


def static_int8_within_a_point(model: Path, eval_data: Path, tmp_path: Path, *extra: str) -> tuple[int, dict]:
    """A framework's digits CNN through `inferops optimize` to static int8 within one accuracy
    point, served as `digits` in tmp_path/repo (the torch and TensorFlow format tests)."""
    return run_optimize("--model", f"file://{model}", "--recipe", "quantize-int8-static", "--eval-data", f"file://{eval_data}",
                        "--output", f"file://{tmp_path / 'repo'}", "--accuracy-budget", "0.01", "--model-name", "digits", *extra)


def onnx_predict(path: Path, feeds: dict) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.fixture(scope="session")
def torch(tmp_path_factory):
    """PyTorch for the `torch` layer: skipped with the reason where the extra is missing, except
    under CI=true, where a missing extra is a failure (the README's test command installs it)."""
    import os

    try:
        import torch as module
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs the torch tests: install the torch extra (pip install -e '.[test,torch]')")
        pytest.skip("torch is not installed: pip install -e '.[test,torch]' to run the TorchScript / torch.export tests")
    # The ONNX export touches inductor, whose cache is otherwise /tmp/torchinductor_<user> for good.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("torchinductor")))
        yield module


@pytest.fixture(scope="session")
def tensorflow():
    """TensorFlow (with tf2onnx) for the `tensorflow` layer: skipped with the reason where the extra
    is missing, except under CI=true, where a missing extra is a failure (as for torch)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keep_llvm_single()
    try:
        import tensorflow as module
        import tf2onnx  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs the tensorflow tests: install the tensorflow extra (pip install -e '.[test,tensorflow]')")
        pytest.skip("tensorflow or tf2onnx is not installed: pip install -e '.[test,tensorflow]' to run the Keras / SavedModel tests")
    return module


def keep_llvm_single() -> None:
    """TensorFlow and OpenAI Triton (which torch imports, if installed, when torch._dynamo loads)
    each carry LLVM: Triton's loaded after TensorFlow's aborts the process ("CommandLine Error:
    Option 'bitcode-mdindex-threshold' registered more than once!"). One test session imports
    both frameworks; these CPU tests never need Triton, so torch is told it is absent, unless it
    is already loaded (that order is safe). The optimizer itself loads one framework per Job."""
    import sys

    if "triton" not in sys.modules:
        sys.modules["triton"] = None  # `import triton` raises ImportError: torch runs without it
