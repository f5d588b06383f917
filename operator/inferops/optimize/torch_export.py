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

from inferops.api.tensors import Signature, TensorSpec

from .conversion import conversion_error, finish
from .model_io import LoadedModel, ModelError

OPSET = 18
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


def _runner(original):
    """The original model as conversion.finish calls it: named arrays in, a list of arrays out."""
    import torch

    def run(chunk: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = original(*[torch.from_numpy(np.ascontiguousarray(a)) for a in chunk.values()])
        return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out])]

    return run


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
        raise conversion_error(fmt, path.name, exc) from None
    versions = {"torch": torch.__version__}
    try:
        import onnxscript

        versions["onnxscript"] = onnxscript.__version__
    except ImportError:
        pass
    return finish(out, fmt, tool, versions, started, OPSET, [t.name for t in inputs], _runner(original), notes, ref_batch)
