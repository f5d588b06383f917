"""Operator-wide settings (flags and environment of `inferops operator`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.10-py3"
DEFAULT_OPTIMIZER_IMAGE = "ghcr.io/inferops/optimizer:0.1.0"
# The optimizer image per optional extra (api/catalogue.py names the extra each format needs): the
# default image stays free of PyTorch and TensorFlow, a model in one of their formats gets its variant.
DEFAULT_OPTIMIZER_IMAGES = (("torch", "ghcr.io/inferops/optimizer-torch:0.1.0"), ("tensorflow", "ghcr.io/inferops/optimizer-tensorflow:0.1.0"))
FIELD_MANAGER = "inferops"


# A failed smoke inference is tried again after this long (it is cached until then, and the model is
# reconciled again then even if nothing else happens); so is a failed report read, at the next event.
PROBE_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class OperatorSettings:
    artifact_root: str = "s3://inferops-artifacts"
    optimizer_image: str = DEFAULT_OPTIMIZER_IMAGE
    triton_image: str = DEFAULT_TRITON_IMAGE
    job_backoff_limit: int = 2
    smoke_test: bool = True
    storage_secret: str | None = None  # Secret the Job and the pull step use for the artifact store
    optimizer_images: tuple[tuple[str, str], ...] = DEFAULT_OPTIMIZER_IMAGES  # (extra, image); a tuple keeps the settings hashable

    def optimizer_image_for(self, extra: str | None) -> str | None:
        return dict(self.optimizer_images).get(extra or "") or None

    @classmethod
    def from_env(cls) -> "OperatorSettings":
        env = os.environ
        return cls(
            artifact_root=env.get("INFEROPS_ARTIFACT_ROOT", cls.artifact_root).rstrip("/"),
            optimizer_image=env.get("INFEROPS_OPTIMIZER_IMAGE", cls.optimizer_image),
            triton_image=env.get("INFEROPS_TRITON_IMAGE", cls.triton_image),
            job_backoff_limit=int(env.get("INFEROPS_JOB_BACKOFF_LIMIT", cls.job_backoff_limit)),
            smoke_test=env.get("INFEROPS_SMOKE_TEST", "true").lower() in ("1", "true", "yes", "on"),
            storage_secret=env.get("INFEROPS_STORAGE_SECRET") or None,
            optimizer_images=_images(env.get("INFEROPS_OPTIMIZER_IMAGES"), cls.optimizer_images),
        )


def _images(text: str | None, default: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """INFEROPS_OPTIMIZER_IMAGES: a JSON object, extra -> image (the chart's operator.optimizerImages);
    an empty image leaves that extra's formats to the default image, which then names what is missing."""
    if not text:
        return default
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"INFEROPS_OPTIMIZER_IMAGES is not JSON: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("INFEROPS_OPTIMIZER_IMAGES must be a JSON object of extra -> image, e.g. {\"torch\": \"registry/optimizer-torch:1\"}")
    return tuple(sorted((k, v) for k, v in value.items() if v))
