"""Through the Service, at the concurrency it was tuned for: the tuned config against no batching.

    sudo .venv/bin/python bench/bench_tuned_service.py [--state-dir DIR] [--rounds 20] [--slice 2]

`inferops up` (run here in a throwaway state folder, or reused with --state-dir when one is
running there) serves the demo digits model with `dynamicBatching: auto`: its tuning Job ran in
a pod on the real node with the CPU Triton image. This applies a second model from the same
source with `dynamicBatching: disabled` (Triton's no-batching config, what a user gets without
batching) and drives both through their Services' ClusterIPs from this host, in alternating
rounds (tuned, none, tuned again), each round `--slice` seconds of closed-loop load at the
tuned concurrency (status.report.tuning.concurrency). Ratios are medians of the per-round ratios;
"tuned/tuned" compares the tuned Service with itself in the same rounds: how far from 1 this
run's head-to-head wanders by noise alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from inferops.api.tensors import Signature
from inferops.devcluster.cluster import Cluster
from inferops.triton.loadgen import percentiles, request_inputs, run_load

NAMESPACE, TUNED, PLAIN = "demo", "digits", "digits-plain"


def status(cluster: Cluster, name: str) -> dict:
    return json.loads(cluster.kubectl("get", "im", name, "-n", NAMESPACE, "-o", "json").stdout).get("status") or {}


def deploy_plain(cluster: Cluster, timeout: float) -> dict:
    tuned = json.loads(cluster.kubectl("get", "im", TUNED, "-n", NAMESPACE, "-o", "json").stdout)
    spec = json.loads(json.dumps(tuned["spec"]))
    spec["serving"]["dynamicBatching"] = {"mode": "disabled"}
    body = {"apiVersion": "inferops.dev/v1alpha1", "kind": "InferenceModel", "metadata": {"name": PLAIN}, "spec": spec}
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(body))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = status(cluster, PLAIN)
        if now.get("phase") == "Ready":
            return now
        if now.get("phase") == "Failed":
            raise SystemExit(f"{PLAIN} failed: {json.dumps(now.get('conditions'))}")
        time.sleep(2)
    raise SystemExit(f"{PLAIN} not Ready in {timeout:.0f}s")


def service_url(cluster: Cluster, name: str) -> str:
    return cluster.kubectl("get", "service", f"{name}-triton", "-n", NAMESPACE, "-o", "jsonpath={.spec.clusterIP}").stdout + ":8001"


def describe(batching: dict | None) -> str:
    if not batching:
        return "no batching (max_batch_size 0, 1 instance)"
    return f"max batch {batching['maxBatchSize']}, delay {batching['maxQueueDelayMicroseconds']} us, {batching['instanceCount']} instance(s)"


def bench(cluster: Cluster, rounds: int, slice_s: float) -> None:
    tuned_status = status(cluster, TUNED)
    tuning = tuned_status["report"]["tuning"]
    concurrency = int(tuning.get("concurrency") or 16)
    plain_status = deploy_plain(cluster, 600)
    signature = Signature.model_validate(tuned_status["report"]["signature"])
    arrays = request_inputs(signature, 1)
    targets = {
        "tuned": (service_url(cluster, TUNED), tuned_status["report"]["modelName"]),
        "none": (service_url(cluster, PLAIN), plain_status["report"]["modelName"]),
    }
    for url, model in targets.values():  # warm both (first requests load caches, spin up threads)
        run_load(url, model, arrays, concurrency=concurrency, duration_s=1.0, warmup_s=0.5)
    runs: dict[str, list] = {"tuned": [], "none": [], "tuned again": []}
    for _ in range(rounds):
        for label in runs:
            url, model = targets["tuned" if label == "tuned again" else label]
            runs[label].append(run_load(url, model, arrays, concurrency=concurrency, duration_s=slice_s, warmup_s=0.2))

    def ratio(a: str, b: str) -> float:
        return statistics.median(x.throughput_per_s / y.throughput_per_s for x, y in zip(runs[a], runs[b]))

    print(f"\ntuned by a tuning Job on {tuning.get('node')} with {tuning.get('image')}: {describe(tuned_status['batching'])}")
    print(f"  ({tuning['measurements']} measurements, {tuning.get('wallSeconds')} s, p99 objective {tuning['latencyObjectiveMs']} ms, {tuning.get('measuredWith')})")
    print(f"no batching: {describe(plain_status.get('batching'))}")
    print(f"through each Service's ClusterIP (gRPC) from this host, {concurrency} closed-loop clients, {rounds} rounds of {slice_s} s per config\n")
    print(f"{'config':>12} | {'median /s':>9} | {'p99 ms':>7} | errors")
    for label, results in runs.items():
        p99 = percentiles([ms for r in results for ms in r.latencies_ms], 99)[0]
        print(f"{label:>12} | {statistics.median(r.throughput_per_s for r in results):>9.0f} | {p99:>7.1f} | {sum(r.errors for r in results)}")
    print(f"\ntuned/none   {ratio('tuned', 'none'):.2f}  (median of per-round ratios; {sum(x.throughput_per_s > y.throughput_per_s for x, y in zip(runs['tuned'], runs['none']))} of {rounds} rounds tuned ahead)")
    print(f"tuned/tuned  {ratio('tuned', 'tuned again'):.2f}  (the same Service twice per round: the noise floor)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, help="a running `inferops up` to reuse (left running); default: up and down in a throwaway folder")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--slice", type=float, default=2.0, help="seconds of load per config per round")
    args = parser.parse_args()
    own = args.state_dir is None
    state = Path(tempfile.mkdtemp(prefix="bench-tuned-")) if own else args.state_dir
    try:
        if own:
            started = time.monotonic()
            up = subprocess.run([sys.executable, "-m", "inferops.cli", "up", "--state-dir", str(state)], capture_output=True, text=True)
            if up.returncode != 0:
                print(up.stdout[-2000:], up.stderr[-3000:])
                raise SystemExit(f"inferops up failed ({up.returncode})")
            print(f"inferops up: {time.monotonic() - started:.0f} s\n{up.stdout}")
        ready = json.loads((state / "ready.json").read_text())
        bench(Cluster(Path(ready["kubeconfig"])), args.rounds, args.slice)
    finally:
        if own:
            subprocess.run([sys.executable, "-m", "inferops.cli", "down", "--state-dir", str(state)], check=False)
            shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
