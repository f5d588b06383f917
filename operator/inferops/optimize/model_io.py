"""Read the input model in the format the spec names (or the file's name or content says): an .onnx
file or a folder holding one; a BERT sentence-encoder folder (config.json + model.safetensors +
tokenizer.json, as sentence-transformers ships it), exported to ONNX without torch; a TorchScript
archive or a torch.export .pt2, converted with the torch extra (torch_export.py). Also reads the
tensor signature from the ONNX graph. What each format needs is in api/catalogue.py."""

from __future__ import annotations

import importlib.util
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import onnx

from inferops.api.catalogue import EXTRA_FRAMEWORKS, FORMATS_BY_NAME, format_from_name, install_hint
from inferops.api.report import ConversionReport
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
    conversion: ConversionReport | None = None
    # Compares the converted ONNX with the original on these inputs (and says where they came
    # from); raises ModelError past the tolerance. Run by the pipeline once the eval data is read.
    check_fidelity: Callable[[dict, str], None] | None = None


def check_onnx(path: Path) -> onnx.ModelProto:
    try:
        # By path: the checker then reads external data files itself (a loaded model over 2 GB cannot be checked).
        onnx.checker.check_model(str(path))
        model = onnx.load(str(path))
    except Exception as exc:
        raise ModelError(f"{path.name} is not a valid ONNX model: {str(exc).splitlines()[0][:300]}") from None
    return model


PICKLE_REFUSED = (
    "is a pickled PyTorch object (torch.save): loading it runs arbitrary code, so it is refused. Save a TorchScript "
    "archive (torch.jit.script/trace + torch.jit.save; format torchscript) or a torch.export program "
    "(torch.export.export + torch.export.save, a .pt2; format pytorch)"
)


def _torch_archive_kind(path: Path) -> str:
    """torchscript, pytorch (.pt2) or pickle, from the archive's entries; never unpickles anything."""
    if not zipfile.is_zipfile(path):
        return "pickle"
    names = zipfile.ZipFile(path).namelist()
    if any(n.endswith("serialized_exported_program.json") or n.endswith("/archive_format") or n == "archive_format" for n in names) or any("/models/" in n and n.endswith(".json") for n in names):
        return "pytorch"
    if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
        return "torchscript"
    return "pickle"


def detect_format(path: Path) -> str:
    """The format a file or folder says by its name or content; ModelError when it says none."""
    if path.is_dir():
        from .bert_export import is_bert_folder

        if len(list(path.glob("*.onnx"))) == 1:
            return "onnx"
        if is_bert_folder(path):
            return "safetensors"
        if (path / "saved_model.pb").is_file() or len(list(path.glob("*/saved_model.pb"))) == 1:
            return "savedmodel"
        keras_files = list(path.glob("*.keras"))
        if len(keras_files) == 1:
            return "keras"
        files = [p for p in path.iterdir() if p.is_file() and p.suffix in (".pt2", ".pt", ".pth", ".ts", ".torchscript")]
        if len(files) == 1:
            return detect_format(files[0])
        found = sorted(p.name for p in path.iterdir())[:20]
        raise ModelError(f"no model found: expected an .onnx file, a folder with one .onnx file, a BERT safetensors folder, a TorchScript archive, a .pt2, a SavedModel or a .keras file; found {found}")
    named = format_from_name(path.name)
    if named:
        return named
    if path.name.lower().endswith((".tar.gz", ".tgz")):
        from .tf_export import is_saved_model_archive

        if is_saved_model_archive(path):
            return "savedmodel"
        raise ModelError(f"{path.name} is an archive without a saved_model.pb; InferOps reads .tar.gz archives of SavedModels only")
    if path.suffix in (".pt", ".pth", ".bin", ".ckpt", ".pkl"):
        kind = _torch_archive_kind(path)
        if kind == "pickle":
            raise ModelError(f"{path.name} {PICKLE_REFUSED}")
        return kind
    return "onnx"


# The module each optional extra brings; a build has the extra when the module can be found.
EXTRA_MODULES = {"torch": ("torch",), "tensorflow": ("tensorflow", "tf2onnx")}


def has_extra(extra: str) -> bool:
    if extra == "torch":
        return has_torch()  # kept apart: tests stand in a build without torch by patching it
    return all(importlib.util.find_spec(m) is not None for m in EXTRA_MODULES.get(extra, ()))


def has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def require_format(fmt: str) -> None:
    """Refuse at once a format no build reads, or one whose extra this build lacks."""
    info = FORMATS_BY_NAME.get(fmt)
    if info is None:
        raise ModelError(f"unknown model format {fmt!r}; known: {', '.join(FORMATS_BY_NAME)}")
    if not info.supported:
        raise ModelError(f"format {fmt}: {info.unsupported_reason}")
    if info.extra and not has_extra(info.extra):
        framework = EXTRA_FRAMEWORKS.get(info.extra, info.extra)
        raise ModelError(f"format {fmt} is converted to ONNX with {framework}, which this optimizer build does not have: {install_hint(info.extra)}")


def _model_file(fetched: Path, fmt: str) -> Path:
    if fetched.is_file():
        return fetched
    suffixes = {"torchscript": (".pt", ".pth", ".ts", ".torchscript"), "pytorch": (".pt2", ".pt")}[fmt]
    files = [p for p in fetched.iterdir() if p.is_file() and p.suffix in suffixes]
    if len(files) != 1:
        raise ModelError(f"format {fmt}: expected one model file ({', '.join(suffixes)}) in the folder, found {sorted(p.name for p in fetched.iterdir())[:20]}")
    return files[0]


def _keras_file(fetched: Path) -> Path:
    if fetched.is_file():
        return fetched
    files = sorted(fetched.glob("*.keras"))
    if len(files) != 1:
        raise ModelError(f"format keras: expected one .keras file in the folder, found {sorted(p.name for p in fetched.iterdir())[:20]}")
    return files[0]


def load_model(fetched: Path, workdir: Path, fmt: str | None = None, hint: Signature | None = None) -> LoadedModel:
    detected = detect_format(fetched) if fmt is None or fetched.is_file() else None
    if fmt and detected and detected != fmt and not (fmt in ("torchscript", "pytorch") and detected in ("torchscript", "pytorch")):
        raise ModelError(f"the spec says format {fmt}, but {fetched.name} looks like {detected}; fix spec.model.format or the file")
    fmt = fmt or detected
    assert fmt is not None
    require_format(fmt)
    if fmt in ("torchscript", "pytorch"):
        path = _model_file(fetched, fmt)
        if path.suffix != ".pt2" and _torch_archive_kind(path) == "pickle":
            raise ModelError(f"{path.name} {PICKLE_REFUSED}")
        from .torch_export import convert

        return convert(path, fmt, workdir, hint or Signature())
    if fmt in ("keras", "savedmodel"):
        from .tf_export import convert as convert_tf

        return convert_tf(_keras_file(fetched) if fmt == "keras" else fetched, fmt, workdir, hint or Signature())
    if fetched.is_file():
        check_onnx(fetched)
        return LoadedModel(fetched)
    from .bert_export import export_folder, is_bert_folder

    onnx_files = sorted(fetched.glob("*.onnx"))
    if fmt == "onnx" and len(onnx_files) == 1:
        check_onnx(onnx_files[0])
        tok = fetched / "tokenizer.json"
        return LoadedModel(onnx_files[0], tok if tok.is_file() else None)
    if fmt == "safetensors" and is_bert_folder(fetched):
        out = export_folder(fetched, workdir / "exported.onnx")
        check_onnx(out)
        tok = fetched / "tokenizer.json"
        return LoadedModel(out, tok if tok.is_file() else None, ["exported from safetensors to ONNX (BERT encoder + mean pooling + L2 normalize, torch-free)"], ["export-onnx"])
    found = sorted(p.name for p in fetched.iterdir())[:20]
    raise ModelError(f"format {fmt}: no such model in the folder (one .onnx file, or a BERT safetensors folder); found {found}")


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
