"""Unit tests of the config.pbtxt builder: every output parses as Triton's ModelConfig."""

from __future__ import annotations

import itertools

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from inferops.api.tensors import BatchingConfig, Signature, TensorSpec
from inferops.triton.config import BACKENDS, ModelConfigError, QueuePolicy, build_model_config, parse_model_config, signature_from_config

SIGNATURE = Signature(
    inputs=[TensorSpec(name="pixels", datatype="FP32", dims=[64]), TensorSpec(name="mask", datatype="INT64", dims=[-1])],
    outputs=[TensorSpec(name="logits", datatype="FP32", dims=[10])],
)
BATCHED = BatchingConfig(max_batch_size=32, preferred_batch_sizes=[16, 8], max_queue_delay_microseconds=500, instance_count=2)


@pytest.mark.parametrize(
    ("backend", "kind", "batching"),
    [
        (backend, kind, batching)
        for backend, kind, batching in itertools.product(
            BACKENDS, ["KIND_CPU", "KIND_GPU"], [None, BATCHED, BatchingConfig(max_batch_size=4, dynamic_batching=False)]
        )
        if not (backend == "tensorrt" and kind == "KIND_CPU")
    ],
)
def test_every_valid_combination_parses_as_model_config(backend, kind, batching):
    text = build_model_config("digits", backend, SIGNATURE, batching, kind)
    config = parse_model_config(text)
    assert config.name == "digits"
    platform, backend_field = BACKENDS[backend]
    assert config.platform == (platform or "")
    assert config.backend == (backend_field or "")
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.Kind.Value(kind)]
    assert config.instance_group[0].count == (batching.instance_count if batching else 1)
    assert config.HasField("dynamic_batching") == bool(batching and batching.dynamic_batching)


def test_batched_dims_exclude_the_batch_dimension():
    config = parse_model_config(build_model_config("digits", "onnxruntime", SIGNATURE, BATCHED))
    assert config.max_batch_size == 32
    assert [list(i.dims) for i in config.input] == [[64], [-1]]
    assert list(config.output[0].dims) == [10]
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    # No queue policy unless asked: Triton keeps payload prefetching only without timeouts,
    # overrides or a queue bound (without it a one-instance batcher stalls; see test_serving).
    assert not config.dynamic_batching.HasField("default_queue_policy")


def test_unbatched_dims_carry_the_batch_dimension():
    config = parse_model_config(build_model_config("digits", "onnxruntime", SIGNATURE, None))
    assert config.max_batch_size == 0
    assert [list(i.dims) for i in config.input] == [[-1, 64], [-1, -1]]
    assert list(config.output[0].dims) == [-1, 10]


def test_scalar_per_item_input_is_reshaped():
    signature = Signature(inputs=[TensorSpec(name="id", datatype="INT64", dims=[])], outputs=SIGNATURE.outputs)
    config = parse_model_config(build_model_config("ids", "python", signature, BATCHED))
    assert list(config.input[0].dims) == [1]
    assert config.input[0].HasField("reshape") and list(config.input[0].reshape.shape) == []


def test_warmup_uses_concrete_dims_and_safe_data():
    config = parse_model_config(build_model_config("digits", "onnxruntime", SIGNATURE, BATCHED))
    (warmup,) = config.model_warmup
    assert warmup.batch_size == 1
    assert list(warmup.inputs["pixels"].dims) == [64] and warmup.inputs["pixels"].random_data
    # a variable dim becomes 1; integer inputs get zeros (random ids could be out of range)
    assert list(warmup.inputs["mask"].dims) == [1] and warmup.inputs["mask"].zero_data
    assert not parse_model_config(build_model_config("digits", "onnxruntime", SIGNATURE, BATCHED, warmup=False)).model_warmup


def test_response_cache_queue_policy_and_gpus():
    policy = QueuePolicy(timeout_action="DELAY", default_timeout_microseconds=100_000, max_queue_size=64)
    text = build_model_config("digits", "tensorrt", SIGNATURE, BATCHED, "KIND_GPU", response_cache=True, gpus=[0, 1], queue_policy=policy)
    config = parse_model_config(text)
    assert config.response_cache.enable
    assert list(config.instance_group[0].gpus) == [0, 1]
    queue = config.dynamic_batching.default_queue_policy
    assert (queue.timeout_action, queue.default_timeout_microseconds, queue.max_queue_size) == (model_config_pb2.ModelQueuePolicy.DELAY, 100_000, 64)
    assert not queue.allow_timeout_override


def test_strings_are_quoted_for_protobuf_text():
    signature = Signature(inputs=[TensorSpec(name="in:0/x", datatype="BYTES", dims=[1])], outputs=SIGNATURE.outputs)
    config = parse_model_config(build_model_config("text.model-1", "python", signature, BATCHED))
    assert config.input[0].name == "in:0/x"
    assert config.input[0].data_type == model_config_pb2.TYPE_STRING


def test_parse_refuses_unknown_fields():
    with pytest.raises(text_format.ParseError):
        parse_model_config('name: "x"\nmax_batch_sise: 4\n')


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"batching": BatchingConfig(max_batch_size=8, preferred_batch_sizes=[4, 16])}, "preferred batch sizes [16] exceed max_batch_size 8"),
        ({"batching": BatchingConfig(max_batch_size=0)}, "dynamic batching needs max_batch_size >= 1"),
        ({"batching": BatchingConfig(max_batch_size=8, preferred_batch_sizes=[4, 4])}, "repeat a size"),
        ({"batching": BatchingConfig(max_batch_size=8, preferred_batch_sizes=[4], dynamic_batching=False)}, "take effect only with dynamic batching"),
        ({"backend": "tensorrt"}, "TensorRT plan runs only on a GPU"),
        ({"backend": "tflite"}, "backend 'tflite' is not one of"),
        ({"instance_kind": "KIND_TPU"}, "instance kind 'KIND_TPU' is not one of"),
        ({"gpus": [0]}, "gpus apply only to KIND_GPU"),
        ({"name": "../etc"}, "model name '../etc'"),
        ({"signature": Signature(outputs=SIGNATURE.outputs)}, "the signature has no inputs"),
        ({"signature": Signature(inputs=SIGNATURE.inputs)}, "the signature has no outputs"),
        ({"signature": Signature(inputs=[TensorSpec(name="x", datatype="FP32", dims=[0, 3])], outputs=SIGNATURE.outputs)}, "dims [0, 3]"),
        ({"signature": Signature(inputs=[TensorSpec(name="x", datatype="FP32", dims=[-2])], outputs=SIGNATURE.outputs)}, "or -1 for a variable size"),
        ({"signature": Signature(inputs=[TensorSpec(name="logits", datatype="FP32", dims=[3])], outputs=SIGNATURE.outputs)}, "used twice"),
        (
            {"backend": "tensorrt", "instance_kind": "KIND_GPU", "signature": Signature(inputs=[TensorSpec(name="t", datatype="BYTES", dims=[1])], outputs=SIGNATURE.outputs)},
            "BYTES, which the tensorrt backend cannot take",
        ),
        ({"batching": None, "queue_policy": QueuePolicy()}, "queue policy applies only with dynamic batching"),
    ],
)
def test_rejected_combinations_have_readable_messages(kwargs, fragment):
    args = {"name": "digits", "backend": "onnxruntime", "signature": SIGNATURE, "batching": BATCHED, "instance_kind": "KIND_CPU"} | kwargs
    with pytest.raises(ModelConfigError) as caught:
        build_model_config(**args)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"invalid Triton config for model {args['name']!r}:")


def test_all_problems_are_reported_at_once():
    bad = BatchingConfig(max_batch_size=0, preferred_batch_sizes=[4])
    with pytest.raises(ModelConfigError) as caught:
        build_model_config("digits", "tensorrt", Signature(), bad, "KIND_CPU")
    assert len(caught.value.problems) == 5, caught.value.problems


@pytest.mark.parametrize("batching", [None, BATCHED])
def test_signature_reads_back_from_a_built_config(batching):
    signature = Signature(
        inputs=[*SIGNATURE.inputs, TensorSpec(name="ids", datatype="INT64", dims=[]), TensorSpec(name="text", datatype="BYTES", dims=[2])],
        outputs=SIGNATURE.outputs,
    )
    config = parse_model_config(build_model_config("digits", "python", signature, batching))
    assert signature_from_config(config) == signature
