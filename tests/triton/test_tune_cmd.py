"""`inferops tune` as the tuning pod's tuner runs it: against a running server in explicit mode."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import tritonclient.http as http
from s3server import s3_server  # noqa: F401  (a session fixture: the real S3 server)

from inferops.api.report import TuningReport
from inferops.api.tensors import BatchingConfig
from inferops.triton.python_backend import local_repository
from inferops.triton.server import TritonServer, free_port

MODEL = "digits"  # the name make_repository gives the model
INFEROPS = [sys.executable, "-m", "inferops.cli", "tune"]
pytestmark = [pytest.mark.triton, pytest.mark.timeout(300)]


@pytest.fixture
def served(make_repository, tmp_path):
    """The deployment's config (no dynamic batching, one instance) served in explicit mode, loaded."""
    repository = local_repository(make_repository(BatchingConfig(max_batch_size=16, dynamic_batching=False)), tmp_path / "served")
    with TritonServer(repository, explicit_models=[MODEL]) as server:
        yield server, repository


def test_tune_measures_candidates_through_the_repository_api_and_writes_the_report(served, tmp_path):
    server, repository = served
    before = http.InferenceServerClient(server.http_url).get_model_config(MODEL)
    output = tmp_path / "out" / "tuning.json"
    env = {"INFEROPS_TUNING_IMAGE": "triton:test", "INFEROPS_NODE_NAME": "node-a", "INFEROPS_TERMINATION_LOG": str(tmp_path / "termination")}
    done = subprocess.run(
        [*INFEROPS, "--server", server.http_url, "--grpc-server", server.grpc_url, "--model", MODEL, "--latency-objective-ms", "200",
         "--concurrency", "8", "--repository", str(repository), "--output", str(output), "--duration", "0.5", "--measure-with", "inferops-loadgen"],
        capture_output=True, text=True, timeout=240, env={**os.environ, **env},
    )
    print(done.stderr)
    assert done.returncode == 0, done.stderr
    report = TuningReport.model_validate_json(output.read_text())
    assert report == TuningReport.model_validate_json(done.stdout)
    assert report.concurrency == 8 and report.measured_with == "inferops-loadgen" and report.wall_seconds > 0
    assert (report.image, report.node, report.instance_kind) == ("triton:test", "node-a", "KIND_CPU")
    assert 2 <= report.measurements <= report.grid_size // 4 and report.p99_ms <= 200
    assert report.chosen.dynamic_batching and report.chosen.max_batch_size <= 8, "batches above the clients in flight are never tried"
    measured = [line for line in done.stderr.splitlines() if line.startswith("tune: maxBatchSize=")]
    assert len(measured) >= report.measurements, "a progress line per point measured"
    assert not any(p.error for p in report.points)
    # The server's own count of the batches it ran, per point, read from its statistics.
    assert all(1 <= p.mean_batch_size <= p.max_batch_size for p in report.points)
    # Duels ran on copies, which are unloaded and removed; the model itself is untouched on disk.
    assert sorted(p.name for p in repository.iterdir()) == [MODEL]
    index = http.InferenceServerClient(server.http_url).get_model_repository_index()
    assert [m["name"] for m in index if m.get("state") == "READY"] == [MODEL]
    assert before["input"] == http.InferenceServerClient(server.http_url).get_model_config(MODEL)["input"]
    assert not (tmp_path / "termination").exists()


def test_without_the_repository_points_are_reloaded_one_at_a_time_on_the_grid_asked_for(served, tmp_path, s3_server):
    server, _ = served
    bucket = s3_server.make_bucket("tunings")
    done = subprocess.run(
        [*INFEROPS, "--server", server.http_url, "--model", MODEL, "--latency-objective-ms", "200", "--concurrency", "4", "--duration", "0.4",
         "--max-batch-sizes", "2,4", "--queue-delays-us", "0,500", "--instance-counts", "1,2", "--budget", "3",
         "--output", f"s3://{bucket}/models/digits/tuning.json"],
        capture_output=True, text=True, timeout=240, env={**os.environ, **s3_server.env()},
    )
    assert done.returncode == 0, done.stderr
    report = TuningReport.model_validate_json(done.stdout)
    stored = s3_server.client().get_object(Bucket=bucket, Key="models/digits/tuning.json")["Body"].read()
    assert TuningReport.model_validate_json(stored) == report
    assert "one point at a time" in done.stderr and 2 <= report.measurements <= 3 and report.grid_size == 16, "2 x 2 x 2, times the default preferred choices (max, half)"
    assert {(q.max_batch_size, q.max_queue_delay_microseconds, q.instance_count) for q in report.points} <= {(b, d, i) for b in (2, 4) for d in (0, 500) for i in (1, 2)}
    assert all(1 <= q.mean_batch_size <= q.max_batch_size for q in report.points), "points reloaded under the model's name count their batches too"
    live = http.InferenceServerClient(server.http_url).get_model_config(MODEL)
    last = report.points[-1]
    assert (last.max_batch_size, last.max_queue_delay_microseconds, last.instance_count, last.preferred_batch_sizes) == (
        live["max_batch_size"], live["dynamic_batching"]["max_queue_delay_microseconds"], live["instance_group"][0]["count"],
        live["dynamic_batching"].get("preferred_batch_size", []),
    ), "each point was loaded under the model's own name with a config override"


def test_every_point_refused_exits_4_with_the_reason(served, tmp_path):
    server, repository = served
    termination = tmp_path / "termination"
    done = subprocess.run(
        [*INFEROPS, "--server", server.http_url, "--model", MODEL, "--latency-objective-ms", "200", "--instance-kind", "KIND_GPU",
         "--repository", str(repository), "--duration", "0.4", "--output", str(tmp_path / "never.json")],
        capture_output=True, text=True, timeout=240, env={**os.environ, "INFEROPS_TERMINATION_LOG": str(termination)},
    )
    print(done.stderr)
    assert done.returncode == 4
    reason = termination.read_text()
    assert "\n" not in reason and "could be measured" in reason and "GPU" in reason.upper()
    assert f"error: {reason}" in done.stderr
    assert not (tmp_path / "never.json").exists()


def test_a_server_that_never_becomes_live_exits_4(tmp_path):
    termination = tmp_path / "termination"
    done = subprocess.run(
        [*INFEROPS, "--server", f"127.0.0.1:{free_port()}", "--model", MODEL, "--latency-objective-ms", "50", "--max-minutes", "0.05"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "INFEROPS_TERMINATION_LOG": str(termination)},
    )
    assert done.returncode == 4
    assert "not live after" in termination.read_text()


def test_tune_help_is_stable():
    """The tuning pod's command line: these flags must keep their names."""
    done = subprocess.run([*INFEROPS, "--help"], capture_output=True, text=True, timeout=60)
    for flag in ("--server", "--grpc-server", "--model", "--latency-objective-ms", "--concurrency", "--instance-kind", "--repository", "--output", "--max-minutes"):
        assert flag in done.stdout


def test_requests_of_several_rows_are_what_it_measures_and_no_smaller_max_batch_is_tried(served, tmp_path):
    server, repository = served
    done = subprocess.run(
        [*INFEROPS, "--server", server.http_url, "--model", MODEL, "--latency-objective-ms", "500", "--concurrency", "4", "--request-batch-size", "8",
         "--duration", "0.4", "--max-batch-sizes", "4,8,16,32", "--queue-delays-us", "0", "--instance-counts", "1", "--preferred-batch-sizes", "max", "--budget", "3",
         "--repository", str(repository), "--measure-with", "inferops-loadgen"],
        capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr
    report = TuningReport.model_validate_json(done.stdout)
    assert report.request_batch_size == 8 and report.grid_size == 3, "4 is below the requests' 8 rows: Triton would refuse them"
    assert report.points and all(p.max_batch_size >= 8 and p.error is None and p.throughput_per_s > 0 for p in report.points)
    assert "clients of 8 row(s)" in done.stderr
