"""Graph fusions that ONNX Runtime does not find by itself, applied to an optimized model.

GELU written out with Erf (x * 0.5 * (1 + erf(x / sqrt 2)), as exporters write it) becomes
ONNX Runtime's fused com.microsoft.Gelu: one pass over the activation instead of five
elementwise ops. ONNX Runtime's own GeluFusion matches only some spellings (not a Mul by
1/sqrt 2, nor the 0.5 applied first), and none once the model is quantized.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

MS_DOMAIN = "com.microsoft"


def _constant(graph_consts: dict[str, np.ndarray], name: str) -> float | None:
    value = graph_consts.get(name)
    if value is None or value.size != 1:
        return None
    return float(value.reshape(-1)[0])


def _other(node: onnx.NodeProto, name: str) -> str | None:
    """The input of a two-input node that is not `name`."""
    if len(node.input) != 2 or name not in node.input:
        return None
    return node.input[1] if node.input[0] == name else node.input[0]


def fuse_gelu(model: onnx.ModelProto) -> int:
    """Rewrite every exact-GELU subgraph of `model` in place into com.microsoft.Gelu; returns how many."""
    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}

    def near(name: str | None, value: float) -> bool:
        c = _constant(consts, name) if name else None
        return c is not None and math.isclose(c, value, rel_tol=1e-3)

    def only_consumer(name: str, node: onnx.NodeProto) -> bool:
        return name not in graph_outputs and [id(n) for n in consumers.get(name, [])] == [id(node)]

    fused, removed = 0, set()
    for erf in [n for n in graph.node if n.op_type == "Erf"]:
        scale = producer.get(erf.input[0])
        if scale is None or id(scale) in removed:
            continue
        if scale.op_type == "Div" and near(scale.input[1], math.sqrt(2)):
            x = scale.input[0]
        elif scale.op_type == "Mul" and (near(scale.input[1], 1 / math.sqrt(2)) or near(scale.input[0], 1 / math.sqrt(2))):
            x = scale.input[0] if near(scale.input[1], 1 / math.sqrt(2)) else scale.input[1]
        else:
            continue
        adds = consumers.get(erf.output[0], [])
        if len(adds) != 1 or adds[0].op_type != "Add" or not near(_other(adds[0], erf.output[0]), 1.0):
            continue
        add = adds[0]
        muls = consumers.get(add.output[0], [])
        if len(muls) != 1 or muls[0].op_type != "Mul":
            continue
        mul = muls[0]
        partner = _other(mul, add.output[0])
        half = producer.get(partner) if partner else None
        chain: list[onnx.NodeProto]
        if half is not None and half.op_type == "Mul" and x in half.input and near(_other(half, x), 0.5):
            # (x * 0.5) * (1 + erf(...))
            chain, out = [scale, erf, add, half, mul], mul.output[0]
            if not only_consumer(half.output[0], mul):
                continue
        elif partner == x:
            # (x * (1 + erf(...))) * 0.5
            last = consumers.get(mul.output[0], [])
            if len(last) != 1 or last[0].op_type != "Mul" or not near(_other(last[0], mul.output[0]), 0.5):
                continue
            chain, out = [scale, erf, add, mul, last[0]], last[0].output[0]
        else:
            continue
        if not (only_consumer(scale.output[0], erf) and only_consumer(erf.output[0], add) and only_consumer(add.output[0], mul)):
            continue
        gelu = helper.make_node("Gelu", [x], [out], name=f"gelu_fused_{fused}", domain=MS_DOMAIN)
        position = min(i for i, n in enumerate(graph.node) if any(n is c for c in chain))
        for n in chain:
            removed.add(id(n))
        graph.node.insert(position, gelu)
        fused += 1
    if fused:
        keep = [n for n in graph.node if id(n) not in removed]
        del graph.node[:]
        graph.node.extend(keep)
        used = {name for n in graph.node for name in n.input}
        unused = [i for i in graph.initializer if i.name not in used and i.name not in graph_outputs]
        for init in unused:
            graph.initializer.remove(init)
        if not any(o.domain == MS_DOMAIN for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return fused
