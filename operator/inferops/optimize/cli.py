"""`inferops optimize`: what the optimization Job runs."""

from __future__ import annotations

import argparse
import sys

from inferops.api.catalogue import FORMAT_NAMES

EPILOG = """\
recipes (comma-separated, applied in order): none, quantize-int8-dynamic, quantize-int8-static,
fp16, prune, distill, tensorrt.  Recipe parameters: --param key=value (repeatable), e.g.
sparsity=0.5, method=structured|magnitude, fineTuneEpochs=10, studentWidth=0.25, studentDepth=2,
student=URI, epochs=60, temperature=4, perChannel=true, fuseGelu=true, calibrationSamples=256,
calibrationMethod=MinMax, precision=FP16.

model (--format, else what the file's name or content says):
  onnx         an .onnx file or a folder with one; external data files its tensors name
               (relative paths beside it, as onnx.save_model writes them) are fetched too
  safetensors  a BERT sentence-encoder folder (config.json + model.safetensors + tokenizer.json),
               exported to ONNX without torch
  torchscript  a TorchScript archive (torch.jit.save); needs --inputs; torch extra
  pytorch      a torch.export program (.pt2, torch.export.save); torch extra
  keras        a Keras 3 .keras file (model.save), loaded in safe mode; tensorflow extra
  savedmodel   a TensorFlow SavedModel folder or a .tar.gz of one (serving_default signature);
               tensorflow extra (tf2onnx)
  Pickled nn.Modules (torch.save) and .keras files holding Python code (Lambda layers) are
  refused: loading one runs arbitrary code. These four formats are converted to ONNX with a free
  batch dimension and compared with the original (eval rows or generated inputs) before any
  recipe. tensorrt-plan is refused: already compiled.
  accuracyAware=true (int8 recipes): keep the costliest layers in float until the budget holds.

eval data (--eval-data):
  .npz  arrays named after the model inputs (or `inputs` for a one-input model), batch first;
        `labels` (int class per row) -> metric is top-1 accuracy; without labels the metric is
        the mean cosine similarity of the first output to the original model's (fidelity).
        `train_<input>`/`train_inputs` + `train_labels`: training split for prune fine-tuning
        and distillation; `calib_<input>`: int8 static calibration rows.
  .txt  one sentence a line, for models shipped with tokenizer.json; metric is cosine fidelity.

output: a Triton model repository at --output: <name>/config.pbtxt, <name>/1/model.onnx, and
report.json (written last: readers such as `inferops pull` require it). Write-once: where a
report.json is already committed at --output, nothing there is written or deleted.

exit status: 0 published (or already committed there, kept); 1 transient (storage unreachable; worth retrying); 2 error (model,
data, storage, recipe; nothing published; final); 3 accuracy gate failed (drop beyond
--accuracy-budget; nothing published; final). On failure a one-line reason is also written to
the file named by $INFEROPS_TERMINATION_LOG (the Job sets /dev/termination-log); on success,
"published sha256:..." (the digest of the report's checksums), which the operator checks the
stored report.json against.
credentials: AWS_* environment variables or a Secret mounted at $INFEROPS_CREDENTIALS_DIR;
AWS_ENDPOINT_URL for S3-compatible servers. They never appear in logs or the report.
"""


def _param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), value.strip()


def _tensors(text: str):
    from pydantic import TypeAdapter, ValidationError

    from inferops.api.tensors import TensorSpec

    try:
        return TypeAdapter(list[TensorSpec]).validate_json(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"not a list of tensors (name, datatype, dims): {exc.errors()[0]['msg']}") from None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--model", required=True, help="model URI: s3://, https://, file://, pvc://claim/path")
    parser.add_argument("--format", dest="model_format", choices=FORMAT_NAMES, help="model format (default: from the file's name or content)")
    parser.add_argument("--inputs", type=_tensors, help='input signature as JSON, e.g. \'[{"name":"x","datatype":"FP32","dims":[64]}]\' (dims without the batch)')
    parser.add_argument("--outputs", type=_tensors, help="output signature as JSON (names the exported outputs)")
    parser.add_argument("--recipe", required=True, help="recipe or comma-separated chain")
    parser.add_argument("--output", required=True, help="URI of the Triton model repository to write")
    parser.add_argument("--eval-data", help="eval data URI (.npz or .txt, see below)")
    parser.add_argument("--accuracy-budget", type=float, default=0.01, help="largest allowed metric drop (0.01 = one point; default %(default)s)")
    parser.add_argument("--hardware-class", help="HardwareClass name, recorded in the report")
    parser.add_argument("--instance-kind", choices=("KIND_CPU", "KIND_GPU"), help="Triton instance kind (default: KIND_GPU for GPU recipes, else KIND_CPU)")
    parser.add_argument("--model-name", help="Triton model name (default: from the model URI)")
    parser.add_argument("--max-batch-size", type=int, default=32, help="Triton max_batch_size (default %(default)s)")
    parser.add_argument("--param", action="append", type=_param, default=[], metavar="KEY=VALUE", help="recipe parameter (repeatable)")
    parser.add_argument("--report", help="also write the JSON report to this local path (written on failure too)")
    parser.add_argument("--tune", action="store_true", help="tune dynamic batching on a local Triton server (needs --latency-objective-ms)")
    parser.add_argument("--latency-objective-ms", type=float, help="p99 latency objective for --tune")
    parser.add_argument(
        "--require-batch", action="store_true",
        help="refuse (exit 2), before any recipe, a model without a free first (batch) dimension: it will be served with dynamic batching (the operator passes it for dynamicBatching auto)",
    )


def run(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from inferops.storage.credentials import redact
    from inferops.storage.logsetup import setup_logging

    from .pipeline import OptimizeFailed, Options, optimize

    setup_logging()
    opts = Options(
        model_uri=args.model, recipe=args.recipe, output_uri=args.output, eval_uri=args.eval_data,
        accuracy_budget=args.accuracy_budget, hardware_class=args.hardware_class, instance_kind=args.instance_kind,
        model_name=args.model_name, params=dict(args.param), max_batch_size=args.max_batch_size,
        tune=args.tune, latency_objective_ms=args.latency_objective_ms, require_batch=args.require_batch,
        model_format=args.model_format, inputs=args.inputs, outputs=args.outputs,
    )
    code = 0
    try:
        report = optimize(opts)
    except OptimizeFailed as exc:
        report, code = exc.report, exc.exit_code
        logging.getLogger("inferops.optimize").error("%s", exc)
    text = redact(report.model_dump_json(by_alias=True, indent=2))
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(text)
    print(text)
    if code:
        print(f"error: {redact(report.notes[-1])}", file=sys.stderr)
        _write_termination_message(redact(report.notes[-1]))
    elif report.checksums:
        from inferops.api.outcomes import PUBLISHED_PREFIX
        from inferops.storage.digest import artifact_digest

        # What this run published, in the Job's own record: a report.json rewritten later disagrees.
        _write_termination_message(PUBLISHED_PREFIX + artifact_digest(report.checksums))
    return code


def _write_termination_message(note: str) -> None:
    """The reason, for the pod's termination message (which the operator copies into the model's
    conditions); the log stays the full story."""
    import os

    from inferops.api.outcomes import TERMINATION_LOG_ENV, TERMINATION_MESSAGE_MAX

    path = os.environ.get(TERMINATION_LOG_ENV)
    if not path:
        return
    message = note.removeprefix("failed: ")
    try:
        with open(path, "w") as f:
            f.write(message[:TERMINATION_MESSAGE_MAX])
    except OSError as exc:  # the reason is still in the log, which FallbackToLogsOnError then uses
        print(f"warning: could not write the termination message to {path}: {exc.strerror}", file=sys.stderr)
