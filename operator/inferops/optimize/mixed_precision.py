"""Accuracy-aware int8 (recipe parameter accuracyAware=true on both int8 recipes).

When the fully quantized model breaks the accuracy budget, measure how much each weighted layer
costs on its own (that layer alone in int8, the first output's error against float on the
calibration rows), then keep the costliest layers in float, one more at a time, until the budget
holds; a last pass puts back into int8 any kept layer the budget does not need. ONNX Runtime's
quantizer does the work (nodes_to_quantize / nodes_to_exclude); every candidate is measured with
the same metric as the accuracy gate, on the same eval data, so the chosen model is the one the
gate then checks (the report says so: the layers are picked on the data that gates them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from inferops.api.report import BeforeAfter, LayerSensitivity, MixedPrecisionReport, PrecisionAttempt

from . import measure
from .context import RecipeContext, RecipeError, log

# Ops whose weights the quantizers turn into int8; the others are cheap to leave as they are.
WEIGHTED_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")
# quantize(preprocessed model, output, nodes to keep in float, nodes to quantize (None: all))
Quantize = Callable[[Path, Path, list[str], "list[str] | None"], None]


@dataclass
class _Candidate:
    path: Path
    report: PrecisionAttempt


def name_nodes(path: Path) -> None:
    """Give every unnamed node a stable name: exclusions and the report address nodes by name."""
    model = onnx.load(str(path))
    seen = {n.name for n in model.graph.node if n.name}
    changed = False
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in seen:
                name += "_"
            node.name, changed = name, True
            seen.add(name)
    if changed:
        onnx.save(model, str(path))


def split_gemms(path: Path) -> int:
    """Rewrite each plain Gemm with a constant weight (alpha = beta = 1, no transA) as MatMul (under
    the Gemm's own name) + Add. ONNX Runtime's dynamic quantizer splits a Gemm into new nodes of its
    own naming, so nodes_to_exclude / nodes_to_quantize never match it: without this a Gemm model's
    (the digits DenseChain, torch's exporter for nn.Linear) accuracy-aware search changed nothing
    and every candidate was full int8. Returns how many were rewritten."""
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes, count = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or not plain or len(node.input) < 2 or node.input[1] not in inits:
            nodes.append(node)
            continue
        weight = node.input[1]
        if attrs.get("transB", 0):
            transposed = f"{weight}_t"
            if transposed not in inits:
                inits[transposed] = numpy_helper.from_array(np.ascontiguousarray(numpy_helper.to_array(inits[weight]).T), transposed)
                graph.initializer.append(inits[transposed])
            weight = transposed
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        product = f"{node.output[0]}_matmul" if bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], weight], [product], name=node.name))
        if bias:
            nodes.append(helper.make_node("Add", [product, bias], [node.output[0]], name=f"{node.name}_bias"))
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
        used = {i for n in graph.node for i in n.input}
        kept = [i for i in graph.initializer if i.name in used or i.name in {o.name for o in graph.output}]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        onnx.save(model, str(path))
    return count


def weighted_layers(path: Path) -> list[tuple[str, str, str]]:
    """(node name, op, weight initializer) of each node the quantizer gives int8 weights."""
    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    return [(n.name, n.op_type, n.input[1]) for n in model.graph.node if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in inits]


def _batched(path: Path) -> bool:
    from .model_io import read_signature

    return read_signature(onnx.load(str(path)))[1]


def search(pre: Path, quantize: Quantize, ctx: RecipeContext, recipe: str) -> tuple[Path, MixedPrecisionReport, list[str]]:
    data = ctx.require_data(f"{recipe} accuracyAware", "eval data to measure each layer")
    if ctx.baseline is None or ctx.budget is None:
        raise RecipeError("accuracyAware needs the original model's metric and the budget (the pipeline gives both)")
    max_attempts = ctx.param("maxAttempts", 32, int)
    name_nodes(pre)
    if split_gemms(pre):
        log.info("Gemm layers rewritten as MatMul + Add, so that the quantizer's node names match")
    layers = weighted_layers(pre)
    attempts: list[_Candidate] = []

    def attempt(float_layers: list[str]) -> _Candidate:
        out = ctx.workdir / f"step{ctx.step_index}-mixed{len(attempts)}.onnx"
        quantize(pre, out, list(float_layers), None)
        value = measure.metric(out, data, ctx.reference)
        drop = ctx.baseline - value
        cand = _Candidate(out, PrecisionAttempt(floatLayers=list(float_layers), metric=value, drop=drop, passed=drop <= ctx.budget + 1e-9, sizeBytes=measure.size_bytes(out)))
        attempts.append(cand)
        log.info("%s with %d layer(s) in float: %s %.4f (drop %.4f, budget %.4f)", recipe, len(float_layers), data.metric, value, drop, ctx.budget)
        return cand

    full = attempt([])
    sensitivity: list[LayerSensitivity] = []
    chosen = full
    if not full.report.passed:
        rows = data.calibration(ctx.param("sensitivityRows", 256, int))
        reference = measure.predict(pre, rows)
        scale = float(np.mean(reference**2)) or 1.0
        for name, op, weight in layers:
            out = ctx.workdir / f"step{ctx.step_index}-only-{len(sensitivity)}.onnx"
            quantize(pre, out, [], [name])
            error = float(np.mean((measure.predict(out, rows) - reference) ** 2)) / scale
            sensitivity.append(LayerSensitivity(layer=name, op=op, weight=weight, error=error))
        sensitivity.sort(key=lambda s: -s.error)
        log.info("layer sensitivity (error alone in int8): %s", ", ".join(f"{s.layer} {s.error:.3g}" for s in sensitivity[:8]))
        kept: list[str] = []
        for s in sensitivity:
            if len(attempts) >= max_attempts:
                break
            kept.append(s.layer)
            chosen = attempt(kept)
            if chosen.report.passed:
                break
        if chosen.report.passed:
            # Greedy order can keep a layer the budget no longer needs once a costlier one is float.
            for layer in list(reversed(kept[:-1])):
                if len(attempts) >= max_attempts:
                    break
                trial = attempt([k for k in kept if k != layer])
                if trial.report.passed:
                    kept.remove(layer)
                    chosen = trial
        else:
            chosen = min(attempts, key=lambda c: c.report.drop)

    latency = BeforeAfter()
    if data is not None and _batched(pre):
        feeds = data.batch(32)
        latency = BeforeAfter(before=measure.latency_ms(full.path, feeds), after=measure.latency_ms(chosen.path, feeds) if chosen is not full else None)
        if chosen is full:
            latency.after = latency.before
    floats = chosen.report.float_layers
    report = MixedPrecisionReport(
        recipe=recipe, floatLayers=floats, int8Layers=len(layers) - len(floats), candidateLayers=len(layers),
        fullInt8=full.report, chosen=chosen.report, sizeCostBytes=chosen.report.size_bytes - full.report.size_bytes,
        latencyMsBatch32=latency, sensitivity=sensitivity[:64], attempts=[a.report for a in attempts[:64]],
    )
    if not chosen.report.passed:
        notes = [f"accuracy-aware int8: no candidate held the budget in {len(attempts)} attempts; the one with the smallest drop ({chosen.report.drop:.4f}) goes to the gate"]
    elif not floats:
        notes = [f"accuracy-aware int8: full int8 held the budget ({data.metric} drop {full.report.drop:.4f} <= {ctx.budget:.4f}); no layer kept in float"]
    else:
        notes = [
            f"accuracy-aware int8: full int8 dropped {data.metric} by {full.report.drop:.4f} (budget {ctx.budget:.4f}); "
            f"kept {len(floats)} of {len(layers)} weighted layers in float ({', '.join(floats)}): drop {chosen.report.drop:.4f}, "
            f"{report.size_cost_bytes:+d} bytes vs full int8; {len(attempts)} attempts, layers chosen on the eval data that gates them"
        ]
    return chosen.path, report, notes
