"""Dense chains (MLPs): read one from an ONNX graph, train it with numpy, write it back as ONNX.

A dense chain is what any framework exports for an MLP: per layer a Gemm, or a MatMul plus an
Add of a bias, then optionally Relu/Tanh/Sigmoid, and optionally a final Softmax. Pruning and
distillation work on this form, so they need no deep-learning framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

ACTIVATIONS = ("Relu", "Tanh", "Sigmoid")


class NotADenseChain(ValueError):
    pass


@dataclass
class Layer:
    weight: np.ndarray  # [in, out]
    bias: np.ndarray  # [out]
    activation: str | None  # one of ACTIVATIONS, or None (linear)


@dataclass
class DenseChain:
    layers: list[Layer]
    input_name: str = "input"
    output_name: str = "output"
    softmax_output: bool = False
    batch_dim: str = "batch"
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def widths(self) -> list[int]:
        return [self.layers[0].weight.shape[0]] + [layer.weight.shape[1] for layer in self.layers]

    @property
    def parameter_count(self) -> int:
        return sum(layer.weight.size + layer.bias.size for layer in self.layers)

    def copy(self) -> "DenseChain":
        return DenseChain(
            [Layer(l.weight.copy(), l.bias.copy(), l.activation) for l in self.layers],
            self.input_name, self.output_name, self.softmax_output, self.batch_dim, dict(self.metadata),
        )

    # -- numpy forward/backward -------------------------------------------------------------

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits (before any output softmax) and the input of each layer, for backprop."""
        inputs = []
        h = x.astype(np.float32, copy=False)
        for layer in self.layers:
            inputs.append(h)
            h = _act(h @ layer.weight + layer.bias, layer.activation)
        return h, inputs

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)[0]

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Gradients (dW, db) of each layer, given d(loss)/d(logits) and each layer's input and output."""
        grads = []
        g = grad_out
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            g = g * _act_grad(outputs[i], layer.activation)
            grads.append((inputs[i].T @ g, g.sum(axis=0)))
            if i:
                g = g @ layer.weight.T
        return grads[::-1]

    def train(
        self,
        x: np.ndarray,
        targets: np.ndarray,
        *,
        epochs: int,
        lr: float = 1e-3,
        batch_size: int = 64,
        weight_decay: float = 0.0,
        seed: int = 0,
        masks: list[np.ndarray | None] | None = None,
        temperature: float = 1.0,
        on_epoch: Callable[[int, float], None] | None = None,
    ) -> None:
        """Adam on softmax cross-entropy against `targets`: class probabilities [N, C] (soft labels allowed).

        With a temperature T the loss is T^2 * CE(softmax(z/T), targets), as in Hinton et al.'s distillation.
        """
        rng = np.random.default_rng(seed)
        params = [p for l in self.layers for p in (l.weight, l.bias)]
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        b1, b2, eps, step = 0.9, 0.999, 1e-8, 0
        for epoch in range(epochs):
            order = rng.permutation(len(x))
            total = 0.0
            for start in range(0, len(x), batch_size):
                idx = order[start : start + batch_size]
                xb, tb = x[idx], targets[idx]
                out, inputs = self.forward(xb)
                outs = inputs[1:] + [out]
                p = softmax(out, temperature)
                total += float(-(tb * np.log(p + 1e-12)).sum())
                grads = self.backward((p - tb) * temperature / len(idx), inputs, outs)
                step += 1
                flat = [g for pair in grads for g in pair]
                for k, (param, grad) in enumerate(zip(params, flat)):
                    if weight_decay and param.ndim == 2:
                        grad = grad + weight_decay * param
                    m[k] = b1 * m[k] + (1 - b1) * grad
                    v[k] = b2 * v[k] + (1 - b2) * grad * grad
                    mhat, vhat = m[k] / (1 - b1**step), v[k] / (1 - b2**step)
                    param -= (lr * mhat / (np.sqrt(vhat) + eps)).astype(param.dtype)
                if masks:
                    for layer, mask in zip(self.layers, masks):
                        if mask is not None:
                            layer.weight *= mask
            if on_epoch:
                on_epoch(epoch, total / len(x))

    # -- ONNX --------------------------------------------------------------------------------

    def to_onnx(self, opset: int = 17) -> onnx.ModelProto:
        nodes, inits = [], []
        h = self.input_name
        for i, layer in enumerate(self.layers):
            inits += [numpy_helper.from_array(layer.weight.astype(np.float32), f"W{i}"), numpy_helper.from_array(layer.bias.astype(np.float32), f"b{i}")]
            last = i == len(self.layers) - 1
            out = self.output_name if last and not layer.activation and not self.softmax_output else f"gemm{i}"
            nodes.append(helper.make_node("Gemm", [h, f"W{i}", f"b{i}"], [out], name=f"dense{i}"))
            h = out
            if layer.activation:
                out = self.output_name if last and not self.softmax_output else f"act{i}"
                nodes.append(helper.make_node(layer.activation, [h], [out], name=f"{layer.activation.lower()}{i}"))
                h = out
        if self.softmax_output:
            nodes.append(helper.make_node("Softmax", [h], [self.output_name], axis=-1, name="softmax"))
        graph = helper.make_graph(
            nodes, "dense_chain",
            [helper.make_tensor_value_info(self.input_name, onnx.TensorProto.FLOAT, [self.batch_dim, self.widths[0]])],
            [helper.make_tensor_value_info(self.output_name, onnx.TensorProto.FLOAT, [self.batch_dim, self.widths[-1]])],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="inferops")
        model.ir_version = min(model.ir_version, 9)
        for k, v in self.metadata.items():
            model.metadata_props.add(key=k, value=v)
        onnx.checker.check_model(model)
        return model

    @classmethod
    def from_onnx(cls, model: onnx.ModelProto) -> "DenseChain":
        g = model.graph
        if len(g.input) - len([i for i in g.input if i.name in {t.name for t in g.initializer}]) != 1 or len(g.output) != 1:
            raise NotADenseChain("a dense chain has one input and one output")
        inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
        inits.update(consts)
        nodes = [n for n in g.node if n.op_type != "Constant"]
        input_name = next(i.name for i in g.input if i.name not in inits)
        dims = next(i for i in g.input if i.name == input_name).type.tensor_type.shape.dim
        batch_dim = (dims[0].dim_param if dims else "") or "batch"
        layers: list[Layer] = []
        softmax_output = False
        h, i = input_name, 0
        while i < len(nodes):
            n = nodes[i]
            if n.op_type == "Gemm" and n.input[0] == h and n.input[1] in inits:
                attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
                if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                    raise NotADenseChain("Gemm with transA/alpha/beta is not supported")
                w = inits[n.input[1]]
                w = w.T if attrs.get("transB", 0) else w
                b = inits[n.input[2]] if len(n.input) > 2 and n.input[2] else np.zeros(w.shape[1], np.float32)
                layers.append(Layer(w.astype(np.float32).copy(), np.broadcast_to(b, (w.shape[1],)).astype(np.float32).copy(), None))
                h, i = n.output[0], i + 1
            elif n.op_type == "MatMul" and n.input[0] == h and n.input[1] in inits:
                w = inits[n.input[1]]
                b = np.zeros(w.shape[1], np.float32)
                h, i = n.output[0], i + 1
                if i < len(nodes) and nodes[i].op_type == "Add" and h in nodes[i].input:
                    other = [x for x in nodes[i].input if x != h][0]
                    if other not in inits:
                        raise NotADenseChain("Add after MatMul is not a constant bias")
                    b = np.broadcast_to(inits[other], (w.shape[1],))
                    h, i = nodes[i].output[0], i + 1
                layers.append(Layer(w.astype(np.float32).copy(), b.astype(np.float32).copy(), None))
            elif n.op_type in ACTIVATIONS and layers and layers[-1].activation is None and n.input[0] == h:
                layers[-1].activation = n.op_type
                h, i = n.output[0], i + 1
            elif n.op_type == "Softmax" and i == len(nodes) - 1 and n.input[0] == h:
                softmax_output, h, i = True, n.output[0], i + 1
            else:
                raise NotADenseChain(f"op {n.op_type} ({n.name or 'unnamed'}) is not part of a dense chain (Gemm/MatMul+Add, Relu/Tanh/Sigmoid, final Softmax)")
        if not layers or h != g.output[0].name:
            raise NotADenseChain("the graph's output is not the end of a dense chain")
        meta = {p.key: p.value for p in model.metadata_props}
        return cls(layers, input_name, g.output[0].name, softmax_output, batch_dim, meta)


def softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = z / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    out = np.zeros((len(labels), classes), np.float32)
    out[np.arange(len(labels)), labels.astype(int)] = 1
    return out


def _act(z: np.ndarray, kind: str | None) -> np.ndarray:
    if kind == "Relu":
        return np.maximum(z, 0)
    if kind == "Tanh":
        return np.tanh(z)
    if kind == "Sigmoid":
        return 1 / (1 + np.exp(-z))
    return z


def _act_grad(out: np.ndarray, kind: str | None) -> np.ndarray | float:
    if kind == "Relu":
        return (out > 0).astype(out.dtype)
    if kind == "Tanh":
        return 1 - out * out
    if kind == "Sigmoid":
        return out * (1 - out)
    return 1.0
