"""Closed-loop load on a Triton model: N clients, each sending its next request when the last returns.

Used by `inferops bench` and by the batching tuner. The clients are asyncio tasks on
tritonclient's aio clients, so one Python thread keeps many requests in flight.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, fields

import numpy as np

from inferops.api.tensors import Signature

PROTOCOLS = ("grpc", "http")
WINDOWS = 3


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    duration_s: float
    throughput_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    # Throughput of the slowest of WINDOWS equal slices of the measured time: a config that
    # stalls now and then shows it here even when the whole run's average hides it.
    sustained_per_s: float = 0.0
    first_error: str | None = None
    # Every counted request's latency, so that windows can be pooled (the tuner's p99 over a duel).
    latencies_ms: tuple[float, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "latencies_ms"}


class LoadError(RuntimeError):
    pass


def request_inputs(signature: Signature, max_batch_size: int, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays matching a signature: random floats, zeros for integers, bools and strings.

    Signature dims exclude the batch dimension; with max_batch_size > 0 a batch dimension of
    `batch` is put in front, otherwise the model's leading dim (-1 in its config) gets `batch`.
    Other variable dims (-1) become 1.
    """
    from tritonclient.utils import triton_to_np_dtype

    rng = np.random.default_rng(seed)
    arrays = {}
    for tensor in signature.inputs:
        shape = [batch] + [1 if d == -1 else d for d in tensor.dims]
        if tensor.datatype == "BYTES":
            arrays[tensor.name] = np.full(shape, b"", dtype=np.object_)
            continue
        dtype = triton_to_np_dtype(tensor.datatype)
        if np.issubdtype(dtype, np.floating):
            arrays[tensor.name] = rng.random(shape, dtype=np.float32).astype(dtype)
        else:
            arrays[tensor.name] = np.zeros(shape, dtype=dtype)
    return arrays


def percentiles(latencies_ms, *qs: float) -> list[float]:
    """The latency percentiles `qs` of a run, or of several runs' latencies pooled."""
    return [float(v) for v in np.percentile(np.asarray(latencies_ms, dtype=float), qs)]


def _client_module(protocol: str):
    if protocol == "grpc":
        import tritonclient.grpc.aio as module
    elif protocol == "http":
        import tritonclient.http.aio as module
    else:
        raise ValueError(f"protocol {protocol!r} is not one of {PROTOCOLS}")
    return module


def _infer_inputs(module, arrays: dict[str, np.ndarray]) -> list:
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for name, array in arrays.items():
        item = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        item.set_data_from_numpy(array)
        inputs.append(item)
    return inputs


def _infer_request_bytes(model_name: str, arrays: dict[str, np.ndarray]) -> bytes:
    """One serialized ModelInferRequest sending `arrays`: built once, sent by every request."""
    from tritonclient.grpc import service_pb2
    from tritonclient.utils import np_to_triton_dtype, serialize_byte_tensor

    request = service_pb2.ModelInferRequest(model_name=model_name)
    for name, array in arrays.items():
        request.inputs.add(name=name, datatype=np_to_triton_dtype(array.dtype), shape=list(array.shape))
        raw = serialize_byte_tensor(array).tobytes() if array.dtype == np.object_ else np.ascontiguousarray(array).tobytes()
        request.raw_input_contents.append(raw)
    return request.SerializeToString()


class _LeanGrpc:
    """gRPC ModelInfer with the request serialized once and the response left unparsed: the
    load generator's cost per request is then grpc's own, about half of tritonclient's aio client
    (which builds and parses a protobuf per call). Triton reports a failed inference as the call's
    status, so an unparsed response is a successful one."""

    def __init__(self, url: str, model_name: str, arrays: dict[str, np.ndarray], timeout_s: float):
        import grpc

        self._channel = grpc.aio.insecure_channel(url, options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
        # No serializers: grpc sends and returns bytes as they are.
        self._call = self._channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        self._request = _infer_request_bytes(model_name, arrays)
        self._timeout = timeout_s

    def caller(self):
        request, call, timeout = self._request, self._call, self._timeout

        async def infer():
            await call(request, timeout=timeout)

        return infer

    async def close(self):
        await self._channel.close()


class _ClientLibrary:
    """tritonclient's aio client (HTTP, or gRPC with lean=False)."""

    def __init__(self, url: str, model_name: str, arrays: dict[str, np.ndarray], protocol: str, timeout_s: float):
        self._module = _client_module(protocol)
        self._client = self._module.InferenceServerClient(url)
        self._model_name, self._arrays = model_name, arrays
        self._kwargs = {"client_timeout": timeout_s} if protocol == "grpc" else {}

    def caller(self):
        inputs = _infer_inputs(self._module, self._arrays)
        client, name, kwargs = self._client, self._model_name, self._kwargs

        async def infer():
            await client.infer(name, inputs, **kwargs)

        return infer

    async def close(self):
        await self._client.close()


async def _drive(url, model_name, arrays, concurrency, requests, duration_s, warmup_s, protocol, timeout_s, lean=True):
    if protocol == "grpc" and lean:
        client = _LeanGrpc(url, model_name, arrays, timeout_s)
    else:
        client = _ClientLibrary(url, model_name, arrays, protocol, timeout_s)
    latencies: list[float] = []
    finished: list[float] = []  # completion times of the counted requests done inside the window
    rates: list[float] = []  # per client: requests over the time from the first one's start to the last one's return
    errors: list[str] = []
    state = {"measuring": False, "issued": 0}
    stop = asyncio.Event()

    async def worker():
        infer = client.caller()
        done, first, last = 0, None, None
        try:
            while not stop.is_set():
                counted = state["measuring"]
                if counted:
                    if requests is not None and state["issued"] >= requests:
                        return
                    state["issued"] += 1
                start = time.perf_counter()
                try:
                    await infer()
                except Exception as error:  # noqa: BLE001 - reported, and counted as a failed request
                    if counted:
                        errors.append(_describe(error))
                    continue
                now = time.perf_counter()
                if state["measuring"]:
                    # The client's rate runs over whole requests, from the start of the one in
                    # flight when the window opened to the return of the one in flight when it
                    # closed: a batcher stall at either end costs the window what it costs the
                    # client, and the requests cut by the window's edges bias nothing.
                    done, first, last = done + 1, first if first is not None else start, now
                if counted:
                    latencies.append(now - start)
                    if not stop.is_set():
                        finished.append(now)
        finally:
            if done:
                rates.append(done / (last - first))

    try:
        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.sleep(warmup_s)
        state["measuring"] = True
        # Requests issued during warm-up and finishing now are not counted: their start was unmeasured.
        began = time.perf_counter()
        if requests is None:
            await asyncio.sleep(duration_s)
            stop.set()
            elapsed = time.perf_counter() - began
            await asyncio.gather(*tasks)
        else:
            # Completed only when every counted request has come back.
            while len(latencies) + len(errors) < requests:
                if all(t.done() for t in tasks) and len(latencies) + len(errors) < requests:
                    break
                await asyncio.sleep(0.001)
            elapsed = time.perf_counter() - began
            stop.set()
            await asyncio.gather(*tasks)
    finally:
        await client.close()
    return latencies, [t - began for t in finished], errors, elapsed, sum(rates)


def _describe(error: Exception) -> str:
    details = getattr(error, "details", None)
    if callable(details):  # a grpc call's error: its status and Triton's message
        return f"{error.code().name}: {details()}"
    return f"{type(error).__name__}: {error}"


def run_load(
    url: str,
    model_name: str,
    arrays: dict[str, np.ndarray],
    *,
    concurrency: int,
    requests: int | None = None,
    duration_s: float | None = 2.0,
    warmup_s: float = 0.5,
    protocol: str = "grpc",
    timeout_s: float = 30.0,
    lean: bool = True,
) -> LoadResult:
    """Keep `concurrency` requests in flight for `duration_s` seconds (or until `requests` counted ones
    are done) after `warmup_s` of uncounted load; every request sends `arrays`."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if requests is None and not duration_s:
        raise ValueError("give a number of requests or a duration")
    if protocol == "http" and lean:
        from .rawhttp import drive

        latencies, finished, errors, elapsed, throughput = drive(url, model_name, arrays, concurrency, requests, duration_s, warmup_s, timeout_s)
    else:
        latencies, finished, errors, elapsed, throughput = asyncio.run(_drive(url, model_name, arrays, concurrency, requests, duration_s, warmup_s, protocol, timeout_s, lean))
    if errors and not latencies:
        raise LoadError(f"no successful request to {model_name!r} at {url} ({len(errors)} failed): {errors[0]}")
    # No request counted and none failed: every client still waited on its warm-up request when
    # the window closed (a batcher stall), so each waited at least the whole window.
    ms = np.array(latencies or [elapsed] * concurrency) * 1e3
    counts = np.histogram(finished, bins=WINDOWS, range=(0.0, elapsed))[0]
    p50, p90, p99 = percentiles(ms, 50, 90, 99)
    return LoadResult(
        concurrency=concurrency,
        requests=len(latencies),  # 0 when the whole window stalled
        errors=len(errors),
        duration_s=elapsed,
        throughput_per_s=throughput,
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        mean_ms=float(ms.mean()),
        sustained_per_s=float(counts.min() / (elapsed / WINDOWS)),
        first_error=errors[0] if errors else None,
        latencies_ms=tuple(ms.tolist()),
    )
