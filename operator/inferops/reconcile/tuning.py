"""The tuning child: a Job that tunes dynamic batching where the model will be served.

Its pod runs on the HardwareClass's nodes with the Deployment's pull step, the class's Triton
image (same backend rendering, instance kind, resources and accelerators as the Deployment) as a
native sidecar in explicit model-control mode, and the tuner (`inferops tune`, optimizer image),
which loads each candidate config through Triton's repository API over localhost and publishes
its TuningReport beside the artifact as tuning-<hash>.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api.hardware_class import HardwareClassSpec
from ..api.outcomes import TERMINATION_LOG, TERMINATION_LOG_ENV
from .children import (
    MODELS_VOLUME,
    REPOSITORY,
    ModelRef,
    Revision,
    _container_resources,
    _env_from,
    _load,
    _tolerations,
    optimizer_image,
    pull_step_args,
    repository_model_name,
    serving_backend,
    triton_image,
)
from .naming import SPEC_HASH, labels, tuning_hash, tuning_job_name
from ..triton.tune_cmd import ACCELERATOR_ENV, EXIT_TUNING_FAILED, IMAGE_ENV, NODE_ENV
from .settings import OperatorSettings

TUNER_CONTAINER = "tune"
TUNING_HASH = "inferops.dev/tuning-hash"
TUNING_COMPONENT = "tuner"
# Pulling the artifact and starting the server come on top of the tuner's own --max-minutes.
STARTUP_SECONDS = 600
STARTUP_PROBE_PERIOD = 2
TUNING_BACKOFF_LIMIT = 1  # one more try for what a retry can fix (a lost node); never a loop
# The tuner's load generator: a small request so that it schedules beside the class's Triton
# resources; no limit, so it is not throttled while it measures.
TUNER_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}}
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


@dataclass(frozen=True)
class TuningTarget:
    """Which tuning an artifact gets on a class: its hash names the Job and the published result."""

    hash: str
    job_name: str
    output_uri: str
    triton_image: str


def tuning_target(model: ModelRef, hardware: HardwareClassSpec, artifact_hash: str, revision: Revision, settings: OperatorSettings) -> TuningTarget:
    image = triton_image(model.spec, hardware, settings)
    accelerators = [a.model_dump(mode="json", by_alias=True) for a in revision.report.accelerators] if revision.report else []
    digest = tuning_hash(
        artifact_hash, model.spec, hardware,
        triton_image=image, backend=serving_backend(revision, hardware), accelerators=accelerators, tuner_flags=settings.tune_args,
    )
    return TuningTarget(digest, tuning_job_name(model.name, digest), f"{revision.artifact_uri}/tuning-{digest}.json", image)


def desired_tuning_job(model: ModelRef, hardware: HardwareClassSpec, revision: Revision, target: TuningTarget, settings: OperatorSettings) -> dict[str, Any]:
    spec = model.spec
    tune_args = [
        "tune",
        "--server", "localhost:8000",
        "--model", repository_model_name(model, revision),
        "--latency-objective-ms", str(spec.serving.latency_objective_ms),
        "--concurrency", str(spec.serving.expected_concurrency),
        "--request-batch-size", str(spec.serving.request_batch_size),
        "--instance-kind", hardware.instance_kind,
        "--output", target.output_uri,
        "--max-minutes", str(settings.tuning_max_minutes),
        # The server's repository, shared: the tuner serves two candidates at once (duels).
        "--repository", REPOSITORY,
        *settings.tune_args,
    ]
    env = [
        {"name": "INFEROPS_LOG_FORMAT", "value": "text"},
        {"name": TERMINATION_LOG_ENV, "value": TERMINATION_LOG},
        {"name": IMAGE_ENV, "value": target.triton_image},  # recorded in the report: what it measured on
        {"name": NODE_ENV, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    if GPU_PRODUCT_LABEL in hardware.node_selector:
        env.append({"name": ACCELERATOR_ENV, "value": hardware.node_selector[GPU_PRODUCT_LABEL]})
    triton_args = [
        f"--model-repository={REPOSITORY}",
        "--model-control-mode=explicit",  # nothing loads at start; the tuner loads each candidate config
        "--strict-readiness=false",
        "--http-port=8000",
        "--grpc-port=8001",
        "--metrics-port=8002",
        "--allow-metrics=true",
        "--allow-gpu-metrics=" + ("true" if hardware.instance_kind == "KIND_GPU" else "false"),
    ]
    return _load(
        "tuning-job.yaml.j2",
        name=target.job_name,
        namespace=model.namespace,
        labels=labels(model.name, TUNING_COMPONENT),
        annotations={SPEC_HASH: revision.artifact_uri.rsplit("/", 1)[-1], TUNING_HASH: target.hash},
        owner_references=model.owner_references(),
        backoff_limit=TUNING_BACKOFF_LIMIT,
        deadline_seconds=settings.tuning_max_minutes * 60 + STARTUP_SECONDS,
        final_exit_codes=[EXIT_TUNING_FAILED],
        tuner_container=TUNER_CONTAINER,
        node_selector=hardware.node_selector,
        tolerations=_tolerations(hardware),
        optimizer_image=optimizer_image(spec, hardware, settings),
        pull_args=pull_step_args(revision, hardware),
        env_from=_env_from(model, settings, source=False),  # the artifact root only: pull and publish
        models_volume=MODELS_VOLUME,
        triton_image=target.triton_image,
        triton_args=triton_args,
        resources=_container_resources(hardware),
        startup_failure_threshold=STARTUP_SECONDS // STARTUP_PROBE_PERIOD,
        tune_args=tune_args,
        env=env,
        tuner_resources=TUNER_RESOURCES,
        termination_log=TERMINATION_LOG,
        shm_size="1Gi",
    )
