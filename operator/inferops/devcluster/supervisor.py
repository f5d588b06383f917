"""Owns a LocalCluster in a detached process for `inferops dev up`, until `dev down` signals it."""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    state: Path = args.state_dir
    (state / PID_FILE).write_text(str(os.getpid()))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    cluster = LocalCluster(state / "cluster", real_nodes=args.real_nodes)
    try:
        cluster.start()
        (state / READY_FILE).write_text(json.dumps({"kubeconfig": str(cluster.kubeconfig), "server": cluster.server, "pids": cluster.pids}))
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    except Exception as exc:  # reported to `dev up` through the log it tails
        print(f"local cluster failed to start: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        cluster.stop()
        for name in (READY_FILE, PID_FILE):
            (state / name).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
