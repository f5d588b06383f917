"""The optimization report: written by the optimization Job beside the artifact, copied into status."""

from __future__ import annotations

from pydantic import Field

from .tensors import ApiModel, BatchingConfig, ExecutionAccelerator, Signature


class BeforeAfter(ApiModel):
    before: float | None = None
    after: float | None = None


class AccuracyReport(ApiModel):
    metric: str = Field(description="accuracy, cosine, ...")
    before: float | None = None
    after: float | None = None
    drop: float | None = None
    budget: float | None = None
    passed: bool = True


class TuningPoint(ApiModel):
    """One batching config the tuner measured."""

    max_batch_size: int = Field(alias="maxBatchSize")
    max_queue_delay_microseconds: int = Field(alias="maxQueueDelayMicroseconds")
    instance_count: int = Field(alias="instanceCount")
    preferred_batch_sizes: list[int] | None = Field(
        default=None, alias="preferredBatchSizes", max_length=16,
        description="the dynamic batcher's preferred sizes: [maxBatchSize] waits for full batches (Triton's default), [maxBatchSize/2, maxBatchSize] sends half a batch without waiting",
    )
    throughput_per_s: float = Field(alias="throughputPerSecond")
    p99_ms: float | None = Field(default=None, alias="p99Ms", description="absent when the point failed; over all the requests of every measurement it took part in")
    mean_batch_size: float | None = Field(default=None, alias="meanBatchSize", description="rows per execution, from the server's statistics while the point was driven")
    observations: int = Field(default=1, description="measurements the point took part in (single runs or duels): a duel's incumbent is watched again")
    error: str | None = Field(default=None, max_length=300)


class TuningReport(ApiModel):
    """What `dynamicBatching: auto` measured and chose."""

    chosen: BatchingConfig
    throughput_per_s: float = Field(alias="throughputPerSecond")
    p99_ms: float = Field(alias="p99Ms")
    latency_objective_ms: float = Field(alias="latencyObjectiveMs")
    measurements: int
    grid_size: int = Field(alias="gridSize")
    points: list[TuningPoint] = Field(default_factory=list, description="every config measured, in the order first measured")
    concurrency: int | None = Field(default=None, description="closed-loop clients the configs were measured at")
    request_batch_size: int | None = Field(default=None, alias="requestBatchSize", description="rows each of those clients' requests carried (throughput counts rows)")
    wall_seconds: float | None = Field(default=None, alias="wallSeconds", description="how long the tuning took, server start excluded")
    measured_with: str | None = Field(default=None, alias="measuredWith", max_length=64, description="the load generator: perf_analyzer or inferops-loadgen")
    image: str | None = Field(default=None, max_length=512, description="the Triton image measured on (the tuning pod's)")
    node: str | None = Field(default=None, max_length=253, description="the node measured on")
    instance_kind: str | None = Field(default=None, alias="instanceKind", max_length=16, description="KIND_CPU or KIND_GPU, as the candidates were loaded")
    accelerator: str | None = Field(default=None, max_length=128, description="the GPU (or none) measured on")


class LayerSensitivity(ApiModel):
    layer: str = Field(max_length=256, description="ONNX node name")
    op: str = Field(max_length=64)
    weight: str | None = Field(default=None, max_length=256, description="its weight initializer")
    error: float = Field(description="output error with this layer alone in int8: mean squared error of the first output over its mean square (0 = none)")


class PrecisionAttempt(ApiModel):
    """One candidate the accuracy-aware search measured."""

    float_layers: list[str] = Field(alias="floatLayers", default_factory=list, max_length=256)
    metric: float
    drop: float
    passed: bool
    size_bytes: int = Field(alias="sizeBytes")


class MixedPrecisionReport(ApiModel):
    """What accuracy-aware int8 measured and kept in float."""

    recipe: str
    float_layers: list[str] = Field(alias="floatLayers", default_factory=list, max_length=256, description="layers kept in float, most sensitive first")
    int8_layers: int = Field(alias="int8Layers", description="weighted layers left in int8")
    candidate_layers: int = Field(alias="candidateLayers", description="weighted layers the quantizer could take")
    full_int8: PrecisionAttempt = Field(alias="fullInt8")
    chosen: PrecisionAttempt
    size_cost_bytes: int = Field(alias="sizeCostBytes", description="chosen size minus the full int8 size")
    latency_ms_batch32: BeforeAfter = Field(alias="latencyMsBatch32", default_factory=BeforeAfter, description="before: full int8, after: chosen")
    sensitivity: list[LayerSensitivity] = Field(default_factory=list, max_length=64, description="most sensitive first (at most 64)")
    attempts: list[PrecisionAttempt] = Field(default_factory=list, max_length=64, description="every candidate measured, in order")


class ConversionReport(ApiModel):
    """How the model was turned into ONNX before any recipe ran."""

    from_format: str = Field(alias="fromFormat")
    tool: str = Field(max_length=128)
    tool_versions: dict[str, str] = Field(alias="toolVersions", default_factory=dict)
    seconds: float
    dynamic_batch: bool = Field(alias="dynamicBatch")
    fidelity_rows: int | None = Field(alias="fidelityRows", default=None, description="rows compared between the original and the ONNX export")
    fidelity_source: str | None = Field(alias="fidelitySource", default=None, description="eval data or generated inputs")
    max_abs_diff: float | None = Field(alias="maxAbsDiff", default=None)
    max_rel_diff: float | None = Field(alias="maxRelDiff", default=None, description="largest |diff| over the largest |original output|")


class OptimizationReport(ApiModel):
    artifact_uri: str = Field(alias="artifactUri")
    model_name: str = Field(alias="modelName")
    backend: str = Field(description="Triton backend or platform of the artifact: onnxruntime, tensorrt, pytorch, python")
    steps: list[str] = Field(default_factory=list)
    size_bytes: BeforeAfter = Field(alias="sizeBytes", default_factory=BeforeAfter)
    latency_ms_batch1: BeforeAfter = Field(alias="latencyMsBatch1", default_factory=BeforeAfter)
    latency_ms_batch32: BeforeAfter = Field(alias="latencyMsBatch32", default_factory=BeforeAfter)
    accuracy: AccuracyReport | None = None
    signature: Signature = Field(default_factory=Signature)
    checksums: dict[str, str] = Field(default_factory=dict, description="sha256 of each file written")
    tools: dict[str, str] = Field(default_factory=dict, description="versions of the tools used")
    notes: list[str] = Field(default_factory=list)
    tuning: TuningReport | None = None
    accelerators: list[ExecutionAccelerator] = Field(
        default_factory=list, max_length=4, description="GPU execution accelerators every config.pbtxt of this artifact enables"
    )
    conversion: ConversionReport | None = None
    mixed_precision: MixedPrecisionReport | None = Field(alias="mixedPrecision", default=None)
    passed: bool = True
