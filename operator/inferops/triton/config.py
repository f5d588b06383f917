"""Build, check and parse Triton `config.pbtxt` files.

`build_model_config` refuses what Triton would refuse (and a few things it would accept but
get wrong), renders inferops/templates/config.pbtxt.j2, and parses the result back with the
`ModelConfig` protobuf that tritonclient ships before returning it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from inferops.api.tensors import BatchingConfig, ExecutionAccelerator, Signature, TensorSpec
from inferops.templating import render

TEMPLATE = "config.pbtxt.j2"

# backend name -> (platform, backend) as config.pbtxt spells them.
BACKENDS: dict[str, tuple[str | None, str | None]] = {
    "onnxruntime": (None, "onnxruntime"),
    "tensorrt": ("tensorrt_plan", None),
    "pytorch": ("pytorch_libtorch", None),
    "python": (None, "python"),
}
INSTANCE_KINDS = ("KIND_CPU", "KIND_GPU", "KIND_AUTO")
# Backends that cannot exchange string tensors.
NO_BYTES_BACKENDS = {"tensorrt"}
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
FLOAT_TYPES = {"FP16", "FP32", "FP64", "BF16"}


class ModelConfigError(ValueError):
    """A model configuration Triton would refuse; `problems` lists each reason on its own."""

    def __init__(self, name: str, problems: list[str]):
        self.problems = list(problems)
        bullet = "\n  - "
        super().__init__(f"invalid Triton config for model {name!r}:{bullet}{bullet.join(self.problems)}")


@dataclass(frozen=True)
class QueuePolicy:
    """The dynamic batcher's default queue policy; zeros mean no timeout and no bound.

    Rendered only when given: with a timeout or a bound Triton 2.51 turns payload prefetching
    off, and its batcher can then miss the wake-up of a freed instance and wait out its 500 ms
    default (one instance at 32 clients: 5 to 13 of 24 bursts held a whole batch for 500 ms).
    """

    timeout_action: str = "REJECT"
    default_timeout_microseconds: int = 0
    max_queue_size: int = 0


def validate_model_config(
    name: str,
    backend: str,
    signature: Signature,
    batching: BatchingConfig | None,
    instance_kind: str = "KIND_CPU",
    *,
    gpus: list[int] | None = None,
    queue_policy: QueuePolicy | None = None,
    gpu_accelerators: list[ExecutionAccelerator] = (),
) -> None:
    """Raise ModelConfigError naming every problem found, or return None."""
    problems: list[str] = []
    if not MODEL_NAME.match(name or ""):
        problems.append(
            f"model name {name!r} must be 1-128 characters of letters, digits, '_', '.', '-' starting with a letter or digit (it is a directory name in the model repository)"
        )
    if backend not in BACKENDS:
        problems.append(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if instance_kind not in INSTANCE_KINDS:
        problems.append(f"instance kind {instance_kind!r} is not one of {', '.join(INSTANCE_KINDS)}")
    if backend == "tensorrt" and instance_kind == "KIND_CPU":
        problems.append("a TensorRT plan runs only on a GPU: use instance kind KIND_GPU (a GPU HardwareClass), or an onnxruntime artifact for CPU nodes")
    if gpus is not None:
        if instance_kind != "KIND_GPU":
            problems.append(f"gpus {gpus} are set but the instance kind is {instance_kind}; gpus apply only to KIND_GPU")
        if any(g < 0 for g in gpus):
            problems.append(f"gpu ids must be >= 0, got {gpus}")

    if gpu_accelerators and instance_kind == "KIND_CPU":
        names = ", ".join(a.name for a in gpu_accelerators)
        problems.append(f"the artifact needs the GPU execution accelerator(s) {names}, which KIND_CPU instances never use: serve it on a GPU HardwareClass")
    problems += _signature_problems(backend, signature)
    problems += _batching_problems(batching)
    if queue_policy is not None:
        if batching is None or not batching.dynamic_batching:
            problems.append("a queue policy applies only with dynamic batching enabled")
        if queue_policy.timeout_action not in model_config_pb2.ModelQueuePolicy.TimeoutAction.keys():
            problems.append(f"queue timeout action {queue_policy.timeout_action!r} is not REJECT or DELAY")
        if queue_policy.default_timeout_microseconds < 0 or queue_policy.max_queue_size < 0:
            problems.append("queue timeout and max queue size must be >= 0 (0 means none)")
    if problems:
        raise ModelConfigError(name, problems)


def _signature_problems(backend: str, signature: Signature) -> list[str]:
    problems: list[str] = []
    if not signature.inputs:
        problems.append("the signature has no inputs: give spec.model.inputs, or use a model whose inputs can be read")
    if not signature.outputs:
        problems.append("the signature has no outputs: give spec.model.outputs, or use a model whose outputs can be read")
    seen: set[str] = set()
    for role, tensors in (("input", signature.inputs), ("output", signature.outputs)):
        for tensor in tensors:
            if tensor.name in seen:
                problems.append(f"tensor name {tensor.name!r} is used twice; input and output names must be unique")
            seen.add(tensor.name)
            bad = [d for d in tensor.dims if d == 0 or d < -1]
            if bad:
                problems.append(f"{role} {tensor.name!r} has dims {tensor.dims}: each dim must be >= 1, or -1 for a variable size (0 is never valid)")
            if tensor.datatype == "BYTES" and backend in NO_BYTES_BACKENDS:
                problems.append(f"{role} {tensor.name!r} is BYTES, which the {backend} backend cannot take; tokenize outside the model or use the python backend")
    return problems


def _batching_problems(batching: BatchingConfig | None) -> list[str]:
    if batching is None:
        return []
    problems: list[str] = []
    mbs = batching.max_batch_size
    if batching.dynamic_batching and mbs == 0:
        problems.append("dynamic batching needs max_batch_size >= 1: a model with max_batch_size 0 cannot be batched; set maxBatchSize or disable dynamic batching")
    too_big = [s for s in batching.preferred_batch_sizes if s > mbs]
    if too_big:
        problems.append(f"preferred batch sizes {too_big} exceed max_batch_size {mbs}; lower them or raise maxBatchSize")
    if any(s < 1 for s in batching.preferred_batch_sizes):
        problems.append(f"preferred batch sizes must be >= 1, got {batching.preferred_batch_sizes}")
    if len(set(batching.preferred_batch_sizes)) != len(batching.preferred_batch_sizes):
        problems.append(f"preferred batch sizes {batching.preferred_batch_sizes} repeat a size")
    if not batching.dynamic_batching and (batching.preferred_batch_sizes or batching.max_queue_delay_microseconds):
        problems.append("preferred batch sizes and max queue delay take effect only with dynamic batching; enable it or leave them unset")
    return problems


def config_data_type(datatype: str) -> str:
    """The config.pbtxt enum of a Triton data type: BYTES on the wire is TYPE_STRING in a config."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def _tensor_context(tensor: TensorSpec, batched: bool) -> dict:
    dims = list(tensor.dims)
    reshape = None
    if batched and not dims:
        # One scalar per batch item: Triton wants dims [1] and a reshape to the empty shape.
        dims, reshape = [1], []
    elif not batched:
        # Signature dims exclude the batch dimension; without Triton batching the model's own
        # batch dimension is part of the tensor's shape.
        dims = [-1] + dims
    return {"name": tensor.name, "datatype": tensor.datatype, "data_type": config_data_type(tensor.datatype), "dims": dims, "reshape": reshape}


def _warmup_context(inputs: list[dict]) -> list[dict]:
    tensors = []
    for tensor in inputs:
        dims = [1 if d == -1 else d for d in tensor["dims"]]
        # Random integers could be out of range for the model (token ids, class indices) and fail the
        # load; zeros are valid for every integer, bool and string input.
        data = "random_data" if tensor["datatype"] in FLOAT_TYPES else "zero_data"
        tensors.append({"name": tensor["name"], "data_type": tensor["data_type"], "dims": dims, "data": data})
    # batch_size 1 is what Triton asks of models without batching too.
    return [{"name": "warmup_batch1", "batch_size": 1, "inputs": tensors}]


def build_model_config(
    name: str,
    backend: str,
    signature: Signature,
    batching: BatchingConfig | None,
    instance_kind: str = "KIND_CPU",
    *,
    warmup: bool = True,
    response_cache: bool = False,
    gpus: list[int] | None = None,
    queue_policy: QueuePolicy | None = None,
    gpu_accelerators: list[ExecutionAccelerator] = (),
) -> str:
    """Return the config.pbtxt text for a model, or raise ModelConfigError.

    `batching=None` (or max_batch_size 0) renders max_batch_size 0: Triton then does no batching
    and every tensor's dims get the model's batch dimension back as a leading -1.
    """
    validate_model_config(name, backend, signature, batching, instance_kind, gpus=gpus, queue_policy=queue_policy, gpu_accelerators=gpu_accelerators)
    platform, backend_field = BACKENDS[backend]
    max_batch_size = batching.max_batch_size if batching else 0
    batched = max_batch_size > 0
    inputs = [_tensor_context(t, batched) for t in signature.inputs]
    outputs = [_tensor_context(t, batched) for t in signature.outputs]
    dynamic = None
    if batching is not None and batching.dynamic_batching:
        dynamic = {
            "preferred_batch_sizes": sorted(batching.preferred_batch_sizes),
            "max_queue_delay_microseconds": batching.max_queue_delay_microseconds,
            "queue_policy": queue_policy,
        }
    text = render(
        TEMPLATE,
        name=name,
        platform=platform,
        backend=backend_field,
        max_batch_size=max_batch_size,
        inputs=inputs,
        outputs=outputs,
        instance_kind=instance_kind,
        instance_count=batching.instance_count if batching else 1,
        gpus=gpus or [],
        dynamic_batching=dynamic,
        response_cache=response_cache,
        gpu_accelerators=[{"name": a.name, "parameters": sorted(a.parameters.items())} for a in gpu_accelerators],
        warmups=_warmup_context(inputs) if warmup else [],
    )
    parse_model_config(text)
    return text


def parse_model_config(text: str) -> model_config_pb2.ModelConfig:
    """Parse config.pbtxt text with Triton's own ModelConfig protobuf; unknown fields raise ParseError."""
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def signature_from_config(config: model_config_pb2.ModelConfig) -> Signature:
    """The signature (dims without the batch dimension) of a parsed ModelConfig."""

    def spec(tensor) -> TensorSpec:
        dims = list(tensor.dims)
        if config.max_batch_size == 0:
            dims = dims[1:]
        if tensor.HasField("reshape") and list(tensor.reshape.shape) == [] and dims == [1]:
            dims = []
        datatype = model_config_pb2.DataType.Name(tensor.data_type).removeprefix("TYPE_")
        return TensorSpec(name=tensor.name, datatype="BYTES" if datatype == "STRING" else datatype, dims=dims)

    return Signature(inputs=[spec(t) for t in config.input], outputs=[spec(t) for t in config.output])
