"""`inferops serve` and `inferops bench` as a user runs them, and the server's clean-up guarantee."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from inferops.api.tensors import BatchingConfig
from inferops.triton.python_backend import local_repository
from inferops.triton.server import TritonServer, TritonServerError, free_port, live_group_members

MODEL = "digits"  # the name make_repository gives the model
pytestmark = [pytest.mark.triton, pytest.mark.timeout(240)]


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def test_serve_then_bench(make_repository):
    repository = make_repository(BatchingConfig(max_batch_size=8, max_queue_delay_microseconds=500))
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    inferops = [sys.executable, "-m", "inferops.cli"]
    serve = subprocess.Popen(
        [*inferops, "serve", str(repository), "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready(http_port):
            assert serve.poll() is None, serve.stdout.read()
            assert time.monotonic() < deadline, "inferops serve did not become ready"
            time.sleep(0.3)
        bench = subprocess.run(
            [*inferops, "bench", "--url", f"127.0.0.1:{grpc_port}", "--model", MODEL, "--concurrency", "4", "--requests", "60", "--warmup", "0.2", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert bench.returncode == 0, bench.stderr
        result = json.loads(bench.stdout)
        print(f"\n{result}")
        assert result["requests"] == 60 and result["errors"] == 0 and result["concurrency"] == 4
        assert 0 < result["p50_ms"] <= result["p99_ms"] and result["throughput_per_s"] > 0
        human = subprocess.run(
            [*inferops, "bench", "--url", f"127.0.0.1:{http_port}", "--protocol", "http", "--model", MODEL, "--requests", "10", "--warmup", "0"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert human.returncode == 0 and "infer/s" in human.stdout and "p99" in human.stdout, human.stderr
        missing = subprocess.run([*inferops, "bench", "--url", f"127.0.0.1:{grpc_port}", "--model", "nope", "--requests", "5"], capture_output=True, text=True, timeout=60)
        assert missing.returncode == 1 and "nope" in missing.stderr
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
        output, _ = serve.communicate(timeout=60)
    print(output)
    assert serve.returncode == 0, output
    assert f"http    127.0.0.1:{http_port}" in output
    assert not ready(http_port), "the server outlived inferops serve"


def test_server_and_its_stubs_end_when_the_block_fails(make_repository, tmp_path):
    repository = local_repository(make_repository(BatchingConfig(max_batch_size=4, instance_count=2)), tmp_path / "local")
    with pytest.raises(RuntimeError, match="boom"):
        with TritonServer(repository) as server:
            group = server.process.pid
            assert server.is_running()
            raise RuntimeError("boom")
    assert live_group_members(group) == []  # no process of the server's group (server or python backend stubs) runs


def test_a_model_that_fails_to_load_fails_start_with_the_log(make_repository, tmp_path):
    repository = local_repository(make_repository(BatchingConfig(max_batch_size=4)), tmp_path / "local")
    (repository / MODEL / "1" / "model.onnx").write_bytes(b"not an onnx file")
    server = TritonServer(repository, ready_timeout_s=60)
    with pytest.raises(TritonServerError) as failed:
        server.start()
    print(f"\n{failed.value}")
    assert "tritonserver exited with code 1" in str(failed.value)
    # the reason comes first, not buried above a tail of shutdown lines
    assert re.search(r"digits.*UNAVAILABLE", str(failed.value).split("log tail:")[0])
    assert not server.is_running()
    assert "digits" in server.logs()
