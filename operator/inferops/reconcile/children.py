"""Rendering of the objects an InferenceModel owns: the optimization Job and the Triton serving set."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from ..api.common import API_VERSION
from ..api.hardware_class import HardwareClassSpec
from ..api.inference_model import InferenceModelSpec
from ..api.outcomes import FINAL_EXIT_CODES, TERMINATION_LOG, TERMINATION_LOG_ENV
from ..api.recipes import GPU_ONLY_RECIPES
from ..api.report import OptimizationReport
from ..api.tensors import BatchingConfig, Signature
from ..templating import render
from ..triton.config import build_model_config
from ..storage.credentials import SOURCE_MODE_ENV, SOURCE_PREFIX
from ..storage.digest import artifact_digest
from .images import job_optimizer_image, optimizer_image, platform_keys_allowed, triton_image
from ..triton.python_backend import python_backend_config
from .memo import memoized
from .naming import SPEC_HASH, canonical_hash, job_name, labels, selector_labels, serving_name
from .settings import OperatorSettings

MODELS_VOLUME = "/models"
REPOSITORY = "/models/repository"  # filled by `inferops pull`, which replaces its destination as a whole
# Served by a Prometheus Adapter rule (chart values.yaml, under metrics.podMonitor) from Triton's counters.
QUEUE_METRIC = "nv_inference_queue_duration_us_per_request"
DEFAULT_AUTO_BATCHING = {"max_batch_size": 32, "preferred_batch_sizes": [8, 16, 32], "max_queue_delay_microseconds": 500}


@dataclass(frozen=True)
class ModelRef:
    """The InferenceModel object as the core needs it: identity, generation, spec."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: InferenceModelSpec

    def owner_references(self) -> list[dict[str, Any]]:
        return [
            {
                "apiVersion": API_VERSION,
                "kind": "InferenceModel",
                "name": self.name,
                "uid": self.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


# libyaml's loader where PyYAML has it: the pure-Python one spent over half of the operator's
# event loop at 100 models (py-spy, issue "At scale"); both read the same safe YAML.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load(template: str, **context: Any) -> dict[str, Any]:
    return yaml.load(render(template, **context), Loader=_SAFE_LOADER)


def _container_resources(hardware: HardwareClassSpec) -> dict[str, Any]:
    return hardware.resources.model_dump(mode="json", exclude_defaults=False)


def _tolerations(hardware: HardwareClassSpec) -> list[dict[str, Any]]:
    return [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in hardware.tolerations]


def _job_resources(spec: InferenceModelSpec, hardware: HardwareClassSpec) -> dict[str, Any]:
    """The class's accelerators only when the Job needs one: a GPU recipe (tuning runs in a Job of
    its own, reconcile/tuning.py). Otherwise a re-optimization would wait for the GPU its own
    serving pods hold."""
    needs_gpu = hardware.instance_kind == "KIND_GPU" and any(step in GPU_ONLY_RECIPES for step in spec.optimization.steps)
    resources = _container_resources(hardware)
    if needs_gpu:
        return resources
    plain = ("cpu", "memory", "ephemeral-storage")
    return {kind: {k: v for k, v in values.items() if k in plain} for kind, values in resources.items()}


def _env_from(model: ModelRef, settings: OperatorSettings, *, source: bool) -> list[dict[str, Any]]:
    """Storage credentials, referenced, never copied: each Secret becomes environment variables.

    The platform's Secret (plain AWS_*) is for the artifact root. The model's own Secret, only
    where the spec's URIs are read (`source`: the Job), gets the prefix INFEROPS_SOURCE_, which
    the storage layer uses for those reads alone: with both as plain AWS_*, the later in envFrom
    would silently replace the other's keys (storage/credentials.py)."""
    store_secret = artifact_store_secret(model, settings)
    env_from = [{"secretRef": {"name": store_secret}}] if store_secret else []
    if source and model.spec.model.credentials_secret:
        env_from.append({"prefix": SOURCE_PREFIX, "secretRef": {"name": model.spec.model.credentials_secret}})
    return env_from


def artifact_store_secret(model: ModelRef, settings: OperatorSettings) -> str | None:
    """The Secret (in the model's namespace) a Job or pull step gets for the artifact store: the
    namespace's own (settings.tenant_storage_secret, keys that reach only <root>/<namespace>/)
    where the platform wires one; else the platform's, and that only into an image the admin
    chose (reconcile/images.py): a tenant's own image gets no keys."""
    if settings.tenant_storage_secret:
        return settings.tenant_storage_secret
    if settings.storage_secret and platform_keys_allowed(model.spec, settings):
        return settings.storage_secret
    return None


def artifact_uri(model: ModelRef, spec_hash: str, settings: OperatorSettings) -> str:
    return f"{settings.artifact_root}/{model.namespace}/{model.name}/{spec_hash}"


@memoized()
def desired_job(model: ModelRef, hardware: HardwareClassSpec, spec_hash: str, settings: OperatorSettings) -> dict[str, Any]:
    spec = model.spec
    opt = spec.optimization
    args = [
        "optimize",
        "--model", spec.model.uri,
        "--recipe", opt.recipe,
        "--output", artifact_uri(model, spec_hash, settings),
        "--accuracy-budget", str(opt.accuracy_budget),
        "--hardware-class", spec.hardware.class_name,
        "--instance-kind", hardware.instance_kind,
        "--model-name", model.name,
        "--report", "/work/report.json",
    ]
    if spec.model.format:
        args += ["--format", spec.model.format]
    for flag, tensors in (("--inputs", spec.model.inputs), ("--outputs", spec.model.outputs)):
        if tensors:
            args += [flag, json.dumps([t.model_dump(mode="json") for t in tensors], separators=(",", ":"))]
    if opt.eval_data:
        args += ["--eval-data", opt.eval_data]
    for key, value in sorted(opt.parameters.items()):
        args += ["--param", f"{key}={value}"]
    if spec.serving.dynamic_batching.mode == "auto":
        args.append("--require-batch")  # refused at once, not after a tuning Job that cannot batch it
    return _load(
        "job.yaml.j2",
        name=job_name(model.name, spec_hash),
        namespace=model.namespace,
        labels=labels(model.name, "optimizer"),
        annotations={SPEC_HASH: spec_hash},
        owner_references=model.owner_references(),
        backoff_limit=settings.job_backoff_limit,
        deadline_seconds=opt.timeout_seconds,
        node_selector=hardware.node_selector,
        tolerations=_tolerations(hardware),
        image=job_optimizer_image(spec, hardware, settings),
        args=args,
        env=[
            {"name": "INFEROPS_LOG_FORMAT", "value": "text"},
            {"name": TERMINATION_LOG_ENV, "value": TERMINATION_LOG},
            {"name": SOURCE_MODE_ENV, "value": "isolated"},  # never read the spec's URIs with the platform's keys
        ],
        env_from=_env_from(model, settings, source=True),
        resources=_job_resources(spec, hardware),
        final_exit_codes=list(FINAL_EXIT_CODES),
        termination_log=TERMINATION_LOG,
    )


def choose_batching(spec: InferenceModelSpec, report: OptimizationReport | None) -> BatchingConfig | None:
    """Batching to render: the tuned choice for `auto`, the spec's for `explicit`, none when disabled."""
    batching = spec.serving.dynamic_batching
    if batching.mode == "disabled":
        return None
    if batching.mode == "explicit":
        return BatchingConfig(
            max_batch_size=batching.max_batch_size,
            preferred_batch_sizes=batching.preferred_batch_sizes or [],
            max_queue_delay_microseconds=batching.max_queue_delay_microseconds or 0,
            instance_count=spec.serving.instance_count,
        )
    if report is not None and report.tuning is not None:
        return report.tuning.chosen
    return BatchingConfig(**{**DEFAULT_AUTO_BATCHING, "max_batch_size": max(DEFAULT_AUTO_BATCHING["max_batch_size"], spec.serving.request_batch_size)},
                          instance_count=spec.serving.instance_count)


def model_signature(spec: InferenceModelSpec, report: OptimizationReport | None) -> Signature:
    if report is not None and report.signature.inputs:
        return report.signature
    return Signature(inputs=spec.model.inputs or [], outputs=spec.model.outputs or [])


@dataclass(frozen=True)
class Revision:
    """What is deployed: an optimized artifact and the report that came with it."""

    artifact_uri: str
    report: OptimizationReport | None


def repository_model_name(model: ModelRef, revision: Revision) -> str:
    return revision.report.model_name if revision.report else model.name


def artifact_backend(revision: Revision) -> str:
    # The optimizer turns every format it reads into ONNX (api/catalogue.py); the report says what came out.
    return revision.report.backend if revision.report else "onnxruntime"


def serving_backend(revision: Revision, hardware: HardwareClassSpec) -> str:
    """The backend Triton serves the artifact with on this class: the artifact's, or Python (ONNX
    Runtime inside model.py) on a class whose Triton image has no native onnxruntime backend."""
    backend = artifact_backend(revision)
    return "python" if backend == "onnxruntime" and hardware.onnx_backend == "python" else backend


def pull_step_args(revision: Revision, hardware: HardwareClassSpec) -> list[str]:
    """`inferops pull` of the serving pods and the tuning pod: the same repository on both."""
    args = ["pull", "--uri", revision.artifact_uri, "--dest", REPOSITORY]
    if revision.report is not None:
        # What the operator read when the Job finished: the pull refuses an artifact changed since.
        args += ["--digest", artifact_digest(revision.report.checksums)]
    if serving_backend(revision, hardware) == "python":
        args.append("--python-backend")  # writes the model.py that runs ONNX Runtime; the config names that backend
    return args


@memoized()
def desired_serving(model: ModelRef, hardware: HardwareClassSpec, revision: Revision, settings: OperatorSettings) -> tuple[list[dict[str, Any]], BatchingConfig | None]:
    """ConfigMap (config.pbtxt), Deployment and Service; raises ModelConfigError for a config Triton would refuse."""
    spec = model.spec
    name = serving_name(model.name)
    repo_model = repository_model_name(model, revision)
    batching = choose_batching(spec, revision.report)
    backend = artifact_backend(revision)
    config_pbtxt = build_model_config(
        repo_model,
        backend,
        model_signature(spec, revision.report),
        batching,
        hardware.instance_kind,
        response_cache=spec.serving.response_cache,
        gpu_accelerators=revision.report.accelerators if revision.report else [],
    )
    pull_args = pull_step_args(revision, hardware)
    if serving_backend(revision, hardware) == "python":
        config_pbtxt = python_backend_config(config_pbtxt)
    common = {"namespace": model.namespace, "labels": labels(model.name, "serving"), "owner_references": model.owner_references()}
    configmap = _load("configmap.yaml.j2", name=f"{name}-config", config_pbtxt=config_pbtxt, **common)
    triton_args = [
        f"--model-repository={REPOSITORY}",
        "--model-control-mode=none",
        "--strict-readiness=true",
        "--http-port=8000",
        "--grpc-port=8001",
        "--metrics-port=8002",
        "--allow-metrics=true",
        "--allow-gpu-metrics=" + ("true" if hardware.instance_kind == "KIND_GPU" else "false"),
    ]
    if spec.serving.response_cache:
        triton_args.append("--cache-config=local,size=268435456")
    autoscaling = spec.serving.autoscaling
    deployment = _load(
        "deployment.yaml.j2",
        name=name,
        replicas=None if autoscaling else spec.serving.replicas,  # with autoscaling the HPA owns it
        selector=selector_labels(model.name),
        pod_annotations={
            "inferops.dev/config-hash": canonical_hash(config_pbtxt, 16),
            "inferops.dev/artifact": revision.artifact_uri,
        },
        node_selector=hardware.node_selector,
        tolerations=_tolerations(hardware),
        optimizer_image=optimizer_image(spec, hardware, settings),
        pull_args=pull_args,
        env_from=_env_from(model, settings, source=False),  # the pull reads only the artifact
        triton_image=triton_image(spec, hardware, settings),
        triton_args=triton_args,
        resources=_container_resources(hardware),
        startup_failure_threshold=60,
        config_mount_path=f"{REPOSITORY}/{repo_model}/config.pbtxt",
        config_map=f"{name}-config",
        shm_size="1Gi",
        models_volume=MODELS_VOLUME,
        **common,
    )
    service = _load("service.yaml.j2", name=name, selector=selector_labels(model.name), **common)
    serving = [configmap, deployment, service]
    if autoscaling:
        serving.append(desired_autoscaler(model))
    return serving, batching


def desired_autoscaler(model: ModelRef) -> dict[str, Any]:
    """autoscaling/v2 HPA on the Deployment, scaling on Triton's queue time per request."""
    autoscaling = model.spec.serving.autoscaling
    assert autoscaling is not None
    return _load(
        "hpa.yaml.j2",
        name=serving_name(model.name),
        namespace=model.namespace,
        labels=labels(model.name, "serving"),
        owner_references=model.owner_references(),
        target=serving_name(model.name),
        min_replicas=autoscaling.min_replicas,
        max_replicas=autoscaling.max_replicas,
        metric=QUEUE_METRIC,
        target_value=str(autoscaling.target_queue_microseconds),
    )


def endpoint(model: ModelRef) -> str:
    return f"http://{serving_name(model.name)}.{model.namespace}.svc:8000"


def smoke_url(model: ModelRef, service: dict[str, Any] | None) -> str:
    """Where the smoke inference goes: the Service's ClusterIP once it has one, so that it needs no
    cluster DNS (an operator run outside the cluster has none); its DNS name otherwise."""
    cluster_ip = ((service or {}).get("spec") or {}).get("clusterIP")
    return f"http://{cluster_ip}:8000" if cluster_ip and cluster_ip != "None" else endpoint(model)


def label_selector(model: ModelRef) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(model.name).items()))
