"""PyTorch in (the torch extra): a TorchScript archive or a torch.export .pt2, converted to ONNX.

* torchscript: torch.jit.load, then the TorchScript-based exporter (the torch.export one cannot
  take a ScriptModule). An archive records no input shapes, so the spec's model.inputs say them.
* pytorch (.pt2): torch.export.load, then the torch.export-based exporter, which keeps the
  program's dynamic dimensions. A program exported with a fixed batch is exported again from its
  module with a free batch dimension; where that fails the batch stays fixed, and the report says so.

Either way the batch (first) dimension is left free, and the pipeline then compares the export
with the original on the eval rows (or generated inputs) before any recipe runs: a conversion
that changed the outputs would otherwise become the "original" the accuracy gate trusts.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from inferops.api.report import ConversionReport
from inferops.api.tensors import Signature, TensorSpec

from .context import log
from .model_io import LoadedModel, ModelError, check_onnx, read_signature

OPSET = 18
# float32 export vs the original: differences are rounding (1e-6 here); 1e-3 of the output's range
# catches a real change (a wrong op, a frozen shape) without failing on reordered sums.
MAX_REL_DIFF = 1e-3
FIDELITY_ROWS = 256
TORCH_TO_TRITON = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "bfloat16": "BF16", "int64": "INT64", "int32": "INT32", "int8": "INT8", "uint8": "UINT8", "bool": "BOOL"}
TRITON_TO_NUMPY = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32, "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_}


def _example(spec: TensorSpec, batch: int):
    import torch

    shape = [batch] + [16 if d == -1 else d for d in spec.dims]
    dtype = TRITON_TO_NUMPY.get(spec.datatype, np.float32)
    if np.issubdtype(dtype, np.floating):
        return torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(dtype))
    return torch.zeros(shape, dtype=torch.from_numpy(np.zeros(1, dtype)).dtype)


def _output_names(hint: Signature, count: int) -> list[str]:
    if hint.outputs:
        return [t.name for t in hint.outputs]
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def _ep_inputs(ep) -> list[TensorSpec]:
    """The user inputs of an ExportedProgram, from its placeholders' fake tensors."""
    user = set(ep.graph_signature.user_inputs)
    specs = []
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            val = node.meta.get("val")
            if val is None or not hasattr(val, "shape"):
                raise ModelError(f"format pytorch: input {node.name} is not a tensor; only tensor inputs can become a Triton model")
            dims = [d if isinstance(d, int) else -1 for d in val.shape]
            specs.append(TensorSpec(name=node.name, datatype=TORCH_TO_TRITON.get(str(val.dtype).removeprefix("torch."), "FP32"), dims=dims[1:]))
    return specs


def _dynamic_batch(ep) -> bool:
    user = set(ep.graph_signature.user_inputs)
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            val = node.meta.get("val")
            if val is None or not val.shape or isinstance(val.shape[0], int):
                return False
    return True


def _first_batch(ep) -> int:
    user = set(ep.graph_signature.user_inputs)
    return next(int(n.meta["val"].shape[0]) for n in ep.graph.nodes if n.op == "placeholder" and n.name in user)


def _run_original(original, arrays: list[np.ndarray], batch: int | None) -> list[np.ndarray]:
    """The original's outputs, in pieces of its fixed batch when it has one."""
    import torch

    rows = len(arrays[0])
    size = batch or rows
    pieces: list[list[np.ndarray]] = []
    for i in range(0, rows, size):
        out = original(*[torch.from_numpy(np.ascontiguousarray(a[i : i + size])) for a in arrays])
        pieces.append([o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out])])
    return [np.concatenate(parts) for parts in zip(*pieces)]


def convert(path: Path, fmt: str, workdir: Path, hint: Signature) -> LoadedModel:
    import torch

    started = time.monotonic()
    out = workdir / "exported.onnx"
    ref_batch: int | None = None  # the original's fixed batch, if it has one
    notes: list[str] = []
    try:
        if fmt == "torchscript":
            if not hint.inputs:
                raise ModelError("format torchscript: a TorchScript archive does not record its input shapes; give spec.model.inputs (name, datatype, dims without the batch dimension)")
            module = torch.jit.load(str(path), map_location="cpu").eval()
            inputs = hint.inputs
            with torch.no_grad():
                probe = module(*[_example(t, 2) for t in inputs])
            count = len(probe) if isinstance(probe, (tuple, list)) else 1
            outputs = _output_names(hint, count)
            names = [t.name for t in inputs]
            torch.onnx.export(
                module, tuple(_example(t, 2) for t in inputs), str(out), input_names=names, output_names=outputs,
                dynamic_axes={n: {0: "batch"} for n in [*names, *outputs]}, opset_version=OPSET, dynamo=False,
            )
            tool, original = "torch.onnx.export (TorchScript exporter)", module
        else:
            ep = torch.export.load(str(path))
            inputs = hint.inputs or _ep_inputs(ep)
            original = ep.module()
            if not _dynamic_batch(ep):
                # The fidelity check still compares with this program, at its own batch size.
                ref_batch = _first_batch(ep)
                try:
                    # Without the shape guards: the re-export decides whether the batch can vary.
                    module = ep.module(check_guards=False)
                    batch = torch.export.Dim("batch", min=1, max=4096)
                    ep = torch.export.export(module, tuple(_example(t, 2) for t in inputs), dynamic_shapes=tuple({0: batch} for _ in inputs))
                    notes.append("the program had a fixed batch; exported again from its module with a free batch dimension")
                except Exception as exc:  # noqa: BLE001 - torch raises many kinds; the batch then stays fixed
                    notes.append(f"the program has a fixed batch and could not be exported with a free one ({type(exc).__name__}); the batch stays fixed")
            count = len(ep.graph_signature.user_outputs)
            outputs = _output_names(hint, count)
            program = torch.onnx.export(ep, (), input_names=[t.name for t in inputs], output_names=outputs, opset_version=OPSET, dynamo=True, verbose=False)
            program.save(str(out))
            tool = "torch.onnx.export (torch.export exporter)"
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - a model torch cannot load or export: say so, exit 2
        raise ModelError(f"format {fmt}: {path.name} could not be converted to ONNX: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}") from None
    model = check_onnx(out)
    _, batched = read_signature(model)
    seconds = time.monotonic() - started
    versions = {"torch": torch.__version__}
    try:
        import onnxscript

        versions["onnxscript"] = onnxscript.__version__
    except ImportError:
        pass
    conversion = ConversionReport(fromFormat=fmt, tool=tool, toolVersions=versions, seconds=round(seconds, 3), dynamicBatch=batched)
    notes.insert(0, f"converted {fmt} to ONNX with torch {torch.__version__} ({tool}, opset {OPSET}) in {seconds:.1f}s; batch dimension {'free' if batched else 'fixed'}")
    log.info("%s", notes[0])
    input_names = [t.name for t in inputs]

    def check_fidelity(feeds: dict, source: str) -> None:
        import onnxruntime as ort

        rows = min(FIDELITY_ROWS, len(next(iter(feeds.values()))))
        step = 64 if batched else (ref_batch or rows)
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        max_abs, max_ref = 0.0, 0.0
        with torch.no_grad():
            for i in range(0, rows, step):
                chunk = {k: np.ascontiguousarray(feeds[k][i : i + step]) for k in input_names}
                refs = _run_original(original, [chunk[k] for k in input_names], ref_batch)
                got = sess.run(None, chunk)
                for r, g in zip(refs, got):
                    max_abs = max(max_abs, float(np.max(np.abs(r.astype(np.float64) - g))))
                    max_ref = max(max_ref, float(np.max(np.abs(r))))
        rel = max_abs / max(max_ref, 1e-12)
        conversion.fidelity_rows, conversion.fidelity_source = rows, source
        conversion.max_abs_diff, conversion.max_rel_diff = max_abs, rel
        log.info("ONNX export vs %s on %d rows of %s: max |diff| %.3g (%.3g of the output's range)", fmt, rows, source, max_abs, rel)
        if rel > MAX_REL_DIFF:
            raise ModelError(f"the ONNX export of the {fmt} model differs from the original by {rel:.3g} of the output's range on {rows} rows of {source} (limit {MAX_REL_DIFF}); nothing was optimized")

    return LoadedModel(out, notes=notes, steps=[f"convert-{fmt}-onnx"], conversion=conversion, check_fidelity=check_fidelity)
