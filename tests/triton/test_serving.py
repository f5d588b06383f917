"""The rendered repository served by the real tritonserver (python backend running ONNX Runtime)."""

from __future__ import annotations

import statistics
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from inferops.api.tensors import BatchingConfig
from inferops.triton.config import ModelConfigError, build_model_config
from inferops.triton.loadgen import request_inputs, run_load
from inferops.triton.probe import ProbeError, smoke_infer
from inferops.triton.python_backend import local_repository
from inferops.triton.sample_model import INPUT, OUTPUT, SIGNATURE, digits_samples
from inferops.triton.server import TritonServer

MODEL = "digits"  # the name make_repository gives the model

pytestmark = [pytest.mark.triton, pytest.mark.timeout(300)]


def metric(server: TritonServer, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + "{") and f'model="{MODEL}"' in line)


def test_rendered_repository_loads_and_answers(make_repository, tmp_path):
    batching = BatchingConfig(max_batch_size=16, preferred_batch_sizes=[8, 16], max_queue_delay_microseconds=1000, instance_count=2)
    source = make_repository(batching, response_cache=True)
    repository = local_repository(source, tmp_path / "local")
    with TritonServer(repository, cache_size_bytes=1 << 20) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            assert client.is_model_ready(MODEL)
            served = client.get_model_config(MODEL)
            assert served["max_batch_size"] == 16 and served["backend"] == "python"
            assert served["dynamic_batching"]["preferred_batch_size"] == [8, 16]
            assert served["instance_group"][0]["count"] == 2
            assert served["response_cache"]["enable"] is True
        finally:
            client.close()
        probe = smoke_infer(server.http_url, MODEL, SIGNATURE)
        assert probe["outputs"] == {OUTPUT: [1, 10]}
        # The operator's form: a URL with its scheme, as status.endpoint shows it.
        assert smoke_infer(f"http://{server.http_url}", MODEL, SIGNATURE)["outputs"] == {OUTPUT: [1, 10]}
        assert smoke_infer(server.grpc_url, MODEL, SIGNATURE, protocol="grpc")["outputs"] == {OUTPUT: [1, 10]}
        with pytest.raises(ProbeError, match="'nope' is not ready"):
            smoke_infer(server.http_url, "nope", SIGNATURE)
    assert "successfully loaded 'digits'" in server.logs()
    assert not server.is_running()


def test_probe_reports_an_unreachable_server():
    from inferops.triton.server import free_port

    with pytest.raises(ProbeError, match="cannot reach|not live"):
        smoke_infer(f"127.0.0.1:{free_port()}", MODEL, SIGNATURE, timeout_s=2)


def test_batched_results_equal_unbatched(make_repository, tmp_path, digits_onnx):
    # A long delay and 16 requests in flight at once make Triton hand execute() several requests.
    source = make_repository(BatchingConfig(max_batch_size=16, max_queue_delay_microseconds=200_000))
    repository = local_repository(source, tmp_path / "local")
    rows = digits_samples(48, seed=1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(digits_onnx), options, providers=["CPUExecutionProvider"])
    unbatched = np.concatenate([session.run([OUTPUT], {INPUT: rows[i : i + 1]})[0] for i in range(len(rows))])

    with TritonServer(repository) as server:

        def infer(index: int) -> np.ndarray:
            client = grpcclient.InferenceServerClient(server.grpc_url)
            try:
                item = grpcclient.InferInput(INPUT, [1, 64], "FP32")
                item.set_data_from_numpy(rows[index : index + 1])
                return client.infer(MODEL, [item]).as_numpy(OUTPUT)
            finally:
                client.close()

        with ThreadPoolExecutor(max_workers=16) as pool:
            served = np.concatenate(list(pool.map(infer, range(len(rows)))))
        executions, inferences = metric(server, "nv_inference_exec_count"), metric(server, "nv_inference_count")
    print(f"\n{inferences:.0f} requests in {executions:.0f} executions (mean batch {inferences / executions:.1f})")
    assert inferences >= len(rows) and executions < inferences / 2, "Triton did not batch the requests"
    # Each request got its own row back, not a neighbour's: the same digits are predicted.
    assert np.array_equal(served.argmax(1), unbatched.argmax(1))
    # One GEMM over a stacked batch may sum in another order than single-row products.
    np.testing.assert_allclose(served, unbatched, rtol=1e-5, atol=1e-6)


def test_dynamic_batching_raises_throughput_at_concurrency_16(make_repository, tmp_path):
    """Same model, same two instances; only dynamic batching differs. Interleaved runs, median ratio."""
    source = tmp_path / "source"
    make_repository(BatchingConfig(max_batch_size=16, dynamic_batching=False, instance_count=2), name="plain", root=source)
    make_repository(BatchingConfig(max_batch_size=16, max_queue_delay_microseconds=1000, instance_count=2), name="batched", root=source)
    repository = local_repository(source, tmp_path / "local")
    arrays = request_inputs(SIGNATURE, 16)
    ratios, rows = [], []
    with TritonServer(repository) as server:
        for _ in range(3):
            result = {m: run_load(server.grpc_url, m, arrays, concurrency=16, duration_s=2.0, warmup_s=0.5) for m in ("plain", "batched")}
            ratios.append(result["batched"].throughput_per_s / result["plain"].throughput_per_s)
            rows.append(result)
    for r in rows:
        print(
            f"\nno batching {r['plain'].throughput_per_s:7.0f}/s p99 {r['plain'].p99_ms:6.1f} ms | "
            f"dynamic batching {r['batched'].throughput_per_s:7.0f}/s p99 {r['batched'].p99_ms:6.1f} ms | ratio {r['batched'].throughput_per_s / r['plain'].throughput_per_s:.2f}"
        )
    median = statistics.median(ratios)
    print(f"median throughput ratio at concurrency 16 (dynamic batching / none): {median:.2f}")
    assert all(r[m].errors == 0 for r in rows for m in r)
    assert median > 1.0


def test_a_one_instance_batcher_never_waits_out_tritons_500_ms_default(make_repository, tmp_path):
    """Triton 2.51 turns payload prefetching off when the queue policy allows timeout overrides;
    its dynamic batcher then waits for a free instance on a condition that can miss the wake-up,
    until its 500 ms default wait runs out. Rendered with that policy (before), a one-instance
    batcher at 32 clients left a whole batch queued for 500 ms in 5 to 13 of 24 slices like these;
    rendered without it, in none of 240. Slices start with a burst of 32 requests, which is what
    sets the race off; 450 ms is 15 times the slowest request of a slice without the stall."""
    source = make_repository(BatchingConfig(max_batch_size=16, preferred_batch_sizes=[16], instance_count=1))
    repository = local_repository(source, tmp_path / "local")
    arrays = request_inputs(SIGNATURE, 16)
    with TritonServer(repository) as server:
        runs = [run_load(server.grpc_url, MODEL, arrays, concurrency=32, duration_s=0.125, warmup_s=0.1) for _ in range(24)]
    slowest = [max(r.latencies_ms) for r in runs]
    print("slowest request per slice, ms:", [round(v) for v in slowest])
    assert all(r.errors == 0 and r.requests > 0 for r in runs)
    assert sum(v >= 450 for v in slowest) == 0, f"{sum(v >= 450 for v in slowest)} of 24 slices waited out the batcher's 500 ms"


def test_builder_refuses_what_triton_refuses(make_repository, tmp_path):
    """The builder refuses preferred sizes above max_batch_size; Triton refuses to load the same config."""
    bad = BatchingConfig(max_batch_size=8, preferred_batch_sizes=[4, 32])
    with pytest.raises(ModelConfigError, match=r"preferred batch sizes \[32\] exceed max_batch_size 8; lower them or raise maxBatchSize"):
        build_model_config(MODEL, "python", SIGNATURE, bad)

    repository = local_repository(make_repository(BatchingConfig(max_batch_size=8)), tmp_path / "local")
    config = repository / MODEL / "config.pbtxt"
    # The same mistake written by hand, past the builder.
    config.write_text(config.read_text().replace("dynamic_batching {", "dynamic_batching {\n  preferred_batch_size: 32"))
    with TritonServer(repository, explicit_models=[]) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            with pytest.raises(InferenceServerException) as refused:
                client.load_model(MODEL)
            assert not client.is_model_ready(MODEL)
        finally:
            client.close()
    reason = [line for line in server.logs().splitlines() if "Poll failed for model directory" in line]
    print(f"\nTriton: {refused.value}\n{reason}")
    assert "failed to load 'digits'" in str(refused.value)
    assert reason and "preferred size must be <= max batch size" in reason[0]
