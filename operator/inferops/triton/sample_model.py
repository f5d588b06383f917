"""A small real model for local serving checks and benchmarks.

An MLP trained with scikit-learn on its bundled digits and written as ONNX from the trained
weights. Its hidden layers are wide enough that one batched matrix product is much cheaper
than many single-row ones on a CPU, which is what makes batching measurable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inferops.api.tensors import Signature, TensorSpec

INPUT = "pixels"
OUTPUT = "probabilities"
SIGNATURE = Signature(
    inputs=[TensorSpec(name=INPUT, datatype="FP32", dims=[64])],
    outputs=[TensorSpec(name=OUTPUT, datatype="FP32", dims=[10])],
)


def digits_samples(count: int, seed: int = 0) -> np.ndarray:
    """`count` rows of the digits data set scaled to [0, 1], as the model expects."""
    from sklearn.datasets import load_digits

    images = load_digits().data.astype(np.float32) / 16.0
    return images[np.random.default_rng(seed).integers(0, len(images), size=count)]


def train_digits_mlp(hidden: tuple[int, ...] = (2048, 2048), max_iter: int = 6, seed: int = 0):
    """Train an MLPClassifier on digits; returns the fitted classifier and its held-out accuracy."""
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    x = digits.data.astype(np.float32) / 16.0
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.25, random_state=seed)
    classifier = MLPClassifier(hidden_layer_sizes=hidden, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a few epochs are enough for digits
        classifier.fit(x_train, y_train)
    return classifier, float(classifier.score(x_test, y_test))


def mlp_to_onnx(classifier, path: Path) -> Path:
    """Write a fitted ReLU MLPClassifier as an ONNX graph (MatMul+Add+Relu ..., Softmax) with a dynamic batch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if classifier.activation != "relu" or classifier.out_activation_ != "softmax":
        raise ValueError("only ReLU MLPs with a softmax output are exported")
    nodes, initializers = [], []
    current = INPUT
    layers = list(zip(classifier.coefs_, classifier.intercepts_))
    for index, (weight, bias) in enumerate(layers):
        w, b = f"w{index}", f"b{index}"
        initializers += [numpy_helper.from_array(weight.astype(np.float32), w), numpy_helper.from_array(bias.astype(np.float32), b)]
        nodes += [helper.make_node("MatMul", [current, w], [f"mm{index}"]), helper.make_node("Add", [f"mm{index}", b], [f"z{index}"])]
        current = f"z{index}"
        if index < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"a{index}"]))
            current = f"a{index}"
    nodes.append(helper.make_node("Softmax", [current], [OUTPUT], axis=-1))
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", classifier.n_outputs_])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="inferops")
    model.ir_version = 8  # readable by every onnxruntime this project supports
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
