"""Owns a LocalCluster (and, for `inferops up`, the S3 server on the real node's address) in a
detached process, until `inferops down` / `dev down` signals it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

from .cluster import LocalCluster

READY_FILE = "ready.json"
PID_FILE = "supervisor.pid"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--real-nodes", type=int, default=0)
    parser.add_argument("--s3", action="store_true", help="an S3 server on the real node's address (pods reach it)")
    args = parser.parse_args()
    state: Path = args.state_dir
    (state / PID_FILE).write_text(str(os.getpid()))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    cluster = LocalCluster(state / "cluster", real_nodes=args.real_nodes)
    s3 = None
    try:
        cluster.start()
        ready = {"kubeconfig": str(cluster.kubeconfig), "server": cluster.server, "pids": cluster.pids}
        if cluster.nodes:  # where `inferops up` imports its images
            ready["containerd"] = str(cluster.nodes[0].sock)
        if args.s3:
            from .node import NODE_IP
            from .s3 import LocalS3

            s3 = LocalS3(state / "s3", host=NODE_IP)
            ready["s3"] = dataclasses.asdict(s3.start())
            ready["s3"]["root"] = str(ready["s3"]["root"])
        ready_file = state / READY_FILE
        ready_file.touch(mode=0o600)  # it holds the S3 keys
        ready_file.write_text(json.dumps(ready))
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    except Exception as exc:  # reported to `dev up` through the log it tails
        print(f"local cluster failed to start: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if s3 is not None:
            s3.stop()
        cluster.stop()
        for name in (READY_FILE, PID_FILE):
            (state / name).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
