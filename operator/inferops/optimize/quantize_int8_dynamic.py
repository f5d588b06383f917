"""quantize-int8-dynamic: int8 weights, activations quantized at run time (ONNX Runtime's quantizer).

Per-channel weight scales by default (parameter perChannel): on all-MiniLM-L6-v2 per-tensor
scales lost several points of cosine similarity while per-channel kept it above 0.99.
Exact GELUs are then fused into ONNX Runtime's Gelu op (parameter fuseGelu, see fuse.py):
on MiniLM at batch 32 that took 3% off the int8 model's CPU time.
accuracyAware=true: when full int8 breaks the budget, keep the costliest layers in float
(mixed_precision.py).
"""

from __future__ import annotations

from pathlib import Path

from .context import RecipeContext, RecipeResult, log
from .mixed_precision import Quantize, name_nodes, search


def preprocess(model: Path, out: Path) -> Path:
    """ONNX Runtime's basic graph optimizations (constant folding, redundant node removal), saved offline."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(out)
    # No MatMul+Add -> Gemm fusion: ONNX Runtime's quantizer splits a Gemm again under new names,
    # which nodes_to_exclude (accuracyAware) would then no longer match.
    ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"], disabled_optimizers=["MatMulAddFusion"])
    name_nodes(out)
    return out


def quantizer(ctx: RecipeContext) -> tuple[Quantize, str]:
    """The quantize call with this step's parameters, and what it does in words."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    per_channel = ctx.param("perChannel", True, bool)
    reduce_range = ctx.param("reduceRange", False, bool)

    def quantize(pre: Path, out: Path, exclude: list[str], include: list[str] | None) -> None:
        quantize_dynamic(
            str(pre), str(out), weight_type=QuantType.QInt8, per_channel=per_channel, reduce_range=reduce_range,
            nodes_to_exclude=exclude, nodes_to_quantize=include, extra_options={"MatMulConstBOnly": True},
        )

    return quantize, f"int8 dynamic: weights QInt8 {'per-channel' if per_channel else 'per-tensor'}, activations quantized at run time"


def apply(model: Path, ctx: RecipeContext) -> RecipeResult:
    pre = preprocess(model, ctx.workdir / f"step{ctx.step_index}-pre.onnx")
    quantize, summary = quantizer(ctx)
    notes, mixed = [summary], None
    if ctx.param("accuracyAware", False, bool):
        out, mixed, more = search(pre, quantize, ctx, "quantize-int8-dynamic")
        notes += more
    else:
        out = ctx.out_path("int8-dynamic")
        log.info("quantizing weights to int8")
        quantize(pre, out, [], None)
    if ctx.param("fuseGelu", True, bool):
        import onnx

        from .fuse import fuse_gelu

        model = onnx.load(str(out))
        fused = fuse_gelu(model)
        if fused:
            onnx.save(model, str(out))
            notes.append(f"{fused} GELU subgraphs fused into com.microsoft.Gelu")
    return RecipeResult(out, notes, mixed_precision=mixed)
