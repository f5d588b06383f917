"""prune: remove whole neurons (structured, the default) or zero the smallest weights (magnitude).

structured (dense chains / MLPs): each hidden neuron is scored by the L2 norm of its incoming
weights times that of its outgoing weights; the lowest `sparsity` fraction (default 0.5) of each
hidden layer is cut out of both matrices, so the model really gets smaller and faster. With a
training split in the eval data it is then fine-tuned for `fineTuneEpochs` (default 10).

magnitude (any ONNX graph): zeroes the smallest-magnitude `sparsity` fraction of each MatMul/Gemm
weight. A dense ONNX file keeps its size and dense kernels their speed; it helps only runtimes
with sparse kernels or a compressed artifact store, and the report says so.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .context import RecipeContext, RecipeError, RecipeResult, log
from .dense_chain import DenseChain, NotADenseChain, one_hot


def structured(chain: DenseChain, sparsity: float) -> DenseChain:
    pruned = chain.copy()
    for i in range(len(pruned.layers) - 1):
        layer, nxt = pruned.layers[i], pruned.layers[i + 1]
        width = layer.weight.shape[1]
        keep_n = max(1, width - math.floor(width * sparsity))
        score = np.linalg.norm(layer.weight, axis=0) * np.linalg.norm(nxt.weight, axis=1)
        keep = np.sort(np.argsort(score)[::-1][:keep_n])
        layer.weight, layer.bias = layer.weight[:, keep].copy(), layer.bias[keep].copy()
        nxt.weight = nxt.weight[keep, :].copy()
    return pruned


def fine_tune(chain: DenseChain, ctx: RecipeContext, masks=None) -> str | None:
    data = ctx.data
    if data is None or data.train_inputs is None or data.train_labels is None:
        return None
    epochs = ctx.param("fineTuneEpochs", 10, int)
    x = data.train_inputs[chain.input_name].astype(np.float32)
    targets = one_hot(data.train_labels, chain.widths[-1])
    log.info("fine-tuning the pruned model for %d epochs on %d training rows", epochs, len(x))
    chain.train(x, targets, epochs=epochs, lr=ctx.param("lr", 5e-4, float), masks=masks,
                on_epoch=lambda e, loss: log.info("  fine-tune epoch %d/%d loss %.4f", e + 1, epochs, loss) if (e + 1) % 5 == 0 or e + 1 == epochs else None)
    return f"fine-tuned {epochs} epochs on {len(x)} training rows"


def apply(model: Path, ctx: RecipeContext) -> RecipeResult:
    sparsity = ctx.param("sparsity", 0.5, float)
    if not 0 < sparsity < 1:
        raise RecipeError(f"sparsity must be between 0 and 1, got {sparsity}")
    method = ctx.param("method", "structured")
    proto = onnx.load(str(model))
    out = ctx.out_path("prune")
    if method == "structured":
        try:
            chain = DenseChain.from_onnx(proto)
        except NotADenseChain as exc:
            raise RecipeError(f"structured pruning removes neurons of dense chains (MLPs): {exc}; use parameter method=magnitude for other graphs") from None
        pruned = structured(chain, sparsity)
        log.info("structured pruning: hidden widths %s -> %s", chain.widths[1:-1], pruned.widths[1:-1])
        notes = [f"structured prune {sparsity:.0%} of hidden neurons: widths {chain.widths} -> {pruned.widths}, parameters {chain.parameter_count} -> {pruned.parameter_count}"]
        if tuned := fine_tune(pruned, ctx):
            notes.append(tuned)
        onnx.save(pruned.to_onnx(), str(out))
        return RecipeResult(out, notes)
    if method == "magnitude":
        return RecipeResult(_magnitude(proto, sparsity, out, ctx), [
            f"magnitude prune: {sparsity:.0%} of each MatMul/Gemm weight set to zero; a dense ONNX file and dense kernels do not get smaller or faster from zeros"
        ])
    raise RecipeError(f"prune method {method!r}: use structured or magnitude")


def _magnitude(proto: onnx.ModelProto, sparsity: float, out: Path, ctx: RecipeContext) -> Path:
    try:
        chain = DenseChain.from_onnx(proto)
    except NotADenseChain:
        chain = None
    if chain is not None:
        masks = []
        for layer in chain.layers:
            threshold = np.quantile(np.abs(layer.weight), sparsity)
            mask = (np.abs(layer.weight) > threshold).astype(np.float32)
            layer.weight *= mask
            masks.append(mask)
        fine_tune(chain, ctx, masks)
        onnx.save(chain.to_onnx(), str(out))
        return out
    weights = {n.input[1] for n in proto.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1}
    for init in proto.graph.initializer:
        if init.name in weights and init.data_type == onnx.TensorProto.FLOAT and len(init.dims) == 2:
            w = numpy_helper.to_array(init)
            w = np.where(np.abs(w) > np.quantile(np.abs(w), sparsity), w, 0).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(proto, str(out))
    return out
