"""One catalogue of the recipes and model formats: what each needs, whether it changes the model's
numbers, where it runs, and which optional extra of the optimizer it takes.

The CRD (recipe and format enums, descriptions), the admission webhook, the core (the Job's GPU
request) and the optimizer (modules, the accuracy gate, the extra a missing format needs) all read
it, so adding a recipe or a format is one entry here plus its module."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RecipeInfo:
    name: str
    module: str | None  # inferops.optimize.<module>; None for "none"
    lossy: bool  # changes the outputs: the accuracy gate needs eval data
    gpu_only: bool  # refused on KIND_CPU classes
    summary: str
    extra: str | None = None  # optional dependency group of the optimizer it needs


@dataclass(frozen=True)
class FormatInfo:
    name: str
    summary: str
    suffixes: tuple[str, ...]  # file names that say this format when --format is not given
    extra: str | None = None  # optimizer extra that converts it (None: the optimize extra alone)
    converter: str | None = None  # what turns it into ONNX in the Job; None: read as it is
    supported: bool = True  # False: no build of this optimizer can read it
    unsupported_reason: str = ""


RECIPE_CATALOGUE: tuple[RecipeInfo, ...] = (
    RecipeInfo("none", None, False, False, "deploy the model as it is (after any format conversion)"),
    RecipeInfo("quantize-int8-dynamic", "quantize_int8_dynamic", True, False, "int8 weights, activations quantized at run time; accuracyAware=true keeps the most sensitive layers in float"),
    RecipeInfo("quantize-int8-static", "quantize_int8_static", True, False, "int8 weights and calibrated activations (QDQ); accuracyAware=true as above"),
    RecipeInfo("fp16", "fp16", True, True, "float16 weights and activations"),
    RecipeInfo("prune", "prune", True, False, "structured or magnitude pruning, optional fine-tuning"),
    RecipeInfo("distill", "distill", True, False, "train a smaller student on the teacher's outputs"),
    RecipeInfo("tensorrt", "tensorrt", False, True, "ONNX Runtime's TensorRT execution provider"),
)

FORMAT_CATALOGUE: tuple[FormatInfo, ...] = (
    FormatInfo("onnx", "an .onnx file or a folder holding one", (".onnx",)),
    FormatInfo("safetensors", "a BERT-style encoder folder (config.json + model.safetensors + tokenizer.json), exported to ONNX without torch", (".safetensors",), converter="inferops BERT exporter"),
    FormatInfo("torchscript", "a TorchScript archive (torch.jit.save), converted to ONNX in the Job", (".ts", ".torchscript"), extra="torch", converter="torch.onnx.export"),
    FormatInfo("pytorch", "a torch.export ExportedProgram archive (.pt2, torch.export.save), converted to ONNX in the Job; pickled nn.Modules are refused", (".pt2",), extra="torch", converter="torch.onnx.export (dynamo)"),
    FormatInfo("savedmodel", "a TensorFlow SavedModel folder (saved_model.pb + variables/) or a .tar.gz of one, converted to ONNX in the Job from its serving_default signature", (".savedmodel", ".savedmodel.tar.gz"), extra="tensorflow", converter="tf2onnx"),
    FormatInfo("keras", "a Keras 3 .keras file (model.save), loaded in safe mode and converted to ONNX in the Job", (".keras",), extra="tensorflow", converter="tf2onnx"),
    FormatInfo(
        "tensorrt-plan", "a serialized TensorRT engine", (".plan", ".engine"), supported=False,
        unsupported_reason="a TensorRT plan is already compiled for one GPU and TensorRT version: the optimizer cannot read, measure or convert it; give the ONNX model it was built from (the tensorrt recipe compiles for the class's GPUs)",
    ),
)

RECIPES_BY_NAME = {r.name: r for r in RECIPE_CATALOGUE}
FORMATS_BY_NAME = {f.name: f for f in FORMAT_CATALOGUE}
RECIPE_NAMES: tuple[str, ...] = tuple(RECIPES_BY_NAME)
FORMAT_NAMES: tuple[str, ...] = tuple(FORMATS_BY_NAME)


def format_from_name(filename: str) -> str | None:
    lowered = filename.lower()
    for info in FORMAT_CATALOGUE:
        if lowered.endswith(info.suffixes):
            return info.name
    return None


# What each optional extra is, for a build that lacks it to say so (install_hint).
EXTRA_FRAMEWORKS = {"torch": "PyTorch", "tensorflow": "TensorFlow (tf2onnx)"}


def format_extra(fmt: str | None, uri: str = "") -> str | None:
    """The optimizer extra a model needs: from the spec's format, else from the URI's file name
    (a folder named by neither is read by the default build, which says what it found)."""
    info = FORMATS_BY_NAME.get(fmt or "") or FORMATS_BY_NAME.get(format_from_name(uri.split("?", 1)[0].rstrip("/")) or "")
    return info.extra if info else None


def install_hint(extra: str) -> str:
    return (
        f"pip install 'inferops[optimize,{extra}]'; in a cluster the operator runs such a Job in the optimizer-{extra} image "
        f"(the chart's operator.optimizerImages.{extra}) when spec.model.format (or the file name) says the format, or set spec.optimization.image"
    )
