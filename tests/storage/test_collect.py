"""`inferops gc` against real stores: the local filesystem and the S3 server."""

import json
import os
import time
import uuid

import pytest

from inferops.gc_cmd import collect
from inferops.storage import list_files, publish


def _commit(root_uri: str, ns: str, model: str, h: str, tmp_path) -> str:
    src = tmp_path / f"src-{uuid.uuid4().hex[:6]}"
    (src / "m/1").mkdir(parents=True)
    (src / "m/1/model.onnx").write_bytes(b"x")
    (src / "report.json").write_text(json.dumps({"checksums": {}}))
    uri = f"{root_uri}/{ns}/{model}/{h}"
    assert publish(src, uri)
    return uri


def test_gc_keeps_the_last_revisions_and_drops_deleted_models_local(tmp_path):
    root = f"file://{tmp_path}/artifacts"
    for i in range(5):
        _commit(root, "ml", "digits", f"h{i}", tmp_path)
        os.utime(tmp_path / f"artifacts/ml/digits/h{i}/report.json", (time.time() - 7200 + i * 60,) * 2)  # in order, all old enough
    _commit(root, "ml", "gone", "g0", tmp_path)
    os.utime(tmp_path / "artifacts/ml/gone/g0/report.json", (time.time() - 7200,) * 2)
    models = {("ml", "digits"): {"artifactUri": f"{root}/ml/digits/h0", "jobName": "digits-opt-h4"}}
    assert collect(root, models, keep=2, min_age_s=3600, dry_run=True) == [f"{root}/ml/digits/h1", f"{root}/ml/digits/h2", f"{root}/ml/gone/g0"]
    assert (tmp_path / "artifacts/ml/digits/h1").is_dir(), "a dry run deletes nothing"
    collect(root, models, keep=2, min_age_s=3600)
    assert sorted(p.name for p in (tmp_path / "artifacts/ml/digits").iterdir()) == ["h0", "h3", "h4"]
    assert list(p.name for p in (tmp_path / "artifacts/ml/gone").iterdir()) == []


@pytest.fixture
def bucket(s3_server, monkeypatch):
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    return s3_server.make_bucket("gc-" + uuid.uuid4().hex[:10])


def test_gc_on_s3_deletes_whole_artifacts_marker_first(bucket, tmp_path):
    root = f"s3://{bucket}/inferops"
    old = _commit(root, "ml", "gone", "g0", tmp_path)
    kept = _commit(root, "ml", "digits", "d0", tmp_path)
    models = {("ml", "digits"): {"artifactUri": kept}}
    assert collect(root, models, keep=1, min_age_s=3600) == [], "nothing an hour old yet"
    assert collect(root, models, keep=1, min_age_s=0) == [old]
    assert list_files(old) == [] and list_files(kept) == ["m/1/model.onnx", "report.json"]
