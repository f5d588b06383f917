"""The s3 backend against a real S3 server (versitygw on loopback)."""

import json
import os
import uuid

import pytest

from inferops.storage import AccessDenied, NotFound, Unreachable, fetch, list_files, publish
from inferops.storage.pull import pull, sha256_file
from inferops.storage.errors import IncompleteArtifact

from inferops.devcluster.cluster import free_port


@pytest.fixture
def bucket(s3_server, monkeypatch):
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    return s3_server.make_bucket("b-" + uuid.uuid4().hex[:10])


def _repo(root, big=False):
    files = {"m/config.pbtxt": b"name: 'm'", "m/1/model.onnx": os.urandom(9 * 1024 * 1024 if big else 4096)}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    report = {"checksums": {rel: sha256_file(root / rel) for rel in files}}
    (root / "report.json").write_text(json.dumps(report))
    return root


def test_publish_fetch_round_trip_with_multipart(bucket, tmp_path, s3_server, caplog):
    caplog.set_level("INFO", logger="inferops.storage")
    src = _repo(tmp_path / "src", big=True)
    publish(src, f"s3://{bucket}/repos/digits")
    assert list_files(f"s3://{bucket}/repos/digits") == ["m/1/model.onnx", "m/config.pbtxt", "report.json"]
    # the staging prefix is gone: the only thing in the bucket is the published tree
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert all(k.startswith("repos/digits/") for k in keys), keys
    got = fetch(f"s3://{bucket}/repos/digits", tmp_path / "down")
    assert sha256_file(got / "m/1/model.onnx") == sha256_file(src / "m/1/model.onnx")
    assert any("upload m/1/model.onnx" in r.getMessage() and "100%" in r.getMessage() for r in caplog.records)


def test_a_committed_artifact_is_write_once(bucket, tmp_path, s3_server):
    """What a deleted Job's re-run did before: delete the live report.json, then overwrite the
    served files in place. Now a second publish changes no object and says so."""
    uri = f"s3://{bucket}/repo"
    client = s3_server.client()
    assert publish(_repo(tmp_path / "a"), uri) is True
    before = {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    second = _repo(tmp_path / "b")
    (second / "m/2").mkdir()
    (second / "m/2/model.onnx").write_bytes(b"another version")
    assert publish(second, uri) is False
    after = {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert after == before, "not one object written, replaced or deleted"
    pull(uri, tmp_path / "dest")  # the first one, still whole


def test_an_uncommitted_leftover_is_replaced(bucket, tmp_path, s3_server):
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="repo/m/9/stale.onnx", Body=b"half of a failed attempt")
    assert publish(_repo(tmp_path / "a"), f"s3://{bucket}/repo") is True
    assert list_files(f"s3://{bucket}/repo") == ["m/1/model.onnx", "m/config.pbtxt", "report.json"]


def test_the_marker_is_written_only_if_absent(bucket, tmp_path, s3_server):
    """Two publishers that both passed the first check: the one that writes the marker second
    does not replace the first one's (If-None-Match: *, or the check before copying)."""
    from inferops.storage.base import COMMIT_MARKER
    from inferops.storage.s3 import S3Backend
    from inferops.storage.uri import parse_uri

    backend = S3Backend(parse_uri(f"s3://{bucket}/race"))
    first = _repo(tmp_path / "a")
    assert backend._put_marker(first / COMMIT_MARKER, COMMIT_MARKER) is True
    other = tmp_path / "other.json"
    other.write_text('{"checksums": {}}')
    assert backend._put_marker(other, COMMIT_MARKER) is False
    body = s3_server.client().get_object(Bucket=bucket, Key="race/report.json")["Body"].read()
    assert body == (first / COMMIT_MARKER).read_bytes()


def test_read_small_is_a_capped_ranged_read(bucket, s3_server):
    from inferops.storage import TooLarge, read_small

    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="r/report.json", Body=b'{"a": 1}')
    client.put_object(Bucket=bucket, Key="big/report.json", Body=b"x" * (3 * 1024 * 1024))
    assert read_small(f"s3://{bucket}/r/report.json", 1024) == b'{"a": 1}'
    with pytest.raises(TooLarge, match="3145728 bytes, over the limit of 1024"):
        read_small(f"s3://{bucket}/big/report.json", 1024)
    with pytest.raises(NotFound):
        read_small(f"s3://{bucket}/none/report.json", 1024)


def test_single_object_fetch_and_missing_key(bucket, tmp_path):
    src = _repo(tmp_path / "src")
    publish(src, f"s3://{bucket}/r")
    one = fetch(f"s3://{bucket}/r/m/1/model.onnx", tmp_path / "one")
    assert one.name == "model.onnx" and one.read_bytes() == (src / "m/1/model.onnx").read_bytes()
    with pytest.raises(NotFound):
        fetch(f"s3://{bucket}/r/nothing-here.onnx", tmp_path / "x")
    with pytest.raises(NotFound):
        fetch("s3://no-such-bucket-xyz/model.onnx", tmp_path / "x")


def test_pull_requires_marker_and_checksums(bucket, tmp_path, s3_server):
    src = _repo(tmp_path / "src")
    publish(src, f"s3://{bucket}/ok")
    files = pull(f"s3://{bucket}/ok", tmp_path / "dest")
    assert sorted(files) == ["m/1/model.onnx", "m/config.pbtxt", "report.json"]

    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="partial/m/1/model.onnx", Body=b"half")
    with pytest.raises(IncompleteArtifact, match="no report.json"):
        pull(f"s3://{bucket}/partial", tmp_path / "dest2")
    assert not (tmp_path / "dest2").exists()

    client.put_object(Bucket=bucket, Key="ok/m/1/model.onnx", Body=b"tampered")
    with pytest.raises(IncompleteArtifact, match="sha256"):
        pull(f"s3://{bucket}/ok", tmp_path / "dest3")
    assert not (tmp_path / "dest3").exists()


def test_bad_credentials_write_nothing(bucket, tmp_path, monkeypatch, s3_server):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-" + uuid.uuid4().hex)
    with pytest.raises(AccessDenied) as err:
        publish(_repo(tmp_path / "src"), f"s3://{bucket}/repo")
    assert "wrong-" not in str(err.value)
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_unreachable_endpoint(tmp_path, monkeypatch, s3_server):
    for k, v in s3_server.env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}").items():
        monkeypatch.setenv(k, v)
    with pytest.raises(Unreachable, match="unreachable"):
        fetch("s3://models/model.onnx", tmp_path)


def test_credentials_from_a_mounted_secret(s3_server, tmp_path, monkeypatch):
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    for k, v in s3_server.env().items():
        (secret_dir / k).write_text(v + "\n")
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("INFEROPS_CREDENTIALS_DIR", str(secret_dir))
    bucket = s3_server.make_bucket("secret-" + uuid.uuid4().hex[:8])
    publish(_repo(tmp_path / "src"), f"s3://{bucket}/repo")
    assert "report.json" in list_files(f"s3://{bucket}/repo")
