"""TensorFlow in (the tensorflow extra): a Keras 3 .keras file or a SavedModel, converted to ONNX
with tf2onnx.

* keras: keras.saving.load_model in safe mode (a .keras file whose config asks to deserialize
  Python code, a Lambda layer's bytecode, is refused, as pickled torch modules are), then traced
  as a tf.function whose input signature leaves the batch dimension free, then tf2onnx.
* savedmodel: a folder holding saved_model.pb (or a .tar.gz of one), its `serving_default`
  signature (else its first) frozen and converted by tf2onnx, the signature's names kept.

The spec's model.inputs / outputs, where given, rename the tensors in the order the model lists
them. The pipeline then compares the export with the original (conversion.finish) before any recipe.
"""

from __future__ import annotations

import os
import tarfile
import time
from pathlib import Path

import numpy as np

from inferops.api.tensors import Signature

from .conversion import conversion_error, finish
from .model_io import LoadedModel, ModelError

# tf2onnx 1.17 converts up to opset 18; 17 is what its tests cover best and ORT quantizes well.
OPSET = 17
SIGNATURE = "serving_default"


def _quiet_tensorflow():
    """Import TensorFlow without its C++ INFO lines on every start (they drown the Job's log)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def saved_model_dir(fetched: Path, workdir: Path) -> Path:
    """The folder holding saved_model.pb: the fetched folder (or its one subfolder that holds it),
    or what a .tar.gz unpacks to (only regular files and folders, nothing outside the target)."""
    if fetched.is_file():
        if not tarfile.is_tarfile(fetched):
            raise ModelError(f"format savedmodel: {fetched.name} is neither a SavedModel folder nor a .tar.gz of one")
        target = workdir / "savedmodel"
        with tarfile.open(fetched) as tar:
            tar.extractall(target, members=_safe_members(tar, fetched.name), **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        fetched = target
    candidates = [fetched] if (fetched / "saved_model.pb").is_file() else sorted(p.parent for p in fetched.rglob("saved_model.pb"))
    if len(candidates) != 1:
        found = sorted(p.name for p in fetched.iterdir())[:20]
        raise ModelError(f"format savedmodel: expected one SavedModel (a folder with saved_model.pb), found {len(candidates)} among {found}")
    return candidates[0]


def _safe_members(tar: tarfile.TarFile, name: str) -> list[tarfile.TarInfo]:
    """Regular files and folders inside the target only. Python's "data" filter says the same where
    it exists (3.11.4+); Debian bookworm's python3.11, the images' Python, may predate it."""
    members = tar.getmembers()
    for m in members:
        parts = Path(m.name).parts
        if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in parts:
            raise ModelError(f"format savedmodel: {name} holds {m.name!r}, which is not a plain file or folder inside the archive; refused")
    return members


def is_saved_model_archive(path: Path) -> bool:
    """Whether a .tar.gz holds a saved_model.pb (read from its index; nothing is unpacked)."""
    try:
        with tarfile.open(path) as tar:
            return any(m.name.rsplit("/", 1)[-1] == "saved_model.pb" for m in tar.getmembers())
    except (tarfile.TarError, OSError):
        return False


def _renamed(names: list[str], wanted: list[str], what: str) -> dict[str, str]:
    if not wanted or wanted == names:
        return {}
    if len(wanted) != len(names):
        raise ModelError(f"the spec names {len(wanted)} {what} ({', '.join(wanted)}), the model has {len(names)} ({', '.join(names)})")
    return dict(zip(names, wanted))


def _rename(model, mapping: dict[str, str]) -> None:
    """Rename graph inputs/outputs (and every use of them) in an ONNX model, in place."""
    for value in [*model.graph.input, *model.graph.output]:
        value.name = mapping.get(value.name, value.name)
    for node in model.graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]


def _convert_keras(path: Path, tf, hint: Signature):
    import keras
    import tf2onnx

    try:
        km = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "unsafe" in str(exc).lower():
            raise ModelError(f"format keras: {path.name} asks to deserialize Python code (a Lambda layer?), which runs arbitrary code, so it is refused; replace it with a registered custom layer") from None
        raise
    if not getattr(km, "inputs", None):
        raise ModelError(f"format keras: {path.name} records no inputs (a subclassed model never called?); save a functional or Sequential model, or call it once before saving")
    # The spec's names, where given, in the order the model lists its tensors (the counts must agree).
    model_names = [t.name for t in km.inputs]
    in_names = [t.name for t in hint.inputs] if hint.inputs else model_names
    _renamed(model_names, in_names, "inputs")
    specs = [tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=n) for t, n in zip(km.inputs, in_names)]
    outputs = km.outputs if isinstance(km.outputs, (list, tuple)) else [km.outputs]
    default_out = [f"output_{i}" for i in range(len(outputs))]  # as a SavedModel's serving_default says
    out_names = [t.name for t in hint.outputs] if hint.outputs else default_out
    _renamed(default_out, out_names, "outputs")

    def call(*args):
        result = km(list(args) if len(args) > 1 else args[0], training=False)
        result = result if isinstance(result, (list, tuple)) else [result]
        return dict(zip(out_names, result))

    fn = tf.function(call, input_signature=specs)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=specs, opset=OPSET)

    def run(chunk: dict[str, np.ndarray]) -> list[np.ndarray]:
        got = fn(*[tf.constant(chunk[n]) for n in in_names])
        return [got[n].numpy() for n in [o.name for o in proto.graph.output]]

    return proto, in_names, run, "keras.saving.load_model + tf.function, tf2onnx.convert.from_function", {"keras": keras.__version__}


def _convert_saved_model(folder: Path, tf, hint: Signature):
    import tf2onnx
    from tf2onnx import tf_loader

    imported = tf.saved_model.load(str(folder))
    usable = [s for s in imported.signatures.keys() if not s.startswith("_")]
    if not usable:
        raise ModelError("format savedmodel: the SavedModel has no signatures to serve (export it with model.export() or tf.saved_model.save(..., signatures=...))")
    signature = SIGNATURE if SIGNATURE in usable else usable[0]
    graph_def, inputs, outputs, tensors_to_rename = tf_loader.from_saved_model(
        str(folder), None, None, tag=["serve"], signatures=[signature], return_tensors_to_rename=True,
    )
    proto, _ = tf2onnx.convert.from_graph_def(graph_def, name=signature, input_names=inputs, output_names=outputs, opset=OPSET, tensors_to_rename=tensors_to_rename)
    fn = imported.signatures[signature]
    onnx_in = [i.name for i in proto.graph.input]
    onnx_out = [o.name for o in proto.graph.output]
    renames = {**_renamed(onnx_in, [t.name for t in hint.inputs], "inputs"), **_renamed(onnx_out, [t.name for t in hint.outputs], "outputs")}
    back = {v: k for k, v in renames.items()}  # the spec's names -> the signature's
    _rename(proto, renames)
    in_names = [i.name for i in proto.graph.input]

    def run(chunk: dict[str, np.ndarray]) -> list[np.ndarray]:
        got = fn(**{back.get(n, n): tf.constant(a) for n, a in chunk.items()})
        return [got[back.get(o.name, o.name)].numpy() for o in proto.graph.output]

    return proto, in_names, run, f"tf2onnx.tf_loader.from_saved_model ({signature}) + tf2onnx.convert.from_graph_def", {}


def convert(fetched: Path, fmt: str, workdir: Path, hint: Signature) -> LoadedModel:
    import onnx

    tf = _quiet_tensorflow()
    import tf2onnx

    started = time.monotonic()
    out = workdir / "exported.onnx"
    name = fetched.name
    try:
        with tf.device("/cpu:0"):
            if fmt == "keras":
                proto, in_names, run, tool, extra_versions = _convert_keras(fetched, tf, hint)
            else:
                proto, in_names, run, tool, extra_versions = _convert_saved_model(saved_model_dir(fetched, workdir), tf, hint)
        onnx.save(proto, str(out))
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - a model TensorFlow cannot load or tf2onnx cannot convert: exit 2
        raise conversion_error(fmt, name, exc) from None
    versions = {"tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__, **extra_versions}
    return finish(out, fmt, tool, versions, started, OPSET, in_names, run)
