import pytest

from inferops.storage import StorageError, UnsupportedScheme, backend_for, parse_uri, redact_uri
from inferops.storage.uri import local_path


def test_parse_each_scheme():
    assert parse_uri("s3://models/digits/v1").authority == "models"
    assert parse_uri("s3://models/digits/v1").path == "digits/v1"
    assert parse_uri("file:///tmp/x/model.onnx").path == "/tmp/x/model.onnx"
    assert parse_uri("pvc://claim-a/repo").authority == "claim-a"


def test_unknown_and_unsupported_schemes_are_named():
    with pytest.raises(UnsupportedScheme, match="ftp"):
        parse_uri("ftp://host/model.onnx")
    with pytest.raises(UnsupportedScheme, match="gs:// is not supported in this build"):
        backend_for("gs://bucket/model.onnx")


def test_relative_file_uri_is_refused():
    with pytest.raises(StorageError, match="absolute"):
        parse_uri("file://relative/model.onnx")


def test_pvc_maps_under_the_configured_root(tmp_path, monkeypatch):
    monkeypatch.setenv("INFEROPS_PVC_ROOT", str(tmp_path))
    assert local_path(parse_uri("pvc://models/digits/1")) == tmp_path / "models" / "digits" / "1"
    with pytest.raises(StorageError, match="escapes its claim"):
        local_path(parse_uri("pvc://models/../other/secret"))


def test_redaction_of_userinfo_and_presigned_query():
    red = redact_uri("https://user:hunter2@example.com/m.onnx?X-Amz-Signature=abc123&X-Amz-Credential=AKIA&v=2")
    assert "hunter2" not in red and "abc123" not in red and "AKIA" not in red
    assert red.startswith("https://***@example.com/m.onnx?") and "v=2" in red


@pytest.mark.parametrize("uri", ["pvc://./other-claim/secret", "pvc://../etc/passwd", "pvc://Claim_A/x", "pvc://.hidden/x"])
def test_pvc_authority_must_be_a_claim_name(uri, tmp_path, monkeypatch):
    """`pvc://./other-claim/x` resolved inside the root, just not inside a claim: into another one."""
    monkeypatch.setenv("INFEROPS_PVC_ROOT", str(tmp_path / "pvc"))
    with pytest.raises(StorageError, match="claim name"):
        local_path(parse_uri(uri))
