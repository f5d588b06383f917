"""The optimization Job: fetch, measure, apply the recipe chain, gate on the metric, publish.

Nothing reaches the output URI unless every step succeeded and the metric held its budget; the
tree is staged locally and published in one storage operation (report.json last).
"""

from __future__ import annotations

import hashlib
import importlib
import platform
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inferops.api.outcomes import EXIT_ERROR, EXIT_GATE, EXIT_TRANSIENT
from inferops.api.catalogue import RECIPE_CATALOGUE
from inferops.api.recipes import GPU_ONLY_RECIPES, LOSSY_RECIPES, parse_recipe_chain
from inferops.api.report import AccuracyReport, BeforeAfter, OptimizationReport
from inferops.api.tensors import BatchingConfig, Signature, TensorSpec

from . import measure
from .context import RecipeContext, RecipeError, log
from .evaldata import EvalData, EvalDataError, load_eval_data
from .external_data import fetch_model, inline_small
from .model_io import ModelError, load_model, read_signature, require_format

# The recipes' modules and which of them change the numbers come from the one catalogue.
RECIPE_MODULES = {r.name: r.module for r in RECIPE_CATALOGUE if r.module}
LOSSY = set(LOSSY_RECIPES)


@dataclass
class Options:
    model_uri: str
    recipe: str
    output_uri: str
    eval_uri: str | None = None
    accuracy_budget: float = 0.01
    hardware_class: str | None = None
    instance_kind: str | None = None
    model_name: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    max_batch_size: int = 32
    tune: bool = False
    latency_objective_ms: float | None = None
    require_batch: bool = False  # it will be served with dynamic batching (tuned in a Job of its own)
    model_format: str | None = None  # None: what the file's name or content says
    inputs: list[TensorSpec] | None = None  # the spec's signature, for formats that do not carry one
    outputs: list[TensorSpec] | None = None


class OptimizeFailed(Exception):
    def __init__(self, message: str, report: OptimizationReport, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.report, self.exit_code = report, exit_code


def default_model_name(uri: str) -> str:
    stem = uri.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    stem = re.sub(r"\.(onnx|safetensors|pt2|pt|pth|ts|torchscript|keras|tar\.gz|tgz)$", "", stem)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "model"
    return name[:128]


def tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    from importlib.metadata import PackageNotFoundError, version

    try:
        inferops_version = version("inferops")
    except PackageNotFoundError:
        inferops_version = "unknown"
    return {"inferops": inferops_version, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__, "python": platform.python_version()}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def synthetic_feeds(signature: Signature, batch: int) -> dict[str, np.ndarray]:
    """Inputs for timing a model without eval data: random floats, zeros for integer inputs."""
    rng = np.random.default_rng(0)
    feeds = {}
    for t in signature.inputs:
        shape = [batch] + [16 if d == -1 else d for d in t.dims]
        if t.datatype.startswith("FP"):
            feeds[t.name] = rng.standard_normal(shape).astype(np.float16 if t.datatype == "FP16" else np.float32)
        else:
            feeds[t.name] = np.zeros(shape, dtype={"INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}.get(t.datatype, np.int64))
    return feeds


def _gpu_available() -> bool:
    from .tensorrt import gpu_name

    return gpu_name() is not None


def optimize(opts: Options) -> OptimizationReport:
    from inferops.storage import StorageError, Unreachable, fetch, parse_uri, publish, redact_uri

    name = opts.model_name or default_model_name(opts.model_uri)
    report = OptimizationReport(artifactUri=redact_uri(opts.output_uri), modelName=name, backend="onnxruntime", tools=tool_versions())
    if opts.hardware_class:
        report.notes.append(f"hardware class: {opts.hardware_class}")

    def fail(message: str, code: int = EXIT_ERROR) -> OptimizeFailed:
        report.passed = False
        report.notes.append(f"failed: {message}")
        return OptimizeFailed(message, report, code)

    try:
        steps = [s for s in parse_recipe_chain(opts.recipe) if s != "none"]
        for uri in (opts.model_uri, opts.output_uri, *([opts.eval_uri] if opts.eval_uri else [])):
            parse_uri(uri)
        if parse_uri(opts.output_uri).scheme in ("https", "gs"):
            raise StorageError(f"cannot write the output to {parse_uri(opts.output_uri).scheme}://; use s3://, pvc:// or file://")
    except (ValueError, StorageError) as exc:
        raise fail(str(exc)) from None
    try:
        if opts.model_format:
            require_format(opts.model_format)  # before any download: this build cannot read it
    except ModelError as exc:
        raise fail(str(exc)) from None
    if LOSSY & set(steps) and not opts.eval_uri:
        raise fail(f"{', '.join(s for s in steps if s in LOSSY)} change the model's outputs; give --eval-data so the accuracy gate can check them")
    if opts.instance_kind == "KIND_CPU" and GPU_ONLY_RECIPES & set(steps):
        raise fail(f"{', '.join(sorted(GPU_ONLY_RECIPES & set(steps)))} target GPUs; this hardware class runs on CPUs (KIND_CPU)")
    tuner = None
    if opts.tune:
        if not opts.latency_objective_ms:
            raise fail("--tune needs --latency-objective-ms")
        try:
            tuner = importlib.import_module("inferops.triton.tuner")
        except ModuleNotFoundError as exc:
            raise fail(f"--tune needs the batching tuner (inferops.triton.tuner), which is not in this build ({exc.name})") from None

    with tempfile.TemporaryDirectory(prefix="inferops-optimize-") as tmp:
        work = Path(tmp)
        try:
            log.info("fetching the model from %s", redact_uri(opts.model_uri))
            loaded = load_model(fetch_model(opts.model_uri, work / "model"), work, opts.model_format, Signature(inputs=opts.inputs or [], outputs=opts.outputs or []))
            report.steps += loaded.steps
            report.notes += loaded.notes
            report.conversion = loaded.conversion
            loaded.onnx_path = inline_small(loaded.onnx_path, work)  # weights from external data files, when under 2 GB
            if loaded.conversion:
                report.tools.update(loaded.conversion.tool_versions)
            import onnx

            original = loaded.onnx_path
            signature, batched = read_signature(onnx.load(str(original)))
            report.signature = signature
            if (tuner is not None or opts.require_batch) and not batched:
                # Checked before measuring and before any recipe: none of them adds a batch axis.
                raise ModelError("dynamicBatching auto (--tune, --require-batch) needs a model whose inputs and outputs all have a free first (batch) dimension; this one has none: export it with a dynamic batch axis, or set dynamicBatching to disabled")
            data: EvalData | None = None
            if opts.eval_uri:
                log.info("fetching eval data from %s", redact_uri(opts.eval_uri))
                data = load_eval_data(fetch(opts.eval_uri, work / "eval", source=True), [t.name for t in signature.inputs], loaded.tokenizer)
            if loaded.check_fidelity is not None:
                # Before any recipe: a conversion that changed the outputs must not reach the gate as the "original".
                log.info("checking the ONNX export against the original model")
                loaded.check_fidelity(data.inputs if data else synthetic_feeds(signature, 8), "eval data" if data else "generated inputs")
        except (StorageError, ModelError, EvalDataError) as exc:
            # Only an unreachable store is worth another try; exit 2 fails the Job at once.
            raise fail(str(exc), EXIT_TRANSIENT if isinstance(exc, Unreachable) else EXIT_ERROR) from None

        feeds = {b: (data.batch(b) if data else synthetic_feeds(signature, b)) for b in (1, 32)}
        if not batched:
            feeds = {1: feeds[1]}
        log.info("measuring the original model (size, CPU latency at batch 1 and 32, metric)")
        reference = measure.predict(original, data.inputs) if data else None
        before = measure.metric(original, data, reference) if data else None
        report.size_bytes = BeforeAfter(before=measure.size_bytes(original))
        report.latency_ms_batch1 = BeforeAfter(before=measure.latency_ms(original, feeds[1]))
        if 32 in feeds:
            report.latency_ms_batch32 = BeforeAfter(before=measure.latency_ms(original, feeds[32]))

        current, kind = original, opts.instance_kind
        gpu = _gpu_available()
        for i, step in enumerate(steps, 1):
            log.info("step %d/%d: %s", i, len(steps), step)
            started = time.monotonic()
            module = importlib.import_module(f"{__package__}.{RECIPE_MODULES[step]}")
            try:
                ctx = RecipeContext(work, data, opts.params, gpu, i, baseline=before, budget=opts.accuracy_budget, reference=reference)
                result = module.apply(current, ctx)
            except RecipeError as exc:
                raise fail(f"{step}: {exc}") from None
            current = result.model
            if result.accelerator is not None:
                report.accelerators = [result.accelerator]
            kind = kind or result.instance_kind
            report.steps.append(step)
            report.notes += result.notes
            if result.mixed_precision is not None:
                report.mixed_precision = result.mixed_precision
            log.info("step %d/%d: %s done in %.1fs", i, len(steps), step, time.monotonic() - started)

        log.info("measuring the optimized model")
        report.size_bytes.after = measure.size_bytes(current)
        report.latency_ms_batch1.after = measure.latency_ms(current, feeds[1])
        if 32 in feeds:
            report.latency_ms_batch32.after = measure.latency_ms(current, feeds[32])
        threads = measure.session(current).get_session_options().intra_op_num_threads
        report.notes.append(f"latency: ONNX Runtime CPU, {threads} intra-op thread(s), median of repeated runs")
        if data is not None:
            after = measure.metric(current, data, reference)
            drop = before - after
            passed = drop <= opts.accuracy_budget + 1e-9
            report.accuracy = AccuracyReport(metric=data.metric, before=before, after=after, drop=drop, budget=opts.accuracy_budget, passed=passed)
            log.info("%s before %.4f after %.4f drop %.4f budget %.4f: %s", data.metric, before, after, drop, opts.accuracy_budget, "passed" if passed else "FAILED")
            if not passed:
                raise fail(f"accuracy gate: {data.metric} dropped by {drop:.4f} ({before:.4f} -> {after:.4f}), more than the budget {opts.accuracy_budget:.4f}; nothing was deployed", EXIT_GATE)
        else:
            report.notes.append("no eval data: the metric was not measured")

        repo = work / "repository"
        batching = BatchingConfig(maxBatchSize=opts.max_batch_size) if batched else None
        try:
            from .repository import render_config, write_repository, write_report

            config = render_config(name, signature, batching, kind or "KIND_CPU", report.accelerators)
        except (ValueError, RuntimeError) as exc:
            raise fail(str(exc)) from None
        files = write_repository(repo, name, current, config)
        if tuner is not None:
            assert batching is not None  # refused before the recipes ran
            log.info("tuning dynamic batching on a local Triton server (objective p99 %.1f ms)", opts.latency_objective_ms)
            report.tuning = tuner.tune_repository(repo, name, opts.latency_objective_ms, kind or "KIND_CPU")
            log.info("tuned: %s", report.tuning.chosen.model_dump(by_alias=True))
            (repo / name / "config.pbtxt").write_text(render_config(name, signature, report.tuning.chosen, kind or "KIND_CPU", report.accelerators))
        report.checksums = {f.relative_to(repo).as_posix(): sha256(f) for f in files}
        write_report(repo, report)
        try:
            committed = publish(repo, opts.output_uri)
        except StorageError as exc:
            raise fail(str(exc), EXIT_TRANSIENT if isinstance(exc, Unreachable) else EXIT_ERROR) from None
        if committed:
            log.info("published %s to %s", name, redact_uri(opts.output_uri))
        else:  # write-once: the artifact of this hash already exists and stays the one served
            log.info("an artifact is already committed at %s: kept as it is, this run's result was not written", redact_uri(opts.output_uri))
        return report
