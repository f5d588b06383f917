"""`inferops optimize` and `inferops pull` as processes, against the real S3 server: credentials
never in the output or the report; bad credentials and an unreachable endpoint leave nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

from inferops.optimize.dense_chain import DenseChain, Layer

from inferops.devcluster.cluster import free_port


def _inferops(*argv: str, env: dict) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run([sys.executable, "-m", "inferops.cli", *argv], env={**base, **env}, capture_output=True, text=True, timeout=300)


@pytest.fixture
def model_in_s3(s3_server, tmp_path):
    rng = np.random.default_rng(0)
    chain = DenseChain([Layer(rng.standard_normal((16, 64)).astype(np.float32), np.zeros(64, np.float32), "Relu"),
                        Layer(rng.standard_normal((64, 4)).astype(np.float32), np.zeros(4, np.float32), None)])
    import onnx

    onnx.save(chain.to_onnx(), str(tmp_path / "tiny.onnx"))
    np.savez(tmp_path / "eval.npz", inputs=rng.standard_normal((64, 16)).astype(np.float32))
    bucket = s3_server.make_bucket("cli-" + uuid.uuid4().hex[:8])
    client = s3_server.client()
    client.upload_file(str(tmp_path / "tiny.onnx"), bucket, "in/tiny.onnx")
    client.upload_file(str(tmp_path / "eval.npz"), bucket, "in/eval.npz")
    return bucket


def test_optimize_s3_to_s3_then_pull_without_leaking_credentials(s3_server, model_in_s3, tmp_path):
    b = model_in_s3
    run = _inferops("optimize", "--model", f"s3://{b}/in/tiny.onnx", "--recipe", "quantize-int8-dynamic", "--eval-data", f"s3://{b}/in/eval.npz",
                    "--accuracy-budget", "0.05", "--output", f"s3://{b}/out/tiny", "--report", str(tmp_path / "report.json"), env=s3_server.env())
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["artifactUri"] == f"s3://{b}/out/tiny" and report["accuracy"]["metric"] == "cosine"
    pulled = _inferops("pull", "--uri", f"s3://{b}/out/tiny", "--dest", str(tmp_path / "models"), env=s3_server.env())
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    assert (tmp_path / "models/tiny/1/model.onnx").is_file() and (tmp_path / "models/tiny/config.pbtxt").is_file()
    everything = run.stdout + run.stderr + pulled.stdout + pulled.stderr + (tmp_path / "report.json").read_text()
    assert "fetching the model" in run.stderr  # the log is there, just without secrets
    assert s3_server.secret_key not in everything and s3_server.access_key not in everything


def test_bad_credentials_fail_clearly_and_write_nothing(s3_server, model_in_s3, tmp_path):
    b = model_in_s3
    wrong = "wrong-" + uuid.uuid4().hex
    run = _inferops("optimize", "--model", f"s3://{b}/in/tiny.onnx", "--recipe", "none", "--output", f"s3://{b}/out/bad",
                    env=s3_server.env(AWS_SECRET_ACCESS_KEY=wrong))
    assert run.returncode == 2
    assert "access denied" in run.stderr and wrong not in run.stdout + run.stderr
    assert s3_server.client().list_objects_v2(Bucket=b, Prefix="out/").get("KeyCount") == 0


def test_failure_after_reading_writes_nothing_to_s3(s3_server, model_in_s3, tmp_path):
    """The model reads fine, the gate fails: not one object appears at the output prefix."""
    b = model_in_s3
    run = _inferops("optimize", "--model", f"s3://{b}/in/tiny.onnx", "--recipe", "prune", "--param", "sparsity=0.95", "--param", "method=magnitude",
                    "--eval-data", f"s3://{b}/in/eval.npz", "--accuracy-budget", "0.0001", "--output", f"s3://{b}/out/gated", env=s3_server.env())
    assert run.returncode == 3, run.stderr[-2000:]
    assert "accuracy gate" in run.stderr
    assert s3_server.client().list_objects_v2(Bucket=b, Prefix="out/").get("KeyCount") == 0


def test_unreachable_endpoint_is_a_clear_error(s3_server, tmp_path):
    out = tmp_path / "out"
    run = _inferops("optimize", "--model", "s3://models/tiny.onnx", "--recipe", "none", "--output", f"file://{out}",
                    env=s3_server.env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}"))
    assert run.returncode == 1 and "unreachable" in run.stderr, "worth a retry: not a final exit code"
    assert not out.exists()


def _as_source(env: dict) -> dict:
    """The model's credentialsSecret as the Job sees it: prefixed, and isolated from the platform's."""
    return {**{f"INFEROPS_SOURCE_{k}": v for k, v in env.items()}, "INFEROPS_SOURCE_CREDENTIALS": "isolated"}


def test_source_and_artifact_credentials_are_kept_apart(s3_server, model_in_s3, tmp_path):
    """The user's Secret reads the model, the platform's writes the artifact; neither stands in."""
    b = model_in_s3
    wrong = "wrong-" + uuid.uuid4().hex
    argv = ("optimize", "--model", f"s3://{b}/in/tiny.onnx", "--recipe", "none")
    # Right user keys, wrong platform keys: the model is read, the artifact write is refused.
    run = _inferops(*argv, "--output", f"s3://{b}/out/a", env={**s3_server.env(AWS_SECRET_ACCESS_KEY=wrong), **_as_source(s3_server.env())})
    assert run.returncode == 2 and "cannot write" in run.stderr and "access denied" in run.stderr, run.stderr[-2000:]
    # Wrong user keys, right platform keys: the platform's keys do not read the user's model.
    run = _inferops(*argv, "--output", f"s3://{b}/out/b", env={**s3_server.env(), **_as_source(s3_server.env(AWS_SECRET_ACCESS_KEY=wrong))})
    assert run.returncode == 2 and "access denied" in run.stderr and "cannot write" not in run.stderr, run.stderr[-2000:]
    # No user Secret at all: the model is read anonymously, still not with the platform's keys.
    run = _inferops(*argv, "--output", f"s3://{b}/out/c", env={**s3_server.env(), "INFEROPS_SOURCE_CREDENTIALS": "isolated",
                                                               "INFEROPS_SOURCE_AWS_ENDPOINT_URL": s3_server.endpoint})
    assert run.returncode == 2 and "access denied" in run.stderr, run.stderr[-2000:]
    assert s3_server.client().list_objects_v2(Bucket=b, Prefix="out/").get("KeyCount") == 0
    # Both right: published, and neither secret in the output.
    run = _inferops(*argv, "--output", f"s3://{b}/out/d", env={**s3_server.env(), **_as_source(s3_server.env())})
    assert run.returncode == 0, run.stderr[-2000:]
    assert s3_server.secret_key not in run.stdout + run.stderr
