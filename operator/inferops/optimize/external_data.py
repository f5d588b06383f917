"""ONNX models whose tensors live in external data files (onnx.save_model(..., save_as_external_data=True),
the usual form above protobuf's 2 GB limit): fetch those files beside a single .onnx model, and
write them into the published model version.

A location is a path relative to the .onnx file's folder; one that is absolute or climbs out of
that folder (`..`) is refused: the model would make the optimizer read (and publish) a file that
is not part of the model, from anywhere on the Job's disk or the bucket.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit, urlunsplit

import onnx

from .model_io import ModelError

# Protobuf refuses to serialize a message of 2 GiB or more; below this a model is written inline.
INLINE_LIMIT = 2**31 - 64 * 2**20
EXTERNAL_NAME = "model.onnx.data"


def _graph_tensors(graph: onnx.GraphProto):
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g)
            for sub in attr.graphs:
                yield from _graph_tensors(sub)


def _model_tensors(model: onnx.ModelProto):
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t


def locations(model: onnx.ModelProto) -> list[str]:
    """The external data files the model's tensors name, in first-seen order (each once)."""
    seen: dict[str, None] = {}
    for tensor in _model_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {e.key: e.value for e in tensor.external_data}
            seen.setdefault(entries.get("location", ""), None)
    return list(seen)


def safe_location(location: str, model_name: str) -> str:
    """The location as a relative POSIX path inside the model's folder; ModelError otherwise."""
    path = PurePosixPath(location.replace("\\", "/"))
    if path.as_posix() in ("", ".") or path.is_absolute() or ".." in path.parts or (len(location) > 1 and location[1] == ":"):
        raise ModelError(
            f"{model_name} names external data file {location!r}, which is outside the model's folder: "
            "external data locations must be relative paths beside the .onnx file (no absolute path, no '..'); "
            "save the model again with onnx.save_model(..., save_as_external_data=True, location='NAME')"
        )
    return path.as_posix()


def external_locations(path: Path) -> list[str]:
    """The checked external data locations of the .onnx file at `path` (empty when all is inline)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"{path.name} is not a valid ONNX model: {str(exc).splitlines()[0][:300]}") from None
    return [safe_location(loc, path.name) for loc in locations(model)]


def sibling_uri(uri: str, location: str):
    """The ParsedUri of `location` in the same folder (prefix) as the model file at `uri`. Built
    directly, not as text: a key may hold characters ('?', '#') a URI would read as its query."""
    from inferops.storage import parse_uri
    from inferops.storage.uri import ParsedUri

    parsed = parse_uri(uri)
    path = urlsplit(uri).path if parsed.scheme == "https" else parsed.path
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    key = f"{folder}/{location}" if folder or parsed.scheme == "https" else location
    if parsed.scheme == "https":
        # A presigned query signs the model's own URL, not its neighbours': it is not carried over.
        raw = urlunsplit(("https", parsed.authority, f"{folder}/{quote(location)}", "", ""))
        return ParsedUri("https", parsed.authority, key.lstrip("/"), raw)
    shown = f"{parsed.scheme}://{parsed.authority}{'/' if parsed.scheme != 'file' else ''}{key}"
    return ParsedUri(parsed.scheme, parsed.authority, key, shown)


def fetch_model(uri: str, dest: Path) -> Path:
    """Fetch the model at `uri` into `dest`; for a single .onnx file, also the external data files
    its tensors name, from the same folder, beside it. A missing one is NotFound naming it."""
    from inferops.storage import NotFound, backend_for, fetch

    fetched = fetch(uri, dest, source=True)
    if not fetched.is_file() or fetched.suffix.lower() != ".onnx":
        if fetched.is_dir():
            for model in fetched.glob("*.onnx"):
                external_locations(model)  # a folder came whole: only check nothing points out of it
        return fetched
    for location in external_locations(fetched):
        target = fetched.parent / location
        if target.is_file():
            continue
        source = sibling_uri(uri, location)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            got = backend_for(source, source=True).fetch(target.parent)
        except NotFound as exc:
            raise NotFound(f"{fetched.name} keeps its weights in external data file {location!r}, which is not beside it: {exc}") from None
        if got != target:
            got.replace(target)
        from inferops.optimize.context import log

        log.info("fetched external data %s", source)
    return fetched


def data_files(model: Path) -> list[Path]:
    """The external data files of an .onnx file already on disk (checked locations)."""
    return [model.parent / loc for loc in external_locations(model)]


def total_size(model: Path) -> int:
    """Bytes of the .onnx file and its external data files."""
    return model.stat().st_size + sum(f.stat().st_size for f in data_files(model) if f.is_file())


def inline_small(model: Path, workdir: Path, inline_limit: int = INLINE_LIMIT) -> Path:
    """A model with external data that fits under `inline_limit`, saved as one .onnx in `workdir`:
    the recipes then see a self-contained file (ONNX Runtime's offline optimizer, for one, writes
    its output with the input's external data locations, relative to a folder that lacks them).
    The model itself when it has no external data or is too large to inline."""
    if not data_files(model) or total_size(model) >= inline_limit:
        return model
    out = workdir / f"{model.stem}-inline.onnx"
    onnx.save_model(onnx.load(str(model)), str(out))
    return out


def write_model(model: Path, version: Path, inline_limit: int = INLINE_LIMIT) -> list[Path]:
    """Write `model` (and its weights) into the model version folder as model.onnx: copied as it
    is when all its tensors are inline; otherwise inline when it fits under `inline_limit`, else
    with every tensor in one external file, model.onnx.data, beside it. Returns the files written."""
    out = version / "model.onnx"
    if not data_files(model):
        shutil.copyfile(model, out)
        return [out]
    loaded = onnx.load(str(model))  # reads the external data, relative to the model's folder
    if total_size(model) < inline_limit:
        onnx.save_model(loaded, str(out))
        return [out]
    onnx.save_model(loaded, str(out), save_as_external_data=True, all_tensors_to_one_file=True, location=EXTERNAL_NAME, size_threshold=1024)
    return [out, version / EXTERNAL_NAME]
