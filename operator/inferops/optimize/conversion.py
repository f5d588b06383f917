"""What every framework conversion shares: the ONNX check, the report of the conversion, and the
fidelity check of the export against the original model before any recipe runs.

A conversion that changed the outputs (a wrong op, a frozen shape) would otherwise become the
"original" the accuracy gate trusts, and every later number would be measured against it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from inferops.api.report import ConversionReport

from .context import log
from .model_io import LoadedModel, ModelError, check_onnx, read_signature

# float32 export vs the original: differences are rounding (1e-6 here); 1e-3 of the output's range
# catches a real change (a wrong op, a frozen shape) without failing on reordered sums.
MAX_REL_DIFF = 1e-3
FIDELITY_ROWS = 256

# The original model on a chunk of rows: input name -> array in, outputs in the ONNX graph's order out.
RunOriginal = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


def finish(
    out: Path, fmt: str, tool: str, versions: dict[str, str], started: float, opset: int,
    input_names: list[str], run_original: RunOriginal, notes: list[str] | None = None, ref_batch: int | None = None,
) -> LoadedModel:
    """Check the ONNX file, describe the conversion, and return the model with its fidelity check.

    ref_batch: the original's own fixed batch, if it has one (it is then fed in pieces of that size)."""
    model = check_onnx(out)
    _, batched = read_signature(model)
    seconds = time.monotonic() - started
    notes = list(notes or [])
    conversion = ConversionReport(fromFormat=fmt, tool=tool, toolVersions=versions, seconds=round(seconds, 3), dynamicBatch=batched)
    with_versions = ", ".join(f"{k} {v}" for k, v in versions.items())
    notes.insert(0, f"converted {fmt} to ONNX with {with_versions} ({tool}, opset {opset}) in {seconds:.1f}s; batch dimension {'free' if batched else 'fixed'}")
    log.info("%s", notes[0])

    def check_fidelity(feeds: dict, source: str) -> None:
        import onnxruntime as ort

        rows = min(FIDELITY_ROWS, len(next(iter(feeds.values()))))
        step = 64 if batched else (ref_batch or rows)
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        max_abs, max_ref = 0.0, 0.0
        for i in range(0, rows, step):
            chunk = {k: np.ascontiguousarray(feeds[k][i : i + step]) for k in input_names}
            refs = _in_pieces(run_original, chunk, ref_batch)
            got = sess.run(None, chunk)
            if len(refs) != len(got):
                raise ModelError(f"the ONNX export of the {fmt} model has {len(got)} outputs, the original {len(refs)}")
            for r, g in zip(refs, got):
                if r.shape != g.shape:
                    raise ModelError(f"the ONNX export of the {fmt} model answers with shape {list(g.shape)} where the original gives {list(r.shape)}")
                max_abs = max(max_abs, float(np.max(np.abs(r.astype(np.float64) - g))))
                max_ref = max(max_ref, float(np.max(np.abs(r))))
        rel = max_abs / max(max_ref, 1e-12)
        conversion.fidelity_rows, conversion.fidelity_source = rows, source
        conversion.max_abs_diff, conversion.max_rel_diff = max_abs, rel
        log.info("ONNX export vs %s on %d rows of %s: max |diff| %.3g (%.3g of the output's range)", fmt, rows, source, max_abs, rel)
        if rel > MAX_REL_DIFF:
            raise ModelError(f"the ONNX export of the {fmt} model differs from the original by {rel:.3g} of the output's range on {rows} rows of {source} (limit {MAX_REL_DIFF}); nothing was optimized")

    return LoadedModel(out, notes=notes, steps=[f"convert-{fmt}-onnx"], conversion=conversion, check_fidelity=check_fidelity)


def _in_pieces(run_original: RunOriginal, chunk: dict[str, np.ndarray], batch: int | None) -> list[np.ndarray]:
    """The original's outputs, in pieces of its fixed batch when it has one."""
    rows = len(next(iter(chunk.values())))
    size = batch or rows
    pieces = [run_original({k: v[i : i + size] for k, v in chunk.items()}) for i in range(0, rows, size)]
    return [np.concatenate(parts) for parts in zip(*pieces)]


def conversion_error(fmt: str, name: str, exc: BaseException) -> ModelError:
    """A model the framework cannot load or convert: say so in one line (the Job exits 2)."""
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return ModelError(f"format {fmt}: {name} could not be converted to ONNX: {type(exc).__name__}: {first}")
