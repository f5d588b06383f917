"""https:// reads against a real TLS server on loopback with a self-signed certificate."""

import http.server
import ssl
import subprocess
import threading

import pytest

from inferops.storage import NotFound, StorageError, Unreachable, fetch, publish

from inferops.devcluster.cluster import free_port


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("https")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        check=True, capture_output=True,
    )
    www = d / "www"
    www.mkdir()
    (www / "model.onnx").write_bytes(b"\x08\x07" * 3000)
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(www))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", d / "cert.pem", www
    server.shutdown()


def test_fetch_over_tls_with_custom_ca(https_server, tmp_path, monkeypatch):
    base, ca, www = https_server
    monkeypatch.setenv("INFEROPS_CA_BUNDLE", str(ca))
    got = fetch(f"{base}/model.onnx", tmp_path)
    assert got.read_bytes() == (www / "model.onnx").read_bytes()
    with pytest.raises(NotFound, match="404"):
        fetch(f"{base}/missing.onnx", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no .part left behind


def test_untrusted_certificate_is_refused(https_server, tmp_path, monkeypatch):
    monkeypatch.delenv("INFEROPS_CA_BUNDLE", raising=False)
    with pytest.raises(Unreachable, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        fetch(f"{https_server[0]}/model.onnx", tmp_path)


def test_https_is_read_only(tmp_path):
    with pytest.raises(StorageError, match="read-only"):
        publish(tmp_path, "https://example.com/repo")
