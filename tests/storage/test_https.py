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


def test_onnx_model_with_external_data_is_fetched_with_its_weights(https_server, tmp_path, monkeypatch):
    """The external data files an .onnx names come from the same folder of the server (a presigned
    query on the model's URL is not carried over to them); the model then runs from the copy."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from inferops.optimize.dense_chain import DenseChain, Layer
    from inferops.optimize.external_data import fetch_model

    base, ca, www = https_server
    monkeypatch.setenv("INFEROPS_CA_BUNDLE", str(ca))
    rng = np.random.default_rng(0)
    chain = DenseChain([Layer(rng.standard_normal((16, 32)).astype(np.float32), np.zeros(32, np.float32), "Relu"),
                        Layer(rng.standard_normal((32, 4)).astype(np.float32), np.zeros(4, np.float32), None)])
    (www / "ext/my weights").mkdir(parents=True)
    onnx.save_model(chain.to_onnx(), str(www / "ext/tiny.onnx"), save_as_external_data=True, location="my weights/tiny.bin", size_threshold=0)
    got = fetch_model(f"{base}/ext/tiny.onnx?X-Amz-Signature=abc", tmp_path)
    assert (got.parent / "my weights/tiny.bin").read_bytes() == (www / "ext/my weights/tiny.bin").read_bytes()
    name = onnx.load(str(got), load_external_data=False).graph.input[0].name
    x = {name: rng.standard_normal((3, 16)).astype(np.float32)}
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, x)[0]  # noqa: E731
    np.testing.assert_array_equal(run(got), run(www / "ext/tiny.onnx"))
