"""Lay out a Triton model repository: <name>/config.pbtxt and <name>/1/model.onnx (and
model.onnx.data for a model over 2 GB), report.json beside them."""

from __future__ import annotations

from pathlib import Path

from inferops.api.report import OptimizationReport
from inferops.api.tensors import BatchingConfig, ExecutionAccelerator, Signature

from .external_data import write_model


def render_config(name: str, signature: Signature, batching: BatchingConfig | None, instance_kind: str, accelerators: list[ExecutionAccelerator]) -> str:
    try:
        from inferops.triton.config import build_model_config
    except ModuleNotFoundError as exc:
        raise RuntimeError(f"inferops.triton.config is not in this build ({exc.name}); cannot write config.pbtxt") from None
    return build_model_config(name, "onnxruntime", signature, batching, instance_kind, gpu_accelerators=accelerators)


def write_repository(root: Path, name: str, model: Path, config_text: str) -> list[Path]:
    version = root / name / "1"
    version.mkdir(parents=True, exist_ok=True)
    written = write_model(model, version)  # with its external data files, if it has any
    (root / name / "config.pbtxt").write_text(config_text)
    return [*written, root / name / "config.pbtxt"]


def write_report(root: Path, report: OptimizationReport) -> Path:
    path = root / "report.json"
    path.write_text(report.model_dump_json(by_alias=True, indent=2))
    return path
