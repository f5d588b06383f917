"""The profiler's instruments: the raw-HTTP loadgen and perf_analyzer read the same server alike."""

from __future__ import annotations

import os

import pytest

from inferops.api.tensors import BatchingConfig
from inferops.devcluster import perf_analyzer
from inferops.triton.instruments import LOADGEN, PERF_ANALYZER, Loadgen, PerfAnalyzer, find_perf_analyzer, instrument, result_from_export
from inferops.triton.loadgen import LoadError, request_inputs, run_load
from inferops.triton.python_backend import local_repository
from inferops.triton.server import TritonServer

MODEL = "digits"


def test_a_perf_analyzer_export_becomes_a_load_result():
    ms = 1_000_000  # ns
    bounds = [0, 100 * ms, 200 * ms, 300 * ms]
    requests = [{"timestamp": t * ms, "response_timestamps": [(t + 5) * ms]} for t in range(0, 300, 2)]
    requests += [{"timestamp": 299 * ms, "response_timestamps": [330 * ms]}, {"timestamp": 301 * ms, "response_timestamps": [302 * ms]}]
    result = result_from_export(500.0, {"experiments": [{"window_boundaries": bounds, "requests": requests}]}, concurrency=4)
    assert result.throughput_per_s == 500.0 and result.requests == 151, "requests sent after the last window are left out"
    assert result.p50_ms == pytest.approx(5.0) and max(result.latencies_ms) == pytest.approx(31.0)
    assert result.sustained_per_s == pytest.approx(48 / 0.1), "the slowest window, the first: 48 requests completed inside it"


def test_perf_analyzer_is_found_through_the_environment_or_not_at_all(monkeypatch, tmp_path):
    monkeypatch.setenv("INFEROPS_PERF_ANALYZER", "none")
    assert find_perf_analyzer() is None and isinstance(instrument("127.0.0.1:1"), Loadgen)
    with pytest.raises(LoadError, match="not found"):
        instrument("127.0.0.1:1", prefer=PERF_ANALYZER)
    monkeypatch.setenv("INFEROPS_PERF_ANALYZER", str(tmp_path / "perf_analyzer"))
    assert isinstance(instrument("127.0.0.1:1", "127.0.0.1:2"), PerfAnalyzer)
    assert instrument("127.0.0.1:1", "127.0.0.1:2").protocol == "grpc"
    assert isinstance(instrument("127.0.0.1:1", prefer=LOADGEN), Loadgen)


@pytest.mark.triton
@pytest.mark.timeout(240)
def test_raw_http_loadgen_counts_like_the_client_library(make_repository, tmp_path):
    repository = local_repository(make_repository(BatchingConfig(max_batch_size=8, max_queue_delay_microseconds=500)), tmp_path / "local")
    with TritonServer(repository) as server:
        arrays = request_inputs(__import__("inferops.triton.sample_model", fromlist=["SIGNATURE"]).SIGNATURE, 8)
        raw = run_load(server.http_url, MODEL, arrays, concurrency=4, requests=200, warmup_s=0.1, protocol="http")
        library = run_load(server.http_url, MODEL, arrays, concurrency=4, requests=200, warmup_s=0.1, protocol="http", lean=False)
        timed = run_load(server.http_url, MODEL, arrays, concurrency=4, duration_s=0.5, warmup_s=0.1, protocol="http")
        with pytest.raises(LoadError, match="nope"):
            run_load(server.http_url, "nope", arrays, concurrency=2, requests=5, warmup_s=0, protocol="http")
    for result in (raw, library):
        assert result.requests == 200 and result.errors == 0 and len(result.latencies_ms) == 200
        assert 0 < result.p50_ms <= result.p99_ms and result.throughput_per_s > 0
    assert timed.requests > 0 and timed.duration_s == pytest.approx(0.5, abs=0.05) and timed.sustained_per_s > 0


@pytest.mark.triton
@pytest.mark.timeout(240)
def test_perf_analyzer_drives_a_model_when_its_binary_is_there(make_repository, tmp_path):
    binary = find_perf_analyzer()
    if binary is None:  # installed from PyPI into the cache, as the optimizer image carries it
        try:
            binary = str(perf_analyzer.ensure())
        except perf_analyzer.PerfAnalyzerUnavailable as missing:
            if os.environ.get("CI"):
                raise
            pytest.skip(str(missing))
    repository = local_repository(make_repository(BatchingConfig(max_batch_size=8)), tmp_path / "local")
    with TritonServer(repository) as server:
        from inferops.triton.sample_model import SIGNATURE

        result = PerfAnalyzer(binary, server.http_url, server.grpc_url).drive(MODEL, SIGNATURE, 8, concurrency=4, duration_s=0.6, warmup_s=0)
        rows = PerfAnalyzer(binary, server.http_url).drive(MODEL, SIGNATURE, 8, concurrency=2, duration_s=0.6, warmup_s=0, rows=4)
        loadgen_rows = Loadgen(server.http_url).drive(MODEL, SIGNATURE, 8, concurrency=2, duration_s=0.6, warmup_s=0, rows=4)
        with pytest.raises(LoadError, match="perf_analyzer failed"):
            PerfAnalyzer(binary, server.http_url).drive("nope", SIGNATURE, 8, concurrency=2, duration_s=0.3, warmup_s=0)
    assert result.throughput_per_s > 0 and result.requests == len(result.latencies_ms) > 0
    assert 0 < result.p50_ms <= result.p99_ms and result.sustained_per_s > 0
    # Requests of 4 rows: both count rows a second, perf_analyzer's Inferences/Second.
    for four in (rows, loadgen_rows):
        assert four.throughput_per_s == pytest.approx(4 * four.requests / four.duration_s, rel=0.35) and four.sustained_per_s > 0
