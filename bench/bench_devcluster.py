"""Local control plane: cached start-up time, memory once ready, and (with --cold) build time.

    python bench/bench_devcluster.py [--runs 3] [--cold]

--cold builds every pinned module into a throwaway binary cache with an empty Go build
cache (the Go module download cache is kept, so network time is not counted).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from inferops.devcluster import binaries
from inferops.devcluster.cluster import LocalCluster


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cold_build() -> float:
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as gocache:
        env = dict(os.environ, INFEROPS_CACHE=cache, GOCACHE=gocache)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "inferops.devcluster.binaries"], env=env, check=True, stdout=subprocess.DEVNULL)
        return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true")
    args = parser.parse_args()
    binaries.ensure_binaries(binaries.CONTROL_PLANE_BINARIES)
    starts, memory = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as workdir:
            cluster = LocalCluster(Path(workdir))
            started = time.monotonic()
            cluster.start()
            starts.append(time.monotonic() - started)
            time.sleep(2)  # let the controllers settle before reading memory
            per_process = {p.name: rss_mib(p.popen.pid) for p in cluster._procs}
            memory.append(sum(per_process.values()))
            cluster.stop()
    print(f"cached start-up to ready (nodes Ready, default SA): median {statistics.median(starts):.1f}s over {args.runs} runs {[round(s, 1) for s in starts]}")
    print(f"target: under 20s -> ratio to target {statistics.median(starts) / 20:.2f}")
    print(f"resident memory once ready: {statistics.median(memory):.0f} MiB total; last run: " + ", ".join(f"{k} {v:.0f}" for k, v in per_process.items()))
    if args.cold:
        print(f"cold build of all pinned binaries (empty Go build cache): {cold_build() / 60:.1f} min")


if __name__ == "__main__":
    main()
