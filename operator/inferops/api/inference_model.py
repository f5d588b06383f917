"""InferenceModel: a trained model, how to optimize it, and how to serve it on Triton."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from .common import Condition, Dns1123Subdomain, Image
from .catalogue import FORMAT_CATALOGUE, FORMAT_NAMES
from .recipes import RECIPES, parse_recipe_chain
from .report import OptimizationReport
from .tensors import ApiModel, BatchingConfig, TensorSpec

MODEL_URI_PATTERN = r"^(s3|gs|https|pvc|file)://[^\s\"']+$"
ModelFormat = Literal[FORMAT_NAMES]  # type: ignore[valid-type]
Phase = Literal["Pending", "Optimizing", "Deploying", "Ready", "Failed"]
RECIPE_CHAIN_PATTERN = r"^[a-z0-9-]+(,[a-z0-9-]+)*$"
# What the cluster's Job can read: no gs:// backend in this build, and no template mounts a
# PersistentVolumeClaim, so pvc:// could only fail inside the Job. Refused at apply instead.
SERVED_SCHEMES = ("s3", "https", "file")
SCHEME_MESSAGE = (
    "only s3://, https:// and file:// can be read here: gs:// is not in this build (use s3:// with the endpoint "
    "https://storage.googleapis.com and an HMAC key), and pvc:// needs a claim mounted in the optimization Job, which no template does"
)
SCHEME_RULE = {"rule": " || ".join(f"self.startsWith('{s}://')" for s in SERVED_SCHEMES), "message": SCHEME_MESSAGE}
# Parameter keys become `--param KEY=VALUE`: a key starting with `-` would be read as an option,
# one with `=` would split at the wrong place.
ParameterKey = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")]


def _served_scheme(value: str | None) -> str | None:
    if value is not None and not value.startswith(tuple(f"{s}://" for s in SERVED_SCHEMES)):
        raise ValueError(SCHEME_MESSAGE)
    return value


class ModelSource(ApiModel):
    uri: str = Field(
        max_length=2048,
        pattern=MODEL_URI_PATTERN,
        description="s3://, https:// or file:// (a path in the optimizer image). gs:// and pvc:// are refused: not in this build, and no claim is mounted in the optimization Job.",
        json_schema_extra={"x-kubernetes-validations": [SCHEME_RULE]},
    )
    format: ModelFormat | None = Field(
        default=None,
        description="Unset: what the file's name or content says. "
        + "; ".join(f"{f.name}: {f.summary}" + (f" (the optimizer's {f.extra} extra)" if f.extra else "") + ("" if f.supported else " (refused: not readable by the optimizer)") for f in FORMAT_CATALOGUE)
        + ".",
        # Refused at apply, webhook or not: a format no optimizer build reads would only fail the Job.
        json_schema_extra={"x-kubernetes-validations": [
            {"rule": f"self != '{f.name}'", "message": f"model.format {f.name}: {f.unsupported_reason}"} for f in FORMAT_CATALOGUE if not f.supported
        ]},
    )
    inputs: list[TensorSpec] | None = Field(default=None, max_length=32, description="Only where it cannot be read from the model (a TorchScript archive records none).")
    outputs: list[TensorSpec] | None = Field(default=None, max_length=32, description="Only where it cannot be read from the model.")
    credentials_secret: Dns1123Subdomain | None = Field(
        alias="credentialsSecret",
        default=None,
        description=(
            "Secret with the credentials that read model.uri and evalData (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL...); "
            "given to the optimization Job only, as environment prefixed INFEROPS_SOURCE_, never copied. Kept apart from the platform's "
            "artifact-store credentials: neither replaces the other. Without it those URIs are read anonymously."
        ),
    )


    _uri_scheme = field_validator("uri")(_served_scheme)


class OptimizationSpec(ApiModel):
    recipe: str = Field(
        default="none",
        max_length=256,
        pattern=RECIPE_CHAIN_PATTERN,
        description=f"A recipe or a comma-separated chain applied in order: {', '.join(RECIPES)}.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.split(',').all(r, r in " + "[" + ", ".join(f"'{r}'" for r in RECIPES) + "])",
                    "message": f"unknown recipe; known recipes: {', '.join(RECIPES)}",
                }
            ]
        },
    )
    parameters: dict[ParameterKey, str] = Field(
        default_factory=dict,
        max_length=64,
        description="Recipe parameters, e.g. sparsity: '0.5', studentWidth: '0.25'. Keys: a letter, then letters, digits, '_', '.' or '-'.",
    )
    eval_data: str | None = Field(
        alias="evalData",
        default=None,
        max_length=2048,
        pattern=MODEL_URI_PATTERN,
        description="Evaluation data (.npz arrays named after the inputs, with labels for accuracy; or .txt sentences for encoders). Needed by lossy recipes. s3://, https:// or file://, as model.uri.",
        json_schema_extra={"x-kubernetes-validations": [SCHEME_RULE]},
    )
    accuracy_budget: float = Field(alias="accuracyBudget", default=0.01, ge=0, le=1, description="Largest allowed drop of the metric (0.01 = one point).")
    image: Image | None = Field(default=None, description="Optimizer image override.")
    timeout_seconds: int = Field(alias="timeoutSeconds", default=3600, ge=1, le=7 * 24 * 3600, description="The optimization Job's deadline.")

    _eval_scheme = field_validator("eval_data")(_served_scheme)

    @field_validator("recipe")
    @classmethod
    def _known_recipes(cls, value: str) -> str:
        parse_recipe_chain(value)
        return value

    @property
    def steps(self) -> list[str]:
        return [s for s in parse_recipe_chain(self.recipe) if s != "none"]


class DynamicBatchingSpec(ApiModel):
    mode: Literal["auto", "explicit", "disabled"] = Field(default="auto", description="auto: tuned by a tuning Job on the HardwareClass's nodes with its Triton image (the Deployment's server), for latencyObjectiveMs and expectedConcurrency.")
    max_batch_size: int | None = Field(alias="maxBatchSize", default=None, ge=1, le=4096)
    preferred_batch_sizes: list[int] | None = Field(alias="preferredBatchSizes", default=None, max_length=16)
    max_queue_delay_microseconds: int | None = Field(alias="maxQueueDelayMicroseconds", default=None, ge=0, le=10_000_000)
    require_tuning: bool = Field(
        alias="requireTuning",
        default=False,
        description="auto only: when the tuning Job fails, fail the model (true) instead of deploying with the default batching (false).",
    )

    @model_validator(mode="after")
    def _explicit_needs_sizes(self) -> "DynamicBatchingSpec":
        if self.mode == "explicit" and self.max_batch_size is None:
            raise ValueError("dynamicBatching.mode explicit needs maxBatchSize")
        return self


class AutoscalingSpec(ApiModel):
    # An HPA refuses minReplicas 0 (scale to zero is an alpha feature gate).
    min_replicas: int = Field(alias="minReplicas", default=1, ge=1, le=1000)
    max_replicas: int = Field(alias="maxReplicas", ge=1, le=1000)
    target_queue_microseconds: int = Field(
        alias="targetQueueMicroseconds", default=50_000, ge=1,
        description="Target average time a request waits in Triton's queue, per pod (the HPA's Pods metric).",
    )


class ServingSpec(ApiModel):
    replicas: int = Field(default=1, ge=0, le=1000, description="Triton replicas (ignored when autoscaling is set).")
    autoscaling: AutoscalingSpec | None = None
    latency_objective_ms: float = Field(alias="latencyObjectiveMs", default=100.0, gt=0, le=600_000, description="p99 latency objective.")
    dynamic_batching: DynamicBatchingSpec = Field(alias="dynamicBatching", default_factory=DynamicBatchingSpec)
    expected_concurrency: int = Field(
        alias="expectedConcurrency",
        default=16,
        ge=1,
        le=4096,
        description="Concurrent client requests auto batching tunes for (closed-loop clients of the tuning load).",
    )
    request_batch_size: int = Field(
        alias="requestBatchSize",
        default=1,
        ge=1,
        le=4096,
        description="Rows (the batch dimension) one client request carries: the tuning load sends requests of this size, and auto batching never chooses a maxBatchSize below it (Triton refuses a request larger than the model's maxBatchSize).",
    )
    instance_count: int = Field(alias="instanceCount", default=1, ge=1, le=64, description="Triton model instances per replica (auto batching may choose another).")
    triton_image: Image | None = Field(alias="tritonImage", default=None, description="Triton image override.")
    response_cache: bool = Field(alias="responseCache", default=False, description="Triton's response cache for repeated inputs.")

    @model_validator(mode="after")
    def _requests_fit_the_batch(self) -> "ServingSpec":
        batching = self.dynamic_batching
        if batching.mode == "explicit" and batching.max_batch_size is not None and batching.max_batch_size < self.request_batch_size:
            raise ValueError(f"dynamicBatching.maxBatchSize {batching.max_batch_size} is below requestBatchSize {self.request_batch_size}: Triton would refuse every request")
        return self


class HardwareRef(ApiModel):
    class_name: Dns1123Subdomain = Field(alias="class", description="Name of a HardwareClass.")


class InferenceModelSpec(ApiModel):
    model: ModelSource
    optimization: OptimizationSpec = Field(default_factory=OptimizationSpec)
    hardware: HardwareRef
    serving: ServingSpec = Field(default_factory=ServingSpec)


class InferenceModelStatus(ApiModel):
    phase: Phase | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = Field(alias="observedGeneration", default=None)
    job_name: str | None = Field(alias="jobName", default=None)
    tuning_job_name: str | None = Field(alias="tuningJobName", default=None, description="The tuning Job of the artifact (dynamicBatching: auto).")
    artifact_uri: str | None = Field(alias="artifactUri", default=None)
    report: OptimizationReport | None = None
    batching: BatchingConfig | None = None
    endpoint: str | None = None
    replicas: int | None = None
    ready_replicas: int | None = Field(alias="readyReplicas", default=None)
    selector: str | None = Field(default=None, description="Label selector of the Triton pods (scale subresource).")


class InferenceModel(ApiModel):
    spec: InferenceModelSpec
