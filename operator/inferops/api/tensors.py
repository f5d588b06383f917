"""Tensor signatures and Triton batching settings shared by the API, the optimizer and the Triton builder."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Triton data types, without the TYPE_ prefix that config.pbtxt puts in front of them.
DataType = Literal["BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"]


class ApiModel(BaseModel):
    """Base of every API object: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TensorSpec(ApiModel):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:/-]+$", description="Tensor name as the model declares it.")
    datatype: DataType = Field(description="Triton data type, e.g. FP32, INT64.")
    dims: list[int] = Field(
        min_length=0,
        max_length=8,
        description="Shape without the batch dimension; -1 marks a variable dimension.",
    )


class Signature(ApiModel):
    inputs: list[TensorSpec] = Field(default_factory=list, max_length=32)
    outputs: list[TensorSpec] = Field(default_factory=list, max_length=32)


class ExecutionAccelerator(ApiModel):
    """A GPU execution accelerator the artifact is meant to run with (config.pbtxt's optimization block)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="e.g. tensorrt: ONNX Runtime's TensorRT execution provider")
    parameters: dict[str, str] = Field(default_factory=dict, description="e.g. precision_mode: FP16")


class BatchingConfig(ApiModel):
    """A concrete batching setup, as rendered into config.pbtxt and reported in status."""

    max_batch_size: int = Field(alias="maxBatchSize", ge=0, le=4096)
    preferred_batch_sizes: list[int] = Field(alias="preferredBatchSizes", default_factory=list, max_length=16)
    max_queue_delay_microseconds: int = Field(alias="maxQueueDelayMicroseconds", default=0, ge=0, le=10_000_000)
    instance_count: int = Field(alias="instanceCount", default=1, ge=1, le=64)
    dynamic_batching: bool = Field(alias="dynamicBatching", default=True)
