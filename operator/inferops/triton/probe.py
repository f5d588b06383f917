"""Client-side checks of a running Triton: the smoke inference the operator sends before Ready."""

from __future__ import annotations

import time

import numpy as np

from inferops.api.tensors import Signature

from .loadgen import request_inputs


class ProbeError(RuntimeError):
    """The server or the model is not serving; the message says which check failed."""


def _client(url: str, protocol: str, timeout_s: float):
    # The operator's URLs carry a scheme (http://host:8000); tritonclient wants host:port only.
    scheme, _, address = url.rpartition("://")
    if protocol == "http":
        import tritonclient.http as module

        return module, module.InferenceServerClient(address, connection_timeout=timeout_s, network_timeout=timeout_s, ssl=scheme == "https")
    if protocol == "grpc":
        import tritonclient.grpc as module

        return module, module.InferenceServerClient(address)
    raise ValueError(f"protocol {protocol!r} is not http or grpc")


def smoke_infer(url: str, model_name: str, signature: Signature, protocol: str = "http", timeout_s: float = 10) -> dict:
    """Check that the server is live and ready and the model ready, then send one inference of
    batch 1 (random floats, zeros otherwise) and check every output of the signature came back.

    Returns {"model", "outputs": {name: shape}, "latency_ms"}; raises ProbeError otherwise."""
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    module, client = _client(url, protocol, timeout_s)
    grpc_timeout = {"client_timeout": timeout_s} if protocol == "grpc" else {}
    try:
        try:
            if not client.is_server_live(**grpc_timeout):
                raise ProbeError(f"Triton at {url} is not live")
            if not client.is_server_ready(**grpc_timeout):
                raise ProbeError(f"Triton at {url} is live but not ready (a model failed to load, or it is still loading)")
            if not client.is_model_ready(model_name, **grpc_timeout):
                raise ProbeError(f"model {model_name!r} is not ready on {url}; its load error is in the Triton log")
            max_batch_size = _max_batch_size(client.get_model_config(model_name, **grpc_timeout))
            inputs = []
            for name, array in request_inputs(signature, max_batch_size).items():
                item = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
                item.set_data_from_numpy(array)
                inputs.append(item)
            outputs = [module.InferRequestedOutput(t.name) for t in signature.outputs]
            started = time.perf_counter()
            result = client.infer(model_name, inputs, outputs=outputs, **grpc_timeout)
            latency_ms = (time.perf_counter() - started) * 1e3
        except InferenceServerException as error:
            raise ProbeError(f"smoke inference of {model_name!r} at {url} failed: {error}") from error
        except (ConnectionError, OSError) as error:
            raise ProbeError(f"cannot reach Triton at {url}: {error}") from error
        shapes = {}
        for tensor in signature.outputs:
            array = result.as_numpy(tensor.name)
            if array is None:
                raise ProbeError(f"model {model_name!r} returned no output {tensor.name!r}")
            if array.dtype != np.object_ and not np.all(np.isfinite(array.astype(np.float64, copy=False))):
                raise ProbeError(f"output {tensor.name!r} of {model_name!r} holds NaN or infinity")
            shapes[tensor.name] = list(array.shape)
        return {"model": model_name, "outputs": shapes, "latency_ms": round(latency_ms, 3)}
    finally:
        client.close()


def served_signature(url: str, model_name: str, protocol: str = "grpc", timeout_s: float = 10) -> tuple[Signature, int]:
    """The signature and max_batch_size of a model as the server holds its config."""
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2
    from tritonclient.utils import InferenceServerException

    from .config import signature_from_config

    _, client = _client(url, protocol, timeout_s)
    try:
        if protocol == "grpc":
            config = client.get_model_config(model_name, client_timeout=timeout_s).config
        else:
            config = json_format.ParseDict(client.get_model_config(model_name), model_config_pb2.ModelConfig(), ignore_unknown_fields=True)
    except InferenceServerException as error:
        raise ProbeError(f"cannot read the config of {model_name!r} at {url}: {error}") from error
    except (ConnectionError, OSError) as error:
        raise ProbeError(f"cannot reach Triton at {url}: {error}") from error
    finally:
        client.close()
    return signature_from_config(config), int(config.max_batch_size)


def _max_batch_size(config) -> int:
    if isinstance(config, dict):  # http: the config as JSON
        return int(config.get("max_batch_size", 0))
    return int(config.config.max_batch_size)  # grpc: ModelConfigResponse
