"""Names, labels and the spec hash that makes Job names idempotent."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..api.hardware_class import HardwareClassSpec
from ..api.inference_model import InferenceModelSpec

MODEL_LABEL = "inferops.dev/model"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY = {"app.kubernetes.io/managed-by": "inferops"}
APPLIED_HASH = "inferops.dev/applied-hash"
SPEC_HASH = "inferops.dev/spec-hash"


def canonical_hash(value: Any, length: int = 64) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:length]


def optimization_hash(spec: InferenceModelSpec, hardware: HardwareClassSpec) -> str:
    """What the optimization Job's output depends on, and nothing else (not replicas, and not
    the tuning: that runs in a Job of its own, named by tuning_hash)."""
    inputs = {
        "model": spec.model.model_dump(mode="json", by_alias=True, exclude_none=True),
        "optimization": spec.optimization.model_dump(mode="json", by_alias=True, exclude_none=True),
        "hardwareClass": spec.hardware.class_name,
        "instanceKind": hardware.instance_kind,
    }
    return canonical_hash(inputs, 10)


def tuning_hash(artifact_hash: str, spec: InferenceModelSpec, hardware: HardwareClassSpec, *, triton_image: str, backend: str, accelerators: list[Any], tuner_flags: tuple[str, ...] | list[str]) -> str:
    """What a tuning result depends on: the artifact, the server that measures it (image, backend
    rendering, instance kind, the class's nodes and resources, the artifact's GPU accelerators)
    and what it is tuned for (p99 objective, client concurrency, rows per request, the search's
    flags). Anything else (replicas, autoscaling, a new optimizer image) reuses the tuning."""
    inputs = {
        "artifact": artifact_hash,
        "tritonImage": triton_image,
        "backend": backend,
        "instanceKind": hardware.instance_kind,
        "nodeSelector": hardware.node_selector,
        "resources": hardware.resources.model_dump(mode="json", by_alias=True, exclude_none=True),
        "accelerators": accelerators,
        "latencyObjectiveMs": spec.serving.latency_objective_ms,
        "expectedConcurrency": spec.serving.expected_concurrency,
        "tunerFlags": list(tuner_flags),
        # Only when set: a model tuned before the field existed keeps its tuning.
        **({"requestBatchSize": spec.serving.request_batch_size} if spec.serving.request_batch_size != 1 else {}),
    }
    return canonical_hash(inputs, 10)


def job_name(model: str, spec_hash: str) -> str:
    return f"{model}-opt-{spec_hash}"


def tuning_job_name(model: str, tune_hash: str) -> str:
    return f"{model}-tune-{tune_hash}"


def serving_name(model: str) -> str:
    return f"{model}-triton"


def labels(model: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "inferops",
        "app.kubernetes.io/instance": model,
        COMPONENT_LABEL: component,
        MODEL_LABEL: model,
        **MANAGED_BY,
    }


def selector_labels(model: str) -> dict[str, str]:
    return {MODEL_LABEL: model, COMPONENT_LABEL: "serving"}
