"""`inferops pull --digest` against the real S3 server: an artifact changed after the operator
read its report (model swapped and report.json rewritten to match, or a file added) fails the
pull with a clear message; the untouched one passes (issue 14, point 1)."""

from __future__ import annotations

import json
import uuid

import pytest

from inferops.storage.digest import artifact_digest

from .test_cli_s3 import _inferops, model_in_s3  # noqa: F401  (fixture)


@pytest.fixture
def published(s3_server, model_in_s3, tmp_path):
    """An artifact as the Job publishes it, and the digest the operator records from its report."""
    b = model_in_s3
    out = f"out/{uuid.uuid4().hex[:6]}"
    run = _inferops("optimize", "--model", f"s3://{b}/in/tiny.onnx", "--recipe", "none", "--output", f"s3://{b}/{out}", "--model-name", "tiny",
                    "--report", str(tmp_path / "report.json"), env=s3_server.env(INFEROPS_TERMINATION_LOG=str(tmp_path / "termination-log")))
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(s3_server.client().get_object(Bucket=b, Key=f"{out}/report.json")["Body"].read())
    digest = artifact_digest(report["checksums"])
    # The Job's own record of what it published, which the operator checks the stored report against.
    assert (tmp_path / "termination-log").read_text() == f"published {digest}"
    return b, out, report, digest


def _pull(s3_server, bucket, prefix, dest, digest):
    return _inferops("pull", "--uri", f"s3://{bucket}/{prefix}", "--dest", str(dest), "--digest", digest, env=s3_server.env())


def test_untouched_artifact_passes_its_recorded_digest(s3_server, published, tmp_path):
    b, out, _, digest = published
    run = _pull(s3_server, b, out, tmp_path / "models", digest)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "models/tiny/1/model.onnx").is_file()


def test_swapped_model_with_a_matching_report_fails_the_pull(s3_server, published, tmp_path):
    """What a holder of write keys could do: replace the model and rewrite report.json's checksum
    to match. The checksums alone pass it; the digest the operator recorded does not."""
    import hashlib

    b, out, report, digest = published
    client = s3_server.client()
    evil = b"not the model the Job published"
    client.put_object(Bucket=b, Key=f"{out}/tiny/1/model.onnx", Body=evil)
    report["checksums"]["tiny/1/model.onnx"] = hashlib.sha256(evil).hexdigest()
    client.put_object(Bucket=b, Key=f"{out}/report.json", Body=json.dumps(report).encode())

    unpinned = _inferops("pull", "--uri", f"s3://{b}/{out}", "--dest", str(tmp_path / "unpinned"), env=s3_server.env())
    assert unpinned.returncode == 0, "the report next to it vouches for the swap: why the digest is needed"
    run = _pull(s3_server, b, out, tmp_path / "models", digest)
    assert run.returncode == 2
    assert "was changed after it was published" in run.stderr and digest in run.stderr, run.stderr[-2000:]
    assert not (tmp_path / "models").exists(), "nothing is placed for Triton to serve"


def test_an_added_file_fails_the_pull(s3_server, published, tmp_path):
    b, out, _, digest = published
    s3_server.client().put_object(Bucket=b, Key=f"{out}/tiny/1/model.py", Body=b"import os  # runs inside Triton")
    run = _pull(s3_server, b, out, tmp_path / "models", digest)
    assert run.returncode == 2
    assert "tiny/1/model.py, which its report does not list" in run.stderr, run.stderr[-2000:]


def test_a_tuning_result_beside_the_artifact_passes_but_not_inside_a_model(s3_server, published, tmp_path):
    """The tuning Job publishes tuning-<hash>.json next to the committed artifact, after it: the
    serving pods' pull must still pass; the same name inside a model's folder must not."""
    b, out, _, digest = published
    client = s3_server.client()
    client.put_object(Bucket=b, Key=f"{out}/tuning-0123456789.json", Body=b'{"chosen": {}}')
    run = _pull(s3_server, b, out, tmp_path / "models", digest)
    assert run.returncode == 0, run.stderr[-2000:]
    client.put_object(Bucket=b, Key=f"{out}/tiny/tuning-0123456789.json", Body=b"{}")
    run = _pull(s3_server, b, out, tmp_path / "again", digest)
    assert run.returncode == 2 and "tiny/tuning-0123456789.json, which its report does not list" in run.stderr, run.stderr[-2000:]
