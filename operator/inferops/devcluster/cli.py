"""`inferops dev up|down|status`: the local control plane for a person at a terminal."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .binaries import CONTROL_PLANE_BINARIES, NODE_BINARIES, cache_root, ensure_binaries
from .supervisor import PID_FILE, READY_FILE


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--kubeconfig", type=Path, help="also write the admin kubeconfig here (up)")
    parser.add_argument("--state-dir", type=Path, default=cache_root() / "dev", help="where the cluster keeps its state")
    parser.add_argument("--real-nodes", type=int, default=0, choices=(0, 1), help="real CPU nodes (containerd, kubelet, kube-proxy) beside kwok's fake ones; needs root, runc, the CNI plugins and iptables (up)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the started processes to be ready (a first build is not counted)")


class LaunchError(RuntimeError):
    pass


def launch(state: Path, supervisor_args: list[str], timeout: float) -> dict:
    """Start the supervisor that owns the local cluster, detached, and wait until it is ready
    (its ready.json), showing its log as it comes; returns what ready.json says."""
    log = state / "supervisor.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inferops.devcluster.supervisor", "--state-dir", str(state), *supervisor_args],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    print("starting the local control plane...", file=sys.stderr)
    deadline, shown = time.monotonic() + timeout, 0
    while not (state / READY_FILE).exists():
        text = log.read_text(errors="replace")
        sys.stderr.write(text[shown:])
        shown = len(text)
        if proc.poll() is not None:
            raise LaunchError(f"the local control plane failed to start (log: {log})")
        if time.monotonic() > deadline:
            proc.terminate()
            raise LaunchError(f"timed out after {timeout:.0f}s (log: {log})")
        time.sleep(0.5)
    return json.loads((state / READY_FILE).read_text())


def _running_pid(state: Path) -> int | None:
    try:
        pid = int((state / PID_FILE).read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _up(args: argparse.Namespace) -> int:
    state: Path = args.state_dir
    if _running_pid(state) and (state / READY_FILE).exists():
        print(f"already running; export KUBECONFIG={json.loads((state / READY_FILE).read_text())['kubeconfig']}")
        return 0
    if state.exists():
        shutil.rmtree(state / "cluster", ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True)
    (state / READY_FILE).unlink(missing_ok=True)
    # The build runs here, in the foreground, so that its progress reaches the terminal and its
    # minutes never count against the start-up timeout below.
    real_nodes = getattr(args, "real_nodes", 0)  # Namespaces built by callers may predate the option
    if real_nodes:
        from .node import NodeError, check_host

        try:
            check_host()
        except NodeError as exc:
            print(f"cannot start a real node: {exc}", file=sys.stderr)
            return 1
    try:
        ensure_binaries(CONTROL_PLANE_BINARIES + (NODE_BINARIES if real_nodes else ()))
    except RuntimeError as exc:  # no Go toolchain, or a failed build (its last lines follow)
        print(f"inferops dev up: {exc}", file=sys.stderr)
        return 1
    try:
        ready = launch(state, ["--real-nodes", str(real_nodes)], args.timeout)
    except LaunchError as exc:
        print(exc, file=sys.stderr)
        return 1
    kubeconfig = Path(ready["kubeconfig"])
    if args.kubeconfig:
        args.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kubeconfig, args.kubeconfig)
        args.kubeconfig.chmod(0o600)
        kubeconfig = args.kubeconfig
    print(f"local control plane ready.\n  export KUBECONFIG={kubeconfig}\n  kubectl get nodes -L nvidia.com/gpu.product\nstop it with: inferops dev down")
    return 0


def down(args: argparse.Namespace) -> int:
    pid = _running_pid(args.state_dir)
    if pid is None:
        print("not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 180  # a real node drains its pods and undoes its host changes first
    while _running_pid(args.state_dir) == pid and time.monotonic() < deadline:
        time.sleep(0.2)
    if _running_pid(args.state_dir) == pid:
        os.kill(pid, signal.SIGKILL)
    print("stopped")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "up":
        return _up(args)
    if args.action == "down":
        return down(args)
    ready = args.state_dir / READY_FILE
    if _running_pid(args.state_dir) and ready.exists():
        print(f"running; export KUBECONFIG={json.loads(ready.read_text())['kubeconfig']}")
        return 0
    print("not running")
    return 3
