"""Read the input model: an .onnx file, a folder holding one, or a BERT sentence-encoder folder
(config.json + model.safetensors + tokenizer.json, as sentence-transformers ships it), which is
exported to ONNX first. Also reads the tensor signature from the ONNX graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx

from inferops.api.tensors import Signature, TensorSpec

ONNX_TO_TRITON = {
    onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.FLOAT16: "FP16", onnx.TensorProto.DOUBLE: "FP64",
    onnx.TensorProto.BFLOAT16: "BF16", onnx.TensorProto.INT8: "INT8", onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.INT16: "INT16", onnx.TensorProto.INT32: "INT32", onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.BOOL: "BOOL", onnx.TensorProto.STRING: "BYTES",
}


class ModelError(ValueError):
    """The model cannot be read; the message says what was found."""


@dataclass
class LoadedModel:
    onnx_path: Path
    tokenizer: Path | None = None
    notes: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)


def check_onnx(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelError(f"{path.name} is not a valid ONNX model: {str(exc).splitlines()[0][:300]}") from None
    return model


def load_model(fetched: Path, workdir: Path) -> LoadedModel:
    if fetched.is_file():
        if fetched.suffix in (".pt", ".pth", ".bin", ".ckpt"):
            raise ModelError(f"{fetched.name}: PyTorch weights need the torch extra, not in this build; export the model to ONNX first")
        check_onnx(fetched)
        return LoadedModel(fetched)
    from .bert_export import export_folder, is_bert_folder

    onnx_files = sorted(fetched.glob("*.onnx"))
    if len(onnx_files) == 1:
        check_onnx(onnx_files[0])
        tok = fetched / "tokenizer.json"
        return LoadedModel(onnx_files[0], tok if tok.is_file() else None)
    if is_bert_folder(fetched):
        out = export_folder(fetched, workdir / "exported.onnx")
        check_onnx(out)
        tok = fetched / "tokenizer.json"
        return LoadedModel(out, tok if tok.is_file() else None, ["exported from safetensors to ONNX (BERT encoder + mean pooling + L2 normalize, torch-free)"], ["export-onnx"])
    found = sorted(p.name for p in fetched.iterdir())[:20]
    raise ModelError(f"no model found: expected an .onnx file, a folder with one .onnx file, or a BERT safetensors folder; found {found}")


def _dims(value_info) -> list[int]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else -1 for d in dims]


def read_signature(model: onnx.ModelProto) -> tuple[Signature, bool]:
    """The signature without the batch dimension, and whether the first dimension is a free batch axis."""
    inits = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in inits]
    all_dims = [_dims(v) for v in [*graph_inputs, *model.graph.output]]
    batched = all(d and d[0] == -1 for d in all_dims)

    def spec(v) -> TensorSpec:
        dims = _dims(v)
        return TensorSpec(name=v.name, datatype=ONNX_TO_TRITON.get(v.type.tensor_type.elem_type, "FP32"), dims=dims[1:] if batched else dims)

    return Signature(inputs=[spec(v) for v in graph_inputs], outputs=[spec(v) for v in model.graph.output]), batched
