"""fp16: weights and compute in half precision, inputs and outputs kept FP32 (for GPU classes).

On a CPU-only machine the converted model is still evaluated (ONNX Runtime's CPU kernels run
it, slowly), so the accuracy gate holds; its CPU latency is no guide to GPU latency.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from .context import RecipeContext, RecipeResult, log


def apply(model: Path, ctx: RecipeContext) -> RecipeResult:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    log.info("converting weights and compute to fp16 (inputs/outputs stay fp32)")
    converted = convert_float_to_float16(onnx.load(str(model)), keep_io_types=True, disable_shape_infer=True)
    out = ctx.out_path("fp16")
    onnx.save(converted, str(out))
    notes = ["fp16: weights and compute in half precision; inputs/outputs FP32"]
    if not ctx.gpu:
        notes.append("fp16 targets GPUs; the CPU latency reported here is not representative")
    return RecipeResult(out, notes, instance_kind="KIND_GPU")
