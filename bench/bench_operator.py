"""Operator at scale on the local control plane: apply N models, time until all are Ready,
count the operator's API writes per model (from the API server's audit log), and read the
operator's peak RSS.

    python bench/bench_operator.py [--counts 1 100 500]

Each count runs on a fresh control plane with a fresh operator. Extra kwok CPU nodes are added
so that every Triton pod has room; the Jobs' pods run 1.5 s on kwok.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from inferops.devcluster.cluster import LocalCluster, die_with_parent

REPO = Path(__file__).resolve().parents[1]
USER = "system:serviceaccount:inferops-system:inferops"


def bench_nodes(count: int) -> str:
    items = []
    for i in range(count):
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": f"bench-cpu-{i}",
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {"type": "kwok", "inferops.dev/pool": "bench", "kubernetes.io/hostname": f"bench-cpu-{i}"},
                },
                "status": {"capacity": {"cpu": "1000", "memory": "4Ti", "pods": "1000"}, "allocatable": {"cpu": "1000", "memory": "4Ti", "pods": "1000"}},
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def models(count: int) -> str:
    docs = []
    for i in range(count):
        docs.append(
            {
                "apiVersion": "inferops.dev/v1alpha1",
                "kind": "InferenceModel",
                "metadata": {"name": f"m{i:04d}", "namespace": "bench"},
                "spec": {
                    "model": {
                        "uri": f"s3://models/m{i}/model.onnx",
                        "inputs": [{"name": "input", "datatype": "FP32", "dims": [64]}],
                        "outputs": [{"name": "probabilities", "datatype": "FP32", "dims": [10]}],
                    },
                    "optimization": {"recipe": "quantize-int8-dynamic"},
                    "hardware": {"class": "bench-cpu"},
                    # Batching chosen in the spec: with `auto` each model also gets a tuning Job
                    # on its class's nodes, which kwok completes without a result to read.
                    "serving": {"replicas": 1, "dynamicBatching": {"mode": "explicit", "maxBatchSize": 8}},
                },
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})


def _proc_status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib(pid: int) -> float:
    return _proc_status_mib(pid, "VmHWM")


def rss_mib(pid: int) -> float:
    return _proc_status_mib(pid, "VmRSS")


def summarize(events: list[dict]) -> dict[str, int]:
    """Audit events counted by `verb resource[/subresource]`, most frequent first."""
    counts: Counter[str] = Counter()
    for event in events:
        ref = event.get("objectRef")
        if ref is None:  # a non-resource request (discovery, /version)
            counts[f"{event['verb']} {event.get('requestURI', '?').split('?')[0]}"] += 1
            continue
        counts[f"{event['verb']} {ref.get('resource', '?')}" + (f"/{ref['subresource']}" if ref.get("subresource") else "")] += 1
    return dict(counts.most_common())


@contextlib.contextmanager
def bench_cluster(count: int, extra_env: dict[str, str] | None = None, start_operator: bool = True):
    """A fresh control plane with room for `count` Triton pods, the CRDs, the `bench-cpu` class,
    and a running operator (ServiceAccount inferops-system/inferops). Yields (cluster, operator);
    operator is None without start_operator (a baseline client runs instead). The operator's
    artifact root is operator.artifacts (file://), where a bench seeds what Jobs would write."""
    with tempfile.TemporaryDirectory() as workdir:
        cluster = LocalCluster(Path(workdir) / "cluster").start()
        try:
            cluster.kubectl("apply", "-f", "-", input=bench_nodes(max(1, count // 200 + 1)))
            cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
            cluster.kubectl("wait", "crd/inferencemodels.inferops.dev", "--for=condition=Established")
            cluster.kubectl("create", "namespace", "inferops-system")
            cluster.kubectl("create", "namespace", "bench")
            cluster.kubectl("create", "serviceaccount", "inferops", "-n", "inferops-system")
            cluster.kubectl("create", "clusterrolebinding", "bench-operator", "--clusterrole=cluster-admin", "--serviceaccount=inferops-system:inferops")
            token = cluster.kubectl("create", "token", "inferops", "-n", "inferops-system", "--duration=2h").stdout.strip()
            operator_cluster = cluster.with_token(token, Path(workdir) / "operator.kubeconfig")
            hw = {"apiVersion": "inferops.dev/v1alpha1", "kind": "HardwareClass", "metadata": {"name": "bench-cpu"}, "spec": {"instanceKind": "KIND_CPU", "nodeSelector": {"inferops.dev/pool": "bench"}}}
            cluster.kubectl("apply", "-f", "-", input=json.dumps(hw))
            env = dict(
                os.environ,
                KUBECONFIG=str(operator_cluster.kubeconfig),
                INFEROPS_ARTIFACT_ROOT=f"file://{workdir}/artifacts",
                INFEROPS_SMOKE_TEST="false",
                **(extra_env or {}),
            )
            if not start_operator:
                yield cluster, None
                return
            log_path = Path(workdir) / "operator.log"
            operator = subprocess.Popen(
                [sys.executable, "-m", "inferops.cli", "operator"], env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )
            operator.log_path = log_path
            operator.artifacts = Path(workdir) / "artifacts"
            try:
                deadline = time.monotonic() + 60
                while "Initial authentication has finished" not in log_path.read_text():
                    assert operator.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
                    time.sleep(0.2)
                yield cluster, operator
            finally:
                os.killpg(operator.pid, signal.SIGTERM)
                operator.wait(timeout=30)
        finally:
            cluster.stop()


def run_once(count: int, timeout: float) -> dict:
    with bench_cluster(count, {"INFEROPS_RESYNC_SECONDS": "3600"}) as (cluster, operator):
        started = time.monotonic()
        cluster.kubectl("apply", "-f", "-", input=models(count), timeout=300)
        deadline = started + timeout
        ready = 0
        while time.monotonic() < deadline:
            phases = cluster.kubectl("get", "im", "-n", "bench", "-o", "jsonpath={.items[*].status.phase}").stdout.split()
            ready = phases.count("Ready")
            if ready == count:
                break
            time.sleep(1)
        elapsed = time.monotonic() - started
        time.sleep(3)  # let trailing events settle before counting
        writes = [w for w in cluster.audit_writes(user=USER) if w["objectRef"].get("namespace") == "bench"]
        rss = peak_rss_mib(operator.pid)
    return {"models": count, "ready": ready, "seconds_to_all_ready": round(elapsed, 1), "writes_per_model": round(len(writes) / count, 2), "writes": summarize(writes), "operator_peak_rss_mib": round(rss, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 100, 500])
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    results = [run_once(n, args.timeout) for n in args.counts]
    print(f"{'models':>7} {'ready':>6} {'apply->all Ready s':>19} {'s/model':>8} {'writes/model':>13} {'peak RSS MiB':>13}")
    for r in results:
        print(f"{r['models']:>7} {r['ready']:>6} {r['seconds_to_all_ready']:>19} {r['seconds_to_all_ready'] / r['models']:>8.3f} {r['writes_per_model']:>13} {r['operator_peak_rss_mib']:>13}")
    for r in results:
        print(f"writes at {r['models']}: {json.dumps(r['writes'], sort_keys=True)}")
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(f"writes/model ratio {last['models']} vs {first['models']} models: {last['writes_per_model'] / first['writes_per_model']:.2f}")


if __name__ == "__main__":
    main()
