"""quantize-int8-static: int8 weights and activations, activation ranges calibrated on data (QDQ format).

Calibration rows come from the eval data (`calib_*`, else `train_*`, else the eval rows), at most
`calibrationSamples` (default 256); `calibrationMethod` is MinMax (default), Entropy or Percentile.
accuracyAware=true keeps the costliest layers in float when full int8 breaks the budget.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .context import RecipeContext, RecipeError, RecipeResult, log
from .mixed_precision import search
from .quantize_int8_dynamic import preprocess


class _Reader:
    def __init__(self, inputs: dict[str, np.ndarray], batch: int = 16) -> None:
        rows = len(next(iter(inputs.values())))
        self._batches = iter([{k: v[i : i + batch] for k, v in inputs.items()} for i in range(0, rows, batch)])

    def get_next(self):
        return next(self._batches, None)

    def rewind(self):  # not needed for one pass
        pass


def apply(model: Path, ctx: RecipeContext) -> RecipeResult:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    data = ctx.require_data("quantize-int8-static", "calibration data")
    samples = ctx.param("calibrationSamples", 256, int)
    method_name = ctx.param("calibrationMethod", "MinMax")
    try:
        method = CalibrationMethod[method_name]
    except KeyError:
        raise RecipeError(f"calibrationMethod {method_name!r}: use MinMax, Entropy or Percentile") from None
    calib = data.calibration(samples)
    rows = len(next(iter(calib.values())))
    per_channel = ctx.param("perChannel", True, bool)
    pre = preprocess(model, ctx.workdir / f"step{ctx.step_index}-pre.onnx")

    def quantize(pre: Path, out: Path, exclude: list[str], include: list[str] | None) -> None:
        quantize_static(
            str(pre), str(out), _Reader(calib), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, per_channel=per_channel, calibrate_method=method,
            nodes_to_exclude=exclude, nodes_to_quantize=include,
        )

    notes = [f"int8 static: QDQ, {method.name} calibration on {rows} rows, weights {'per-channel' if per_channel else 'per-tensor'}"]
    if ctx.param("accuracyAware", False, bool):
        out, mixed, more = search(pre, quantize, ctx, "quantize-int8-static")
        return RecipeResult(out, notes + more, mixed_precision=mixed)
    out = ctx.out_path("int8-static")
    log.info("calibrating activation ranges on %d rows (%s), then quantizing to int8 QDQ", rows, method.name)
    quantize(pre, out, [], None)
    return RecipeResult(out, notes)
