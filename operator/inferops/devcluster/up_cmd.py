"""`inferops up`: everything on this machine, from nothing to a served model.

A local cluster with a real node (and kwok's fake GPU nodes), an S3 server the pods reach, the
operator, optimizer and CPU Triton images built here, the Helm chart installed with the local
operator image (the operator runs in the cluster as its ServiceAccount), a CPU HardwareClass on
the real node, and a demo model: a digits classifier trained from scikit-learn's bundled data,
optimized (int8 behind the accuracy gate), tuned and served. It waits until the model is Ready,
sends one inference through the Service and prints what a person wants to see.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .binaries import CONTROL_PLANE_BINARIES, NODE_BINARIES, cache_root, ensure_binaries

DEMO_NAMESPACE = "demo"
DEMO_MODEL = "digits"
CLASS = "cpu"
IMAGES = ("operator", "optimizer", "triton-cpu")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", type=Path, help="also write the admin kubeconfig here")
    parser.add_argument("--state-dir", type=Path, default=cache_root() / "dev", help="where the cluster keeps its state (shared with `inferops dev`)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the demo model to be Ready (builds are not counted)")


class UpError(RuntimeError):
    """One line for the person at the terminal."""


def _say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def _prepare() -> dict:
    """What needs no cluster: the host check, the binaries and the images (cached after the first run)."""
    from . import local_images
    from .node import NodeError, check_host
    from .rootfs import ImageBuildError

    try:
        check_host()
    except NodeError as exc:
        raise UpError(f"this host cannot run the real node: {exc}") from None
    try:
        _say("building what is missing (the first run: many minutes; later runs: seconds)")
        ensure_binaries(CONTROL_PLANE_BINARIES + NODE_BINARIES + ("helm", "versitygw"))
        return local_images.build_images(IMAGES)
    except (RuntimeError, ImageBuildError) as exc:
        raise UpError(str(exc)) from None


def _cluster(args: argparse.Namespace, images: dict) -> tuple:
    from .cli import LaunchError, _running_pid, launch
    from .cluster import Cluster
    from .s3 import S3Server
    from .supervisor import READY_FILE

    state: Path = args.state_dir
    ready_file = state / READY_FILE
    if _running_pid(state) and ready_file.exists() and "s3" in json.loads(ready_file.read_text()):
        _say("the local cluster is already running: reusing it")
        ready = json.loads(ready_file.read_text())
    else:
        if _running_pid(state):
            raise UpError(f"a local cluster without a real node runs from {state}: stop it first with `inferops down`")
        shutil.rmtree(state / "cluster", ignore_errors=True)
        state.mkdir(parents=True, exist_ok=True)
        try:
            ready = launch(state, ["--real-nodes", "1", "--s3"], timeout=600)
        except LaunchError as exc:
            raise UpError(str(exc)) from None
    _import_images(ready["containerd"], images)
    s3 = ready["s3"]
    return Cluster(Path(ready["kubeconfig"])), S3Server(s3["endpoint"], s3["access_key"], s3["secret_key"], Path(s3["root"]))


def _import_images(containerd: str, images: dict) -> None:
    """Into the real node's containerd (an unchanged image imports in seconds: its layers are there)."""
    import subprocess

    ctr = ensure_binaries(("ctr",))["ctr"]
    for image in images.values():
        _say(f"importing {image.reference} into the real node")
        out = subprocess.run([str(ctr), "--address", containerd, "-n", "k8s.io", "images", "import", str(image.archive)], capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise UpError(f"importing {image.reference} failed: {out.stderr.strip()}")


def _demo_data(s3) -> dict[str, str]:
    """A digits classifier trained here from scikit-learn's bundled data, and its eval set, in S3."""
    import numpy as np
    from sklearn.datasets import load_digits

    from ..triton.sample_model import INPUT, mlp_to_onnx, train_digits_mlp

    client = s3.client()
    if "models" not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket="models")
    with tempfile.TemporaryDirectory() as tmp:
        classifier, accuracy = train_digits_mlp(hidden=(256,), max_iter=30)
        _say(f"trained a digits classifier from scikit-learn's bundled data (held-out accuracy {accuracy:.3f})")
        client.upload_file(str(mlp_to_onnx(classifier, Path(tmp) / "model.onnx")), "models", "digits/model.onnx")
    x, y = load_digits(return_X_y=True)
    buffer = io.BytesIO()
    np.savez(buffer, **{INPUT: (x[-400:] / 16.0).astype(np.float32)}, labels=y[-400:].astype(np.int64))
    client.put_object(Bucket="models", Key="digits/eval.npz", Body=buffer.getvalue())
    return {"model": "s3://models/digits/model.onnx", "eval": "s3://models/digits/eval.npz"}


def _apply(cluster, obj: dict, namespace: str | None = None) -> None:
    cluster.kubectl("apply", *(["-n", namespace] if namespace else []), "-f", "-", input=json.dumps(obj))


def _deploy_demo(cluster, s3, images: dict, data: dict) -> None:
    from .chart_install import storage_secret, tenant_storage_secret
    from .node import LABELS

    _apply(cluster, {
        "apiVersion": "inferops.dev/v1alpha1", "kind": "HardwareClass", "metadata": {"name": CLASS},
        "spec": {"instanceKind": "KIND_CPU", "nodeSelector": {"inferops.dev/node": LABELS["inferops.dev/node"]}, "onnxBackend": "python",
                 "tritonImage": images["triton-cpu"].reference, "optimizerImage": images["optimizer"].reference},
    })
    if cluster.kubectl("get", "namespace", DEMO_NAMESPACE, check=False).returncode != 0:
        cluster.create_namespace(DEMO_NAMESPACE)
    tenant_storage_secret(cluster, s3, DEMO_NAMESPACE)  # the namespace's own prefix of the artifact store, for the Job and the pull step
    storage_secret(cluster, s3, DEMO_NAMESPACE, "demo-s3")  # the team's own, to read its model
    _apply(cluster, {
        "apiVersion": "inferops.dev/v1alpha1", "kind": "InferenceModel", "metadata": {"name": DEMO_MODEL},
        "spec": {
            "model": {"uri": data["model"], "credentialsSecret": "demo-s3"},
            "optimization": {"recipe": "quantize-int8-dynamic", "evalData": data["eval"], "accuracyBudget": 0.01},
            "hardware": {"class": CLASS},
            "serving": {"replicas": 1, "latencyObjectiveMs": 50, "dynamicBatching": {"mode": "auto"}},
        },
    }, DEMO_NAMESPACE)


def _wait_ready(cluster, timeout: float) -> dict:
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        model = json.loads(cluster.kubectl("get", "im", DEMO_MODEL, "-n", DEMO_NAMESPACE, "-o", "json").stdout)
        status = model.get("status") or {}
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
        now = (status.get("phase"), ready.get("reason"))
        if now != last:
            _say(f"{DEMO_MODEL}: {now[0] or 'Pending'} ({now[1] or 'waiting for the operator'})")
            last = now
        if status.get("phase") == "Ready":
            return status
        if status.get("phase") == "Failed":
            raise UpError(f"the demo model failed: {ready.get('message') or json.dumps(status.get('conditions'))}")
        time.sleep(2)
    raise UpError(f"the demo model was not Ready within {timeout:.0f}s; see `kubectl describe im {DEMO_MODEL} -n {DEMO_NAMESPACE}`")


def _infer(cluster, status: dict) -> str:
    """One inference through the Service, from this host (its ClusterIP: the host has no cluster DNS)."""
    import numpy as np
    import tritonclient.http as httpclient
    from sklearn.datasets import load_digits

    from ..triton.sample_model import INPUT, OUTPUT

    cluster_ip = cluster.kubectl("get", "service", f"{DEMO_MODEL}-triton", "-n", DEMO_NAMESPACE, "-o", "jsonpath={.spec.clusterIP}").stdout
    x, y = load_digits(return_X_y=True)
    rows = (x[:8] / 16.0).astype(np.float32)
    client = httpclient.InferenceServerClient(f"{cluster_ip}:8000")
    # The tuned max batch size caps the rows of one request (the tuning may choose 4).
    step = max(1, min(len(rows), int((status.get("batching") or {}).get("maxBatchSize") or len(rows))))
    predicted = []
    for start in range(0, len(rows), step):
        chunk = rows[start:start + step]
        request = httpclient.InferInput(INPUT, list(chunk.shape), "FP32")
        request.set_data_from_numpy(chunk)
        predicted += client.infer(status["report"]["modelName"], [request]).as_numpy(OUTPUT).argmax(axis=1).tolist()
    return f"predicted {predicted} for digits {y[:8].tolist()} ({sum(p == t for p, t in zip(predicted, y[:8]))}/8 right), via {cluster_ip}:8000"


def _tuning_line(tuning: dict, status: dict) -> str:
    """Where and how long the tuning Job measured, and what it found; or why there is no tuning."""
    if not tuning:
        tuned = next((c for c in status.get("conditions", []) if c.get("type") == "Tuned"), {})
        return f"  tuned          no: {tuned.get('reason', 'not tuned')} {tuned.get('message', '')}".rstrip()
    where = f" in a pod on {tuning['node']} with {tuning['image']}" if tuning.get("node") and tuning.get("image") else ""
    took = f" in {tuning['wallSeconds']:.0f} s" if tuning.get("wallSeconds") is not None else ""
    concurrency = f", {tuning['concurrency']} clients" if tuning.get("concurrency") else ""
    return (
        f"  tuned          {tuning.get('throughputPerSecond', 0):.0f} infer/s at p99 {tuning.get('p99Ms', 0):.3g} ms "
        f"(objective {tuning.get('latencyObjectiveMs', 0):.0f} ms{concurrency}; {tuning.get('measurements')} measurements of "
        f"{tuning.get('gridSize')} configs{took}{where})"
    )


def _summary(status: dict, answer: str, kubeconfig: Path) -> str:
    report = status["report"]

    def ratio(pair: dict, unit: str, scale: float = 1.0) -> str:
        before, after = pair.get("before"), pair.get("after")
        if before is None or after is None:
            return "n/a"
        return f"{before * scale:.3g} -> {after * scale:.3g} {unit} ({after / before:.2f}x)"

    accuracy = report.get("accuracy") or {}
    tuning = report.get("tuning") or {}
    batching = status.get("batching") or {}
    lines = [
        f"InferenceModel {DEMO_NAMESPACE}/{DEMO_MODEL} is Ready",
        f"  optimization   {' -> '.join(report.get('steps', []))}",
        f"  size           {ratio(report.get('sizeBytes', {}), 'KiB', 1 / 1024)}",
        f"  latency b=1    {ratio(report.get('latencyMsBatch1', {}), 'ms')}",
        f"  latency b=32   {ratio(report.get('latencyMsBatch32', {}), 'ms')}",
        f"  accuracy       {accuracy.get('before', 0):.4f} -> {accuracy.get('after', 0):.4f} (drop {accuracy.get('drop', 0):.4f}, budget {accuracy.get('budget', 0):.4f})",
        f"  batching       max batch {batching.get('maxBatchSize')}, preferred {batching.get('preferredBatchSizes')}, queue delay "
        f"{batching.get('maxQueueDelayMicroseconds')} us, {batching.get('instanceCount')} instance(s)",
        _tuning_line(tuning, status),
        f"  endpoint       {status.get('endpoint')}",
        f"  inference      {answer}",
        "",
        f"  export KUBECONFIG={kubeconfig}",
        f"  kubectl get im -A; kubectl describe im {DEMO_MODEL} -n {DEMO_NAMESPACE}",
        "stop everything with: inferops down",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from .chart_install import install_operator

    try:
        images = _prepare()
        cluster, s3 = _cluster(args, images)
        kubeconfig = cluster.kubeconfig
        if args.kubeconfig:
            args.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cluster.kubeconfig, args.kubeconfig)
            args.kubeconfig.chmod(0o600)
            kubeconfig = args.kubeconfig
        _say("installing the operator with its Helm chart (the local operator image)")
        try:
            install_operator(cluster, {key: image.reference for key, image in images.items()}, s3)
        except RuntimeError as exc:
            raise UpError(str(exc)) from None
        data = _demo_data(s3)
        _deploy_demo(cluster, s3, images, data)
        status = _wait_ready(cluster, args.timeout)
        answer = _infer(cluster, status)
    except UpError as exc:
        print(f"inferops up: {exc}", file=sys.stderr)
        return 1
    print(_summary(status, answer, kubeconfig))
    return 0

