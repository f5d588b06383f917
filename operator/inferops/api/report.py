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
    throughput_per_s: float = Field(alias="throughputPerSecond")
    p99_ms: float | None = Field(default=None, alias="p99Ms", description="absent when the point failed; over all the requests of every measurement it took part in")
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
    passed: bool = True
