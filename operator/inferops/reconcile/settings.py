"""Operator-wide settings (flags and environment of `inferops operator`)."""

from __future__ import annotations

import json
import os
import shlex
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
# report.json is written by a Job that runs a tenant's model (and maybe image): the operator reads
# at most this much of it, and refuses (ReportUnavailable) a bigger one unread.
REPORT_LIMIT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class OperatorSettings:
    artifact_root: str = "s3://inferops-artifacts"
    optimizer_image: str = DEFAULT_OPTIMIZER_IMAGE
    triton_image: str = DEFAULT_TRITON_IMAGE
    job_backoff_limit: int = 2
    smoke_test: bool = True
    storage_secret: str | None = None  # Secret the Job and the pull step use for the artifact store
    smoke_timeout_s: float = 30.0  # a smoke inference without an answer by then has failed
    keep_revisions: int = 3  # committed artifacts kept per model by `inferops gc` (the serving one always)
    # A Secret of this name in each model's namespace, with keys that reach only <root>/<namespace>/:
    # when set, the Job and the pull step get it instead of storage_secret, which then serves the
    # operator's own reads alone.
    tenant_storage_secret: str | None = None
    # Images an InferenceModel may name (spec.optimization.image, spec.serving.tritonImage):
    # fnmatch patterns. The HardwareClass's and the operator's own images need no listing.
    allowed_images: tuple[str, ...] = ()
    # Any image a spec names is used; an unlisted one never receives the platform's storage_secret.
    allow_image_overrides: bool = False
    # Threads for blocking I/O, one pool per kind of target (executors.py): API calls (also the
    # client's connection pool size), artifact-store reads, smoke inferences.
    api_threads: int = 16
    storage_threads: int = 4
    smoke_threads: int = 4
    # The tuning Job: `inferops tune --max-minutes`, and extra flags of the search (a test cluster
    # shortens it: INFEROPS_TUNE_ARGS="--flag value ..."). Both are part of the tuning hash.
    tuning_max_minutes: int = 10
    tune_args: tuple[str, ...] = ()
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
            smoke_timeout_s=float(env.get("INFEROPS_SMOKE_TIMEOUT_SECONDS", cls.smoke_timeout_s)),
            keep_revisions=int(env.get("INFEROPS_KEEP_REVISIONS", cls.keep_revisions)),
            tenant_storage_secret=env.get("INFEROPS_TENANT_STORAGE_SECRET") or None,
            allowed_images=tuple(i.strip() for i in env.get("INFEROPS_ALLOWED_IMAGES", "").split(",") if i.strip()),
            allow_image_overrides=env.get("INFEROPS_ALLOW_IMAGE_OVERRIDES", "false").lower() in ("1", "true", "yes", "on"),
            api_threads=max(1, int(env.get("INFEROPS_API_THREADS", cls.api_threads))),
            storage_threads=max(1, int(env.get("INFEROPS_STORAGE_THREADS", cls.storage_threads))),
            smoke_threads=max(1, int(env.get("INFEROPS_SMOKE_THREADS", cls.smoke_threads))),
            tuning_max_minutes=int(env.get("INFEROPS_TUNING_MAX_MINUTES", cls.tuning_max_minutes)),
            tune_args=_tune_args(env.get("INFEROPS_TUNE_ARGS", "")),
            optimizer_images=_images(env.get("INFEROPS_OPTIMIZER_IMAGES"), cls.optimizer_images),
        )


def _tune_args(value: str) -> tuple[str, ...]:
    """A JSON list (what the chart writes) or a shell-quoted line (by hand)."""
    value = value.strip()
    if value.startswith("["):
        args = json.loads(value)
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValueError(f"INFEROPS_TUNE_ARGS: a JSON list of strings, not {value!r}")
        return tuple(args)
    return tuple(shlex.split(value))


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
