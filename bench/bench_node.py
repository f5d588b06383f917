"""The real node and the local images: build times and sizes, `inferops up` from apply to Ready split
into its phases, and the memory of the node's components.

    python bench/bench_node.py [--skip-cold]

Image builds run twice: cold (an empty image cache; pip's download cache stays warm, so network
time is mostly not counted) and cached. Then `inferops up` runs in a throwaway state folder; the
demo model's phases are read from the objects' own timestamps (one-second resolution): the Job
(created to complete), the Triton pod's pull step, Triton's start (container start to Ready), and
the smoke inference (pod Ready to model Ready). `inferops down` ends it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from inferops.devcluster.cluster import Cluster

KEYS = ("operator", "optimizer", "triton-cpu")
BUILD = "import json,sys; from inferops.devcluster import local_images as l; b=l.build_image(sys.argv[1]); print(json.dumps([b.size_bytes, b.seconds]))"


def build(key: str, cache: str | None) -> tuple[float, int]:
    env = dict(os.environ, **({"INFEROPS_CACHE": cache} if cache else {}))
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", BUILD, key], env=env, capture_output=True, text=True, check=True)
    size, _ = json.loads(out.stdout.strip().splitlines()[-1])
    return time.monotonic() - started, size


def ts(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def phases(cluster: Cluster) -> dict[str, float]:
    def get(*args: str) -> dict:
        return json.loads(cluster.kubectl("get", *args, "-n", "demo", "-o", "json").stdout)

    model = get("im", "digits")
    job = get("job", model["status"]["jobName"])
    pods = get("pods", "-l", "app.kubernetes.io/component=serving")["items"]
    pod = max(pods, key=lambda p: p["metadata"]["creationTimestamp"])
    init = pod["status"]["initContainerStatuses"][0]["state"]["terminated"]
    triton = pod["status"]["containerStatuses"][0]["state"]["running"]
    pod_ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")["lastTransitionTime"]
    model_ready = next(c for c in model["status"]["conditions"] if c["type"] == "Ready")["lastTransitionTime"]
    created = ts(model["metadata"]["creationTimestamp"])
    # dynamicBatching auto: the tuning Job (its own pod, after the optimization Job) comes before serving.
    tuning = get("job", model["status"]["tuningJobName"]) if model["status"].get("tuningJobName") else None
    before_serving = tuning or job
    return {
        "apply -> Job created": (ts(job["metadata"]["creationTimestamp"]) - created).total_seconds(),
        "optimization Job": (ts(job["status"]["completionTime"]) - ts(job["metadata"]["creationTimestamp"])).total_seconds(),
        **({"tuning Job (pull, Triton start, tune)": (ts(tuning["status"]["completionTime"]) - ts(tuning["metadata"]["creationTimestamp"])).total_seconds()} if tuning else {}),
        "Jobs done -> Triton pod created": (ts(pod["metadata"]["creationTimestamp"]) - ts(before_serving["status"]["completionTime"])).total_seconds(),
        "pull (init step)": (ts(init["finishedAt"]) - ts(init["startedAt"])).total_seconds(),
        "Triton start -> pod Ready": (ts(pod_ready) - ts(triton["startedAt"])).total_seconds(),
        "pod Ready -> model Ready (smoke)": (ts(model_ready) - ts(pod_ready)).total_seconds(),
        "apply -> model Ready": (ts(model_ready) - created).total_seconds(),
    }


def rss_by_name(names: tuple[str, ...]) -> dict[str, float]:
    found: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        name = status.split("\n", 1)[0].split(":", 1)[1].strip()
        if name in names:
            rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
            found[name] = found.get(name, 0) + rss / 1024
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-cold", action="store_true", help="skip the cold image builds")
    args = parser.parse_args()
    print("image         cold s   cached s   size MiB")
    for key in KEYS:
        cold = "-"
        if not args.skip_cold:
            with tempfile.TemporaryDirectory() as cache:
                seconds, _ = build(key, cache)
                cold = f"{seconds:6.0f}"
        build(key, None)  # make sure the shared cache holds it
        cached, size = build(key, None)
        print(f"{key:12s}  {cold:>6}   {cached:8.1f}   {size / 2**20:8.0f}")
    with tempfile.TemporaryDirectory() as state:
        started = time.monotonic()
        up = subprocess.run([sys.executable, "-m", "inferops.cli", "up", "--state-dir", state], capture_output=True, text=True)
        took = time.monotonic() - started
        try:
            if up.returncode != 0:
                print(up.stderr[-3000:])
                raise SystemExit(f"inferops up failed ({up.returncode})")
            print(f"\ninferops up (images cached): {took:.0f} s wall\n{up.stdout}")
            ready = json.loads((Path(state) / "ready.json").read_text())
            for phase, seconds in phases(Cluster(ready["kubeconfig"])).items():
                print(f"  {phase:34s} {seconds:6.0f} s")
            memory = rss_by_name(("containerd", "kubelet", "kube-proxy", "containerd-shim", "kube-apiserver", "etcd", "tritonserver"))
            print("memory (RSS MiB): " + ", ".join(f"{name} {mib:.0f}" for name, mib in sorted(memory.items())))
        finally:
            subprocess.run([sys.executable, "-m", "inferops.cli", "down", "--state-dir", state], check=False)


if __name__ == "__main__":
    main()
