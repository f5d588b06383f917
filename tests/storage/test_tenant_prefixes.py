"""Per-namespace artifact credentials on the real S3 server (issue 14, point 1): with the keys
of its namespace (what operator.tenantStorageSecret wires into the Job and the pull step), a
tenant's Job publishes under <root>/<namespace>/ and cannot write, overwrite or read another
namespace's artifacts; the platform's keys (the operator's report reads) still read both."""

from __future__ import annotations

import json
import uuid

import pytest

from inferops.devcluster.s3_tenants import grant_prefix

from .test_cli_s3 import _as_source, _inferops, model_in_s3  # noqa: F401  (fixture)


@pytest.fixture
def tenants(s3_server, model_in_s3):
    b = model_in_s3
    return b, {ns: grant_prefix(s3_server, b, f"artifacts/{ns}/", ns) for ns in ("team-a", "team-b")}


def _optimize(s3_server, store, bucket: str, out: str, tmp_path):
    # The model is read with the tenant's own source credentials (credentialsSecret); the artifact
    # is written with the namespace's store keys.
    return _inferops("optimize", "--model", f"s3://{bucket}/in/tiny.onnx", "--recipe", "none", "--model-name", "tiny",
                     "--output", f"s3://{bucket}/{out}", env={**store.env(), **_as_source(s3_server.env())})


def test_a_namespace_key_writes_its_own_prefix_only(s3_server, tenants, tmp_path):
    b, keys = tenants
    run = _optimize(s3_server, keys["team-b"], b, "artifacts/team-b/tiny/h1", tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    theirs = s3_server.client().get_object(Bucket=b, Key="artifacts/team-b/tiny/h1/report.json")["Body"].read()

    own = _optimize(s3_server, keys["team-a"], b, "artifacts/team-a/tiny/h1", tmp_path)
    assert own.returncode == 0, own.stderr[-2000:]

    # team-a's Job, whatever its image does with its keys, cannot publish over team-b's artifact...
    over = _optimize(s3_server, keys["team-a"], b, "artifacts/team-b/tiny/h1", tmp_path)
    assert over.returncode == 2 and "access denied" in over.stderr, over.stderr[-2000:]
    a = keys["team-a"].client()
    with pytest.raises(a.exceptions.ClientError, match="AccessDenied"):
        a.put_object(Bucket=b, Key="artifacts/team-b/tiny/h1/report.json", Body=b"{}")
    with pytest.raises(a.exceptions.ClientError, match="AccessDenied"):
        a.delete_object(Bucket=b, Key="artifacts/team-b/tiny/h1/report.json")
    assert s3_server.client().get_object(Bucket=b, Key="artifacts/team-b/tiny/h1/report.json")["Body"].read() == theirs

    # ...nor read it as its "model", nor pull it.
    with pytest.raises(a.exceptions.ClientError, match="AccessDenied"):
        a.get_object(Bucket=b, Key="artifacts/team-b/tiny/h1/tiny/1/model.onnx")
    pulled = _inferops("pull", "--uri", f"s3://{b}/artifacts/team-b/tiny/h1", "--dest", str(tmp_path / "stolen"), env=keys["team-a"].env())
    assert pulled.returncode == 2 and "access denied" in pulled.stderr, pulled.stderr[-2000:]
    assert not (tmp_path / "stolen").exists()

    # Its own pull step works with the same keys; the platform's keys read both reports.
    mine = _inferops("pull", "--uri", f"s3://{b}/artifacts/team-a/tiny/h1", "--dest", str(tmp_path / "mine"), env=keys["team-a"].env())
    assert mine.returncode == 0, mine.stderr[-2000:]
    platform = s3_server.client()
    for ns in ("team-a", "team-b"):
        assert json.loads(platform.get_object(Bucket=b, Key=f"artifacts/{ns}/tiny/h1/report.json")["Body"].read())["modelName"] == "tiny"


def test_a_prefix_grant_does_not_cover_a_longer_namespace_name(s3_server, model_in_s3):
    """`team-a/` is not a prefix of `team-ab/`: the trailing slash is part of the grant."""
    b = model_in_s3
    a = grant_prefix(s3_server, b, "artifacts/team-a/", "team-a").client()
    key = f"artifacts/team-ab/{uuid.uuid4().hex}"
    with pytest.raises(a.exceptions.ClientError, match="AccessDenied"):
        a.put_object(Bucket=b, Key=key, Body=b"x")
    a.put_object(Bucket=b, Key=f"artifacts/team-a/{uuid.uuid4().hex}", Body=b"x")
